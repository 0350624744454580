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


def peak_step(recovery: dict) -> int:
    """The step at which the positive control's recovery of F_b is largest: ``recovery`` maps
    optimiser steps (int or their decimal text, as read back from JSON) to the mean recovery
    (measure units); step 0 (before training) is never chosen; ties go to the earliest step.
    Raises ``ValueError`` when no step after 0 is given."""
    steps = sorted((int(k), v) for k, v in recovery.items() if int(k) > 0)
    if not steps:
        raise ValueError("no recovery measured after step 0")
    best = max(v for _, v in steps)
    return next(k for k, v in steps if v == best)


def power_curve(power: dict) -> tuple[list[int], list[float]]:
    """The positive control's curve as (steps, F_b measure), in numeric step order. The audit
    context stores the curve's steps as text ("0", "5", "10", ...), whose own order is not the
    steps' (``"10" < "5"``)."""
    steps = sorted(power["curve"], key=int)
    return [int(s) for s in steps], [float(power["curve"][s]) for s in steps]


def recovery_figure(curves: dict, power: dict | None) -> bytes:
    """The relearning attack's recovery curves as a PNG: per curve name (``forget``, ``holdout``,
    ``reference``) a list of per-seed ``{step: measure}``; the band is the seeds' range; ``power``:
    the positive control (its curve dotted, its read step marked), or None."""
    from forensics.compute.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    styles = {
        "forget": ("C3", "U: F, the unseen half"),
        "holdout": ("C0", "U: H, the unseen half (control)"),
        "reference": ("C2", "Ref: F_a -> F_b"),
    }
    for name, per_seed in curves.items():
        if not per_seed:
            continue
        steps = sorted(per_seed[0])
        values = np.array([[c[s] for s in steps] for c in per_seed])
        colour, label = styles[name]
        ax.plot(steps, values.mean(0), "o-", color=colour, label=label)
        ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.15)
    if power is not None:
        ax.plot(
            *power_curve(power),
            ":",
            color="grey",
            label="GA-suppressed O (power)",
        )
        ax.axvline(int(power["read_step"]), color="grey", lw=0.6, ls="--")
    ax.set_xlabel("fine-tuning steps")
    ax.set_ylabel("accuracy on the unseen half")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Relearning attack: recovery curve (band = seed range)", fontsize=9)
    return figure_png(fig)


#: The learning rate the attack was set at on the zoo's models (d_model 64 and 128) and the
#: width it holds up to (docs/decisions.md, "layer budgets for the per-block lines; the
#: relearning rate follows the width").
ZOO_LR, ZOO_WIDTH = 1e-3, 128


def model_lr(d_model: int) -> float:
    """The attack's default learning rate for a residual stream of width ``d_model``:
    ``1e-3 * min(1, (128 / d_model) ** 2)``. 1e-3 is the zoo's (d_model 64 and 128); the square
    brings a 7B model (d_model 4096) to about 1e-6, the low end of the range Deeb & Roger (2024)
    relearn 7B models with (~1e-6..1e-5), and SmolLM2-135M (576) to about 5e-5. Returns the
    learning rate (float)."""
    return ZOO_LR * min(1.0, (ZOO_WIDTH / d_model) ** 2)
