"""The relearning attack's procedures (docs/methods.md §8; Deeb & Roger 2024): split a fact set
by subject, fine-tune a copy of a model on one half and measure the other, and make a copy forget
a set by gradient ascent (the attack's positive control). The line and its decision are
:mod:`forensics.lines.relearning_attack`; ``config`` below is its ``RelearningConfig`` (fields
``steps``, ``batch_size``, ``eval_steps``, ``eval_batch_size``, ``max_new_tokens``,
``max_suppress_steps``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from forensics.compute.finetune import Sampler, answer_nll, encode_answers, master_copy, run_steps
from forensics.compute.measures import measure_facts
from forensics.compute.scoring import EncodedFacts, logits_fn_for
from forensics.inputs.data import Fact


def split_by_subject(facts: list[Fact], seed: int) -> tuple[list[Fact], list[Fact]]:
    """Split ``facts`` into two halves with disjoint subjects, at random (seeded): half a gets
    ``n_subjects // 2`` subjects. Returns ``(facts of half a, facts of half b)``, order kept."""
    subjects = list(dict.fromkeys(f.subject for f in facts))
    rng = np.random.default_rng(seed)
    half_a = {subjects[i] for i in rng.permutation(len(subjects))[: len(subjects) // 2]}
    return [f for f in facts if f.subject in half_a], [f for f in facts if f.subject not in half_a]


def within(precision, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` inside ``precision()`` (:func:`forensics.compute.finetune.master_copy`)."""
    with precision():
        return fn(*args, **kwargs)


def finetune(
    model,
    tokenizer,
    train: list[Fact],
    evaluate: list[Fact],
    config,
    seed: int,
    device,
    lr: float,
    measure: str = "exact",
) -> dict:
    """Fine-tune a copy of ``model`` on ``train``; the answer measure ``measure``
    (:mod:`forensics.compute.measures`) on ``evaluate`` at each eval step.

    Loss: NLL of ``train``'s answer tokens given the prompt; ``config.steps`` AdamW steps at
    ``lr``, in the model's precision without losing updates (:func:`master_copy`). ``model``
    itself is not changed. Returns ``{"per_step": {step: float [len(evaluate)]} (at each of
    ``config.eval_steps`` reached and after the last step, ``config.steps``), "curve": {step:
    mean of per_step}, "train_accuracy": float}``.
    """
    tuned, precision = master_copy(model)
    torch.manual_seed(seed)
    sampler = Sampler(encode_answers(tokenizer, train), config.batch_size, seed)
    evaluation = EncodedFacts(tokenizer, evaluate, config.eval_batch_size) if measure == "exact" else None
    per_step: dict[int, np.ndarray] = {}

    def scores(facts: list[Fact]) -> np.ndarray:
        tuned.eval()
        with precision():
            if facts is evaluate and evaluation is not None:
                return evaluation.score(logits_fn_for(tuned), device).correct.astype(float)
            return measure_facts(
                measure, tuned, tokenizer, facts, device, config.eval_batch_size, config.max_new_tokens
            )

    def measure_now():
        return scores(evaluate)

    def record(step: int) -> bool:  # called with `step` optimiser steps done
        if step in config.eval_steps:
            per_step[step] = measure_now()
        return False

    run_steps(
        tuned,
        list(tuned.parameters()),
        lambda _: within(precision, answer_nll, tuned, sampler.next(), device),
        config.steps,
        lr,
        stop=record,
        check_every=1,
        betas=(0.9, 0.999),
        fused=True,
    )
    per_step[config.steps] = measure_now()
    curve = {step: float(values.mean()) for step, values in per_step.items()}
    return {"per_step": per_step, "curve": curve, "train_accuracy": float(scores(train).mean())}


def suppress_copy(
    model,
    tokenizer,
    forget: list[Fact],
    target_accuracy: float,
    config,
    device,
    lr: float,
    score: Callable[[object], float] | None = None,
):
    """A copy of ``model`` made to forget ``forget`` by gradient ascent on its answers (positive
    control): stops when its score on ``forget`` (checked every 2 steps) is at most
    ``target_accuracy`` or after ``max_suppress_steps``. The score is greedy exact-match accuracy
    on ``forget`` (fraction of facts), or ``score(copy)`` when given (a float in the same units as
    ``target_accuracy``; it is called in the copy's training precision, in eval mode). Returns
    ``(model, steps, score)``."""
    dtype = next(model.parameters()).dtype
    tuned, precision = master_copy(model)
    torch.manual_seed(0)
    sampler = Sampler(encode_answers(tokenizer, forget), config.batch_size, 0)
    evaluation = EncodedFacts(tokenizer, forget, config.eval_batch_size)
    state = {}

    def reached(step: int) -> bool:
        tuned.eval()
        with precision():
            state["accuracy"] = (
                evaluation.accuracy(logits_fn_for(tuned), device) if score is None else float(score(tuned))
            )
        return state["accuracy"] <= target_accuracy

    steps = run_steps(
        tuned,
        list(tuned.parameters()),
        lambda _: within(precision, answer_nll, tuned, sampler.next(), device, sign=-1.0),
        config.max_suppress_steps,
        lr,
        stop=reached,
        check_every=2,
        betas=(0.9, 0.999),
        fused=True,
    )
    if steps == config.max_suppress_steps and steps % 2 == 0:
        reached(steps)
    tuned.eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    if dtype != torch.float32:  # back to the audit's precision, as the attacked copy of U is
        tuned.to(dtype, print_details=False) if hasattr(tuned, "cfg") else tuned.to(dtype)
    return tuned, steps, state["accuracy"]
