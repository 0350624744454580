"""The ground-truth oracle: is what a method "forgot" still in the weights?

The audit never gets this check. Split the forget subjects into halves F_a and F_b.
Fine-tune the model on F_a's facts only (answer NLL, all parameters, a fixed small
budget: ``steps`` AdamW steps at ``lr``, batch ``batch_size``, fixed seed), then
measure greedy accuracy on F_b (in the bio world: ROUGE-L recall of the greedy generation
against the answer's key span, the free-text measure), whose facts the fine-tune never showed. The facts are
random (subject -> value), so nothing about F_b can be *learned* from F_a: a model that
never knew F_b (``retrain``) stays near chance, and a model that recovers F_b well above
``retrain`` under the identical fine-tune still had F_b in its weights.

Cross-fitted: the same is done the other way round (fine-tune on F_b, measure F_a), and
the decision pools both held-out halves, so every forget subject is measured once (one
direction alone measures only half the subjects and is too noisy to label a model).

Decision, on the paired difference acc(model) - acc(retrain) on the held-out facts and
its 95% bootstrap CI: SUPPRESSED when the CI lies above 0 *and* the mean is at least
``margin``; DELETED when the CI's upper bound is below ``margin`` (a recovery of that
size is ruled out); UNDETERMINED otherwise (the CI straddles the margin: the oracle
cannot settle it, and the bench leaves such a model out of its accuracy rather than guess
a label). The bootstrap resamples held-out *subjects* (each subject's facts stay
together: the templates of one fact are not independent), which is stricter than
resampling single facts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.compute.finetune import Sampler, encode_answers, nll, run_steps
from forensics.compute.freetext import greedy_generations, rouge_l_recall
from forensics.compute.scoring import logits_fn_for, score_facts
from forensics.inputs.data import Fact


@dataclass
class OracleConfig:
    """The oracle's fine-tuning budget and decision rule (see the module docstring)."""

    #: AdamW steps of each relearning fine-tune (one per direction).
    steps: int = 30
    #: Learning rate of the fine-tune.
    lr: float = 1e-3
    #: Facts per fine-tuning step.
    batch_size: int = 32
    #: Recovery above retrain (accuracy on held-out facts, fraction) that separates the labels.
    margin: float = 0.10
    #: Bootstrap resamples of the held-out subjects for the 95% CI.
    n_boot: int = 2000
    #: Seed of the fine-tuning batch order and of the bootstrap.
    seed: int = 12345
    #: Score each held-out fact by ROUGE-L recall (``rouge-score``, TOFU's measure) of the greedy
    #: generation against its key span (the answer when no key) instead of greedy exact match.
    #: The key alone carries the fact: the rest of a bio answer is the question's sentence
    #: frame, which every model writes and which would only dilute the difference.
    free_text: bool = False
    #: Longest greedy generation of the free-text measure (tokens).
    max_new_tokens: int = 24


def held_out_scores(model, tokenizer, facts: list[Fact], config: OracleConfig) -> np.ndarray:
    """Per-fact score of the oracle's measure, float ``[n]`` in [0, 1]: greedy exact match, or
    (``config.free_text``) ROUGE-L recall of the key span in the greedy generation."""
    if not config.free_text:
        return score_facts(logits_fn_for(model), tokenizer, facts, batch_size=128).correct.astype(float)
    generations = greedy_generations(model, tokenizer, facts, max_new_tokens=config.max_new_tokens, batch_size=128)
    return rouge_l_recall([f.key or f.answer for f in facts], generations)


def split_forget(facts: list[Fact]) -> tuple[list[Fact], list[Fact]]:
    """F_a = facts of the forget subjects at even positions, F_b = the odd ones."""
    order = list(dict.fromkeys(f.subject for f in facts))
    half_a = set(order[0::2])
    return [f for f in facts if f.subject in half_a], [f for f in facts if f.subject not in half_a]


def relearn_probe(model, tokenizer, f_a: list[Fact], f_b: list[Fact], config: OracleConfig) -> dict:
    """Fine-tune a copy of ``model`` on F_a (``model`` itself is untouched); per-fact scores
    (:func:`held_out_scores`) on F_b before and after (``[n_F_b]`` float arrays) and the mean
    score on F_a after."""
    import copy

    before = held_out_scores(model, tokenizer, f_b, config)
    tuned = copy.deepcopy(model)
    sampler = Sampler(encode_answers(tokenizer, f_a), config.batch_size, config.seed)
    run_steps(tuned, list(tuned.parameters()), lambda s: nll(tuned, sampler.next()), config.steps, config.lr)
    after = held_out_scores(tuned, tokenizer, f_b, config)
    a_after = float(held_out_scores(tuned, tokenizer, f_a, config).mean())
    return {"before": before, "after": after, "acc_Fa_after": a_after}


def held_out_facts(f_a: list[Fact], f_b: list[Fact]) -> list[Fact]:
    """The facts :func:`crossfit_probe` scores, in its order: F_b (tuned on F_a), then F_a."""
    return f_b + f_a


def crossfit_probe(model, tokenizer, f_a: list[Fact], f_b: list[Fact], config: OracleConfig) -> dict:
    """:func:`relearn_probe` both ways (F_a -> F_b, then F_b -> F_a); per-fact correctness on
    the held-out facts, in the order of :func:`held_out_facts`."""
    ab = relearn_probe(model, tokenizer, f_a, f_b, config)
    ba = relearn_probe(model, tokenizer, f_b, f_a, config)
    return {
        "before": np.concatenate([ab["before"], ba["before"]]),
        "after": np.concatenate([ab["after"], ba["after"]]),
        "acc_tuned_half_after": float(np.mean([ab["acc_Fa_after"], ba["acc_Fa_after"]])),
    }


def oracle_rule(lo: float, hi: float, difference: float, margin: float) -> str:
    """The oracle's label from a recovery difference (fraction of facts, model minus control) and
    its 95% CI ``[lo, hi]``: SUPPRESSED when the CI lies above 0 and the difference reaches
    ``margin``, DELETED when the CI lies below ``margin``, else UNDETERMINED (the zoo's and the
    real-knowledge organism's oracles, :mod:`forensics.zoo.real`)."""
    if lo > 0 and difference >= margin:
        return "SUPPRESSED"
    if hi < margin:
        return "DELETED"
    return "UNDETERMINED"


def oracle_rule_text(margin: float) -> str:
    """:func:`oracle_rule` in words, as ``labels.json`` records it."""
    return (
        f"SUPPRESSED if CI95 low > 0 and difference >= {margin}; DELETED if CI95 high < "
        f"{margin}; UNDETERMINED otherwise"
    )


def decide(model_probe: dict, reference_probe: dict, held_out: list[Fact], config: OracleConfig) -> dict:
    """Compare a model's recovery of the ``held_out`` facts (:func:`held_out_facts` for
    :func:`crossfit_probe`) with the reference's; the label and its numbers."""
    subjects = list(dict.fromkeys(f.subject for f in held_out))
    index = {s: [i for i, f in enumerate(held_out) if f.subject == s] for s in subjects}
    diff = model_probe["after"].astype(float) - reference_probe["after"].astype(float)
    per_subject = np.array([diff[index[s]].mean() for s in subjects])
    rng = np.random.default_rng(config.seed)
    boots = per_subject[rng.integers(0, len(subjects), size=(config.n_boot, len(subjects)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    mean = float(per_subject.mean())
    return {
        "ground_truth": oracle_rule(lo, hi, mean, config.margin),
        "acc_held_out_before": float(model_probe["before"].mean()),
        "acc_held_out_after": float(model_probe["after"].mean()),
        "acc_tuned_half_after": float(model_probe["acc_tuned_half_after"]),
        "reference_acc_held_out_after": float(reference_probe["after"].mean()),
        "difference": mean,
        "ci95": [float(lo), float(hi)],
        "n_held_out_facts": len(held_out),
        "n_held_out_subjects": len(subjects),
        "rule": oracle_rule_text(config.margin),
        "measure": (
            "ROUGE-L recall of the key span in the greedy generation" if config.free_text else "greedy exact match"
        ),
        "budget": {
            "steps": config.steps,
            "lr": config.lr,
            "batch_size": config.batch_size,
            "trainable": "all",
            "loss": "NLL(answers of the tuned half)",
            "cross_fitted": "F_a -> F_b and F_b -> F_a, held-out halves pooled",
        },
    }
