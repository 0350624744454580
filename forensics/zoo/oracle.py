"""The ground-truth oracle: is what a method "forgot" still in the weights?

The audit never gets this check. Split the forget subjects into halves F_a and F_b.
Fine-tune the model on F_a's facts only (answer NLL, all parameters, a fixed small
budget: ``steps`` AdamW steps at ``lr``, batch ``batch_size``, fixed seed), then
measure greedy accuracy on F_b, whose facts the fine-tune never showed. The facts are
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

from forensics.data import Fact
from forensics.finetune import Sampler, encode_answers, nll, run_steps
from forensics.scoring import logits_fn_for, score_facts


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


def split_forget(facts: list[Fact]) -> tuple[list[Fact], list[Fact]]:
    """F_a = facts of the forget subjects at even positions, F_b = the odd ones."""
    order = list(dict.fromkeys(f.subject for f in facts))
    half_a = set(order[0::2])
    return [f for f in facts if f.subject in half_a], [f for f in facts if f.subject not in half_a]


def relearn_probe(model, tokenizer, f_a: list[Fact], f_b: list[Fact], config: OracleConfig) -> dict:
    """Fine-tune a copy of ``model`` on F_a (``model`` itself is untouched); per-fact greedy
    correctness on F_b before and after (``[n_F_b]`` bool arrays) and the accuracy on F_a after."""
    import copy

    before = score_facts(logits_fn_for(model), tokenizer, f_b, batch_size=128).correct
    tuned = copy.deepcopy(model)
    sampler = Sampler(encode_answers(tokenizer, f_a), config.batch_size, config.seed)
    run_steps(tuned, list(tuned.parameters()), lambda s: nll(tuned, sampler.next()), config.steps, config.lr)
    after = score_facts(logits_fn_for(tuned), tokenizer, f_b, batch_size=128).correct
    a_after = score_facts(logits_fn_for(tuned), tokenizer, f_a, batch_size=128).accuracy
    return {"before": before, "after": after, "acc_Fa_after": a_after}


def held_out_facts(f_a: list[Fact], f_b: list[Fact]) -> list[Fact]:
    """The facts :func:`crossfit_probe` scores, in its order: F_b (tuned on F_a), then F_a."""
    return f_b + f_a


def crossfit_probe(model, tokenizer, f_a: list[Fact], f_b: list[Fact], config: OracleConfig) -> dict:
    """:func:`relearn_probe` both ways (F_a -> F_b, then F_b -> F_a); per-fact correctness on
    the held-out facts, in the order of :func:`held_out_facts`."""
    ab = relearn_probe(model, tokenizer, f_a, f_b, config)
    ba = relearn_probe(model, tokenizer, f_b, f_a, config)
    return {"before": np.concatenate([ab["before"], ba["before"]]),
            "after": np.concatenate([ab["after"], ba["after"]]),
            "acc_tuned_half_after": float(np.mean([ab["acc_Fa_after"], ba["acc_Fa_after"]]))}


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
    if lo > 0 and mean >= config.margin:
        label = "SUPPRESSED"
    elif hi < config.margin:
        label = "DELETED"
    else:
        label = "UNDETERMINED"
    return {
        "ground_truth": label,
        "acc_held_out_before": float(model_probe["before"].mean()),
        "acc_held_out_after": float(model_probe["after"].mean()),
        "acc_tuned_half_after": float(model_probe["acc_tuned_half_after"]),
        "reference_acc_held_out_after": float(reference_probe["after"].mean()),
        "difference": mean,
        "ci95": [float(lo), float(hi)],
        "n_held_out_facts": len(held_out),
        "n_held_out_subjects": len(subjects),
        "rule": (f"SUPPRESSED if CI95 low > 0 and difference >= {config.margin}; DELETED if CI95 high < "
                 f"{config.margin}; UNDETERMINED otherwise"),
        "budget": {"steps": config.steps, "lr": config.lr, "batch_size": config.batch_size,
                   "trainable": "all", "loss": "NLL(answers of the tuned half)",
                   "cross_fitted": "F_a -> F_b and F_b -> F_a, held-out halves pooled"},
    }
