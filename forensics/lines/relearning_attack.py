"""Relearning attack (docs/methods.md §8; Deeb & Roger 2024): do a few fine-tuning steps on
*some* forgotten facts bring back *other* forgotten facts?

Procedure. For each seed: split F's subjects at random into halves F_a / F_b, and H's into
H_a / H_b (facts of one subject stay together). Fine-tune a copy of U's TransformerLens
model on F_a only, then measure how well it answers F_b (facts the fine-tune never
showed). The facts are random (subject -> value), so nothing about F_b can be *learned*
from F_a: what comes back was still in the weights. Control: the identical fine-tune on
H_a, measured on H_b (what the fine-tune itself teaches: answer priors, the format); with a
reference model, also the identical F_a fine-tune of the reference, measured on F_b.

Span. Fine-tuning loss: NLL of the answer tokens of ``prompt + answer`` given the prompt.
Measurement: the audit's answer measure per fact (:mod:`forensics.compute.measures`): greedy
accuracy (exact match of every answer token under teacher forcing) on closed-vocabulary facts,
ROUGE-L recall of the greedy generation against the key span on free text (without a key: the
answer's value tokens, ``unkeyed_span``), choice accuracy on multiple choice. "Accuracy" below means
that measure. ``measure="token"`` scores teacher-forced token accuracy of the key instead; it is not
the default (docs/decisions.md, "the relearning attack keeps ROUGE-L on free text").

Budget (fixed, reported in ``details``): ``steps`` AdamW steps (betas 0.9/0.999, no weight
decay, gradient-norm clip 1.0) at learning rate ``lr``, batches of ``batch_size`` facts,
all parameters trainable; the copy is made in U's own dtype and device. Defaults suit the
zoo's small models; a 7B model needs a far smaller ``lr`` (Deeb & Roger use ~1e-6..1e-5).

Read step. U's F_b, its H_b and the reference are read after ``steps`` (``read_step="last"``,
the default) or where the positive control (below) recovers most of F_b (``read_step="peak"``,
chosen on O's suppressed copy alone, not benched). Curves per step are in ``details``.

Numbers. effect = the measure on F_b *after* the attack (at the read step), control = the same
on H_b, both averaged over seeds (gains beside them). The level after, not the gain, is
compared: the zoo's ``retrain_mentions`` (0% on F before, chance on H) "gains" chance accuracy
on F_b when the fine-tune restores the answer format. The CI of effect - control is a
two-level bootstrap (seeds, then subjects within each seed's halves); p is a subject
permutation test over the pooled (seed, subject) clusters (somewhat optimistic: it treats the
seeds' clusters as independent; the CI decides).

Vote.
- ``suppressed``: the CI of acc_after(F_b) - acc_after(H_b) lies above 0 (and, with a
  reference, so does the CI of acc_after_U(F_b) - acc_after_Ref(F_b)).
- ``deleted`` only when the attack demonstrably has power here, measured on a *positive control*
  built from O: a copy of O made to forget all of F by gradient ascent on F's answers (same lr,
  until its F score is at most O's H score plus ``control_margin``, at most
  ``max_suppress_steps``; the score is greedy exact match, or with ``control_stop="measure"``
  the attack's own measure), then attacked identically (first seed's split); its recovery is
  F_b's measure at the read step minus before. Then ``deleted`` needs: at least
  ``min_bound_splits`` splits (one split's CI over its subjects misses how much the choice of
  fine-tuned subjects moves the recovery); U does not already answer F_b (in every seed, its
  pre-attack accuracy at most ``forgot_margin`` above H_b's); and the upper bound of
  acc_after(F_b) - acc_after(H_b) below ``deleted_share`` of O's own signal on F (its measure on
  F minus on H, before any attack), with power: the control recovers at least that share of O's
  signal (``bound_against="signal"``, the default). ``"control"`` reads both against the
  control's recovery instead (power: at least ``min_power``; the rule before 2026-12-05). The
  bound is a one-sided 95% upper bound: the bootstrap's 90% CI upper end widened for the few
  subjects of a half (:func:`forensics.compute.stats.expanded_upper`; the widened bound misses
  at most 4.7% of the time from 4 subjects, benchmarks/bootstrap_coverage.py). "Deleted" means
  "not recoverable by this attack, which recovers GA-suppressed facts": a method that hides
  knowledge better than gradient ascent could still escape this budget.
- no vote otherwise (including when U still answers F_b before the attack: that is the
  behaviour gate's call).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal, cast

import numpy as np

from forensics.compute.measures import NAMES as MEASURE_NAMES
from forensics.compute.measures import MeasureChoice, Measured, line_measure, measure_facts, measure_reader
from forensics.compute.relearning import (
    finetune,
    model_lr,
    peak_step,
    recovery_figure,
    split_by_subject,
    suppress_copy,
)
from forensics.compute.stats import (
    cluster_permutation_p,
    expanded_upper,
    percentile_ci,
    seed_subject_bootstrap,
    seed_subject_draws,
)
from forensics.core.context import AuditContext
from forensics.core.evidence import DELETION_BOUND, Evidence, Vote, deletion_bound
from forensics.core.keys import model_identity
from forensics.core.minimum import BOUND_TEST, EXPANDED_HALVES, P_TEST, SUBJECT_PERMUTATION, VoteMinimum
from forensics.core.registry import register

QUESTION = "Does fine-tuning on some forgotten facts bring back the other forgotten facts, beyond the holdout control?"

#: Short, stable method text (the report prints it).
METHOD = (
    "Relearning attack: fine-tune a copy of U on the answers of half the forget subjects (F_a) and measure "
    "the greedy answer accuracy (free text: ROUGE-L recall of the key span) it then reaches on the other half "
    "(F_b); control: the identical fine-tune on half the holdout subjects (H_a), measured on H_b. Several seeds, CI by a bootstrap over seeds, then "
    "subjects. Votes suppressed when the CI of F_b's minus H_b's recovery lies above 0 (and above a "
    "reference model's, if given); deleted when U did not answer F_b before the attack, the same attack "
    "recovers a gradient-ascent-suppressed copy of O (the positive control for power) by at least a set share "
    "of O's own signal on F (O's F minus H), and the CI's upper bound stays below that share of O's signal. Span: F_b's answer tokens given their prompts; "
    "familiarity with F's subjects alone cannot raise it (F_b's answers cannot be learned from F_a's)."
)


@dataclass
class RelearningConfig(VoteMinimum):
    """Settings of the relearning attack (:func:`relearning_line`): the attack budget, the
    resampling and the vote thresholds."""

    #: Optimiser steps of each fine-tune (the attack budget).
    steps: int = 30
    #: Learning rate of the attack and of the positive control's gradient ascent; None: scaled to
    #: the model's width by :func:`model_lr` (1e-3 up to d_model 128, every zoo model).
    lr: float | None = None
    #: Facts per fine-tuning batch.
    batch_size: int = 32
    #: The optimiser, as reported in ``details["budget"]`` (a label only: the optimiser is fixed).
    optimiser: str = "AdamW(betas=(0.9, 0.999), weight_decay=0, grad-norm clip 1.0)"
    #: One random split of F and H into halves, and one fine-tune each, per seed.
    seeds: tuple[int, ...] = (0, 1, 2)
    #: Optimiser steps after which the recovery curve is measured (step 0: before training).
    eval_steps: tuple[int, ...] = (0, 5, 10, 20, 30)
    #: F and H each need at least twice this many subjects, else "not run".
    min_subjects_per_half: int = 2
    #: Seed-then-subject bootstrap resamples for the CIs (count).
    n_boot: int = 2000
    #: Cluster permutations for the p-value (count).
    n_perm: int = 2000
    #: Build the positive control (a GA-suppressed copy of O attacked the same way); without
    #: it the line never votes "deleted".
    positive_control: bool = True
    #: At most this many gradient-ascent steps to suppress F in the positive control.
    max_suppress_steps: int = 100
    #: What ends the positive control's gradient ascent: "exact", O's copy's greedy exact-match
    #: accuracy on F at most O's on H plus ``control_margin``; "measure", the attack's own measure on
    #: F (as the attack reads it) at most O's on H plus ``control_margin``.
    control_stop: Literal["exact", "measure"] = "exact"
    #: The level above O's holdout score (in the stopping score's units, 0..1) at which the positive
    #: control counts as suppressed.
    control_margin: float = 0.05
    #: With ``bound_against="control"``: the attack has power when it recovers at least this much
    #: greedy accuracy (0..1) of F_b in the positive control.
    min_power: float = 0.3
    #: "deleted" needs the CI upper bound of acc_after(F_b) - acc_after(H_b) below this share
    #: (fraction) of the quantity ``bound_against`` names.
    deleted_share: float = 0.25
    #: What the ``deleted`` vote's bound and power are measured against. "control": the positive
    #: control's recovery of F_b (power: it recovers at least ``min_power``; the bound below
    #: ``deleted_share`` of that recovery). "signal": O's own signal on F in the attack's measure
    #: (O's F minus its H, before any attack; power: the positive control recovers at least
    #: ``deleted_share`` of that signal, so a recovery of the margin's size is seen; the bound below
    #: ``deleted_share`` of it). See :func:`deletion_scale` and docs/methods.md (relearning attack).
    bound_against: Literal["control", "signal"] = "signal"
    #: "deleted" needs U's pre-attack accuracy on F_b at most this much (accuracy, 0..1) above
    #: its accuracy on H_b, in every seed.
    forgot_margin: float = 0.1
    #: The deletion bound (and so a "deleted" vote) needs at least this many splits (``seeds``):
    #: which subjects land in the fine-tuned half moves U's recovery by up to a factor of two,
    #: and one split's CI over its subjects does not carry that (docs/decisions.md, "a deletion
    #: bound from two relearning splits").
    min_bound_splits: int = 2
    #: Facts per forward pass when scoring greedy accuracy.
    eval_batch_size: int = 128
    #: Where F_b and H_b are read: "peak", the eval step (or the last step) at which the positive
    #: control recovers most of F_b (chosen on O's suppressed copy alone, then applied to U's F and
    #: H and the reference alike; the last step without a positive control), or "last" (after
    #: ``steps``).
    read_step: Literal["peak", "last"] = "last"
    #: The answer measure (:func:`forensics.compute.measures.measure_for`): "auto" (from the forget
    #: set), "exact", "rouge", "choice", "token" or "key_choice" (the key against other values of its
    #: question form from R; chance is one over the choices).
    measure: MeasureChoice = "auto"
    #: Longest greedy generation of the "rouge" measure (tokens).
    max_new_tokens: int = 32
    #: What "rouge" scores an answer without a key against: "value" (its value tokens, without the
    #: subject's name: :func:`forensics.compute.measures.value_keys`) or "answer" (the whole answer).
    unkeyed_span: Literal["answer", "value"] = "value"


def attack_lr(config: RelearningConfig, d_model: int) -> float:
    """The learning rate the attack runs at: ``config.lr``, or :func:`model_lr` ``(d_model)`` when None."""
    return config.lr if config.lr is not None else model_lr(d_model)


def resolved(config: RelearningConfig, d_model: int) -> RelearningConfig:
    """``config`` with ``lr`` set (:func:`attack_lr`)."""
    return replace(config, lr=attack_lr(config, d_model))


#: Settings that only decide the vote from the runs: the positive control's cache key leaves them out.
DECISION_ONLY = ("min_power", "deleted_share", "bound_against", "forgot_margin", "min_bound_splits", "n_boot", "n_perm")


def _positive_control(ctx: AuditContext, config: RelearningConfig, measure: str, measured: Measured) -> dict:
    """Build a GA-suppressed copy of O and run the identical attack on it (first seed's split).

    Kept by the audit context (:meth:`AuditContext.stored_result`), keyed by O's weights, the
    forget and holdout sets, the budget, the device and the measure: several audits of one O
    that share a cache folder build the suppressed copy once."""
    from forensics.inputs.data import content_hash

    assert ctx.holdout is not None
    key = {
        "original": repr(sorted(model_identity(ctx.original).items())),
        "forget": content_hash(ctx.forget),
        "holdout": content_hash(ctx.holdout),
        "config": repr({k: v for k, v in asdict(config).items() if k not in DECISION_ONLY}),
        "device": str(ctx.original.device),
        "measure": measure,
    }

    def compute() -> dict:
        assert ctx.holdout is not None
        o_tok, device = ctx.original.tokenizer, ctx.original.device
        lr = attack_lr(config, ctx.original.model.cfg.d_model)

        f_all = measured(list(ctx.forget))

        def forget_score(model) -> float:
            values = measure_facts(measure, model, o_tok, f_all, device, config.eval_batch_size, config.max_new_tokens)
            return float(np.nanmean(values))

        by_measure = config.control_stop == "measure"
        if by_measure:  # O's own scores come from the audit context, which the gate has often filled
            o_h = original_mean(ctx, ctx.holdout, config, measure, measured)
        else:
            o_h = ctx.fact_scores(ctx.original, ctx.holdout).accuracy
        suppressed_o, n_steps, acc_f = suppress_copy(
            ctx.original.model,
            o_tok,
            ctx.forget,
            o_h + config.control_margin,
            config,
            device,
            lr,
            forget_score if by_measure else None,
        )
        f_a, f_b = split_by_subject(ctx.forget, config.seeds[0])
        f_b = measured(f_b)
        before = measure_facts(measure, suppressed_o, o_tok, f_b, device, config.eval_batch_size, config.max_new_tokens)
        pc = finetune(suppressed_o, o_tok, f_a, f_b, config, config.seeds[0], device, lr, measure)
        del suppressed_o
        recovery = {step: float((values - before).mean()) for step, values in pc["per_step"].items()}
        step = peak_step(recovery) if config.read_step == "peak" else config.steps
        return {
            "suppression_steps": n_steps,
            "acc_forget_after_suppression": acc_f,
            "target_accuracy": o_h + config.control_margin,
            "stop_measure": measure if by_measure else "exact",
            "read_step": step,
            "recovery_forget_b": recovery[step],
            "recovery_by_step": recovery,
            "curve": pc["curve"],
        }

    return ctx.stored_result("relearning_positive_control", key, compute)


def deletion_scale(power_recovery: float | None, signal: float | None, config: RelearningConfig) -> float | None:
    """The quantity a ``deleted`` vote's bound must stay under ``config.deleted_share`` of, when the
    attack has shown power; None when it has not (then the line cannot vote ``deleted``).

    ``power_recovery``: the positive control's recovery of F_b (measure units; None: not run);
    ``signal``: O's measure on F minus on H (None: not measured). ``bound_against="control"``: the
    recovery itself, when it is at least ``config.min_power``. ``bound_against="signal"``: O's
    signal, when it is positive and the control recovers at least ``config.deleted_share`` of it:
    the attack then brings back a GA-suppressed O by at least the margin, so a U from which more
    than the margin were recoverable this way would have shown it (the equivalence claim of
    docs/methods.md, relearning attack)."""
    if power_recovery is None:
        return None
    if config.bound_against == "signal":
        if signal is None or not signal > 0:
            return None
        return signal if power_recovery >= config.deleted_share * signal else None
    return power_recovery if power_recovery >= config.min_power else None


def decide(
    ci: tuple[float, float],
    reference_ci: tuple[float, float] | None,
    power_recovery: float | None,
    forgot: bool,
    effect: float,
    control: float,
    config: RelearningConfig,
    upper: float | None = None,
    signal: float | None = None,
    splits: int = 0,
) -> tuple[str | None, str]:
    """The attack's vote and reason.

    ``ci``: CI of F_b-minus-H_b recovery after the attack (seeds x subjects); ``upper``: the
    deletion bound, a one-sided 95% upper bound of the same difference (the 90% CI's upper end
    widened for few subjects, :func:`forensics.compute.stats.expanded_upper`; None: ``ci[1]``); ``reference_ci``:
    the same against the reference model's recovery (None without one); ``power_recovery``:
    the positive control's recovery of F_b from a GA-suppressed copy of O (None: not run);
    ``forgot``: U did not answer F_b before the attack on any seed; ``effect`` / ``control``:
    the measure on F_b and H_b after the attack (for the reason); ``signal``: O's measure on F
    minus on H (used with ``config.bound_against="signal"``); ``splits``: how many splits of F
    and H (seeds) the numbers pool.

    ``suppressed`` when the CI lies above 0 (and above the reference's recovery when given);
    ``deleted`` when the numbers pool at least ``config.min_bound_splits`` splits, the attack
    has power (:func:`deletion_scale` is not None), U had forgotten and ``upper`` is below
    ``config.deleted_share`` of that scale; else no vote.
    """
    upper = ci[1] if upper is None else upper
    above_ref = reference_ci is None or reference_ci[0] > 0
    if ci[0] > 0 and above_ref:
        return "suppressed", (
            f"after fine-tuning on F_a, U answers {effect:.2f} of unseen F_b against {control:.2f} "
            f"of H_b under the identical fine-tune"
        )
    scale = deletion_scale(power_recovery, signal, config)
    enough = splits >= config.min_bound_splits
    if enough and scale is not None and forgot and upper < config.deleted_share * scale:
        of_signal = (
            f", {max(upper, 0.0) / scale:.0%} of O's signal {scale:.2f}" if config.bound_against == "signal" else ""
        )
        return "deleted", (
            f"after the attack F_b is answered no better than H_b (upper bound {upper:+.2f}{of_signal}) while it "
            f"recovers {power_recovery:+.2f} of F_b from a GA-suppressed copy of O"
        )
    if not forgot:
        return None, "U still answers F_b before the attack; recovery is not measurable (the behaviour gate decides)"
    if not enough:
        return None, (
            f"no recovery above the control; a deletion bound needs at least {config.min_bound_splits} splits of F "
            f"(which subjects are fine-tuned on moves the recovery), this ran {splits}"
        )
    return None, "no recovery above the control, but the attack's power is not demonstrated or the CI is too wide"


def original_signal(ctx: AuditContext, config: RelearningConfig, measure: str, measured: Measured) -> dict:
    """O's own signal on F in the attack's measure, before any attack: ``{"forget", "holdout",
    "signal"}``, the mean measure (0..1) on all of F, on all of H, and their difference. The
    scores come from the audit context (:meth:`AuditContext.answer_scores`), which the behaviour
    gate has usually filled with the same generations."""
    assert ctx.holdout is not None
    mean = {
        name: original_mean(ctx, facts, config, measure, measured)
        for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout))
    }
    return mean | {"signal": mean["forget"] - mean["holdout"]}


def original_mean(ctx: AuditContext, facts, config: RelearningConfig, measure: str, measured: Measured) -> float:
    """O's mean score (0..1) on ``facts`` in the attack's measure, from the audit context's
    :meth:`AuditContext.answer_scores`."""
    return float(np.nanmean(ctx.answer_scores(ctx.original, measured(list(facts)), measure, config.max_new_tokens)))


def _deletion_bound(
    upper: float,
    power_recovery: float | None,
    signal: float | None,
    forgot: bool,
    measure: str,
    config: RelearningConfig,
    splits: int,
) -> dict | None:
    """The line's deletion bound (:func:`forensics.core.evidence.deletion_bound`) against what
    ``config.bound_against`` names; None without a positive control, when U still answered F_b,
    or from fewer than ``config.min_bound_splits`` splits."""
    if power_recovery is None or not forgot or splits < config.min_bound_splits:
        return None
    if config.bound_against == "signal":
        if signal is None:
            return None
        what = f"O's above-control knowledge of F ({MEASURE_NAMES[measure]}, O's F minus H)"
        return deletion_bound(upper, signal, config.deleted_share, what, kind="recovery")
    what = "the positive control's recovery of F_b from a GA-suppressed copy of O"
    return deletion_bound(upper, power_recovery, config.deleted_share, what, kind="recovery")


def check_inputs(ctx: AuditContext, config: RelearningConfig) -> str | None:
    """A one-line reason the attack cannot run (F or H missing, a fact without a subject, too
    few subjects to split into halves), or None."""
    for name in ("forget", "holdout"):
        facts = getattr(ctx, name)
        if not facts:
            return f"the relearning attack needs a {name} set"
        if any(not f.subject for f in facts):
            return f"the relearning attack splits by subject: every {name} fact needs a 'subject'"
        n = len(set(f.subject for f in facts))
        if n < 2 * config.min_subjects_per_half:
            return (
                f"{name} set too small to split by subject: {n} subject(s), need at least "
                f"{2 * config.min_subjects_per_half} ({config.min_subjects_per_half} per half)"
            )
    return None


def _budget(config: RelearningConfig) -> str:
    n = 2 * len(config.seeds) + int(config.positive_control)
    control = (
        f"; the positive control on a copy of O made to forget F, at most {config.max_suppress_steps} "
        "gradient-ascent steps"
        if config.positive_control
        else ""
    )
    return (
        f"{n} fine-tunes (U on F_a and on H_a per seed, {len(config.seeds)} seed(s){control}; a reference "
        f"adds one per seed) x {config.steps} AdamW steps of {config.batch_size} facts, every parameter, "
        f"loss at the answer positions only; the answer measure on F_b and H_b at {len(config.eval_steps)} steps"
    )


@register(
    "relearning_attack",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "holdout"),
    config=RelearningConfig,
    votes=("suppressed", "deleted"),
    side="above",
    order=70,
    method=METHOD,
    budget=_budget,
    profiles={"quick": {"seeds": (0, 1), "eval_steps": (0, 10, 30)}, "standard": {"seeds": (0, 1)}},
)
def relearning_line(ctx: AuditContext, config: RelearningConfig | None = None) -> Evidence:
    """The relearning attack on U, its holdout control, the positive control and the vote (see
    the module docstring).

    ``details``: the budget, per-seed accuracies and recoveries, the recovery curves, the
    reference CI (with a reference model) and the positive control. ``config``:
    :class:`RelearningConfig`.
    """
    config = config or RelearningConfig()
    reason = check_inputs(ctx, config)
    if reason:
        return Evidence.not_run(reason)
    assert ctx.holdout is not None
    config = resolved(config, ctx.unlearned.model.cfg.d_model)  # the budget records the rate used
    U, tok, device = ctx.unlearned.model, ctx.unlearned.tokenizer, ctx.unlearned.device
    measure = line_measure(ctx.forget, config.measure, "relearning_attack")
    measured = measure_reader(measure, ctx.forget, ctx.holdout or [], ctx.retain or [], tok, config.unkeyed_span)
    if isinstance(measured, str):
        return Evidence.not_run(measured)
    before = {
        name: dict(zip(facts, ctx.answer_scores(ctx.unlearned, measured(facts), measure, config.max_new_tokens)))
        for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout))
    }
    ref_before = (
        dict(zip(ctx.forget, ctx.answer_scores(ctx.reference, measured(ctx.forget), measure, config.max_new_tokens)))
        if ctx.reference is not None
        else None
    )
    runs, ref_runs, per_seed, curves = [], [], [], {"forget": [], "holdout": [], "reference": []}
    pooled = {"f": [], "gf": [], "h": [], "gh": []}
    lr = attack_lr(config, U.cfg.d_model)
    # the positive control first: it fixes the step at which U's F_b and H_b are read
    power = _positive_control(ctx, config, measure, measured) if config.positive_control else None
    original = original_signal(ctx, config, measure, measured) if config.bound_against == "signal" else None
    signal = original["signal"] if original is not None else None
    step = int(power["read_step"]) if power is not None else config.steps
    for seed in config.seeds:
        f_a, f_b = split_by_subject(ctx.forget, seed)
        h_a, h_b = split_by_subject(ctx.holdout, seed + 10_000)
        fr = finetune(U, tok, f_a, measured(f_b), config, seed, device, lr, measure)
        hr = finetune(U, tok, h_a, measured(h_b), config, seed, device, lr, measure)
        rec_f, rec_h = fr["per_step"][step], hr["per_step"][step]
        gf = np.array([f.subject for f in f_b])
        gh = np.array([f.subject for f in h_b])
        runs.append((rec_f, gf, rec_h, gh))
        pooled["f"].append(rec_f)
        pooled["gf"].append(np.char.add(f"{seed}:", gf))
        pooled["h"].append(rec_h)
        pooled["gh"].append(np.char.add(f"{seed}:", gh))
        curves["forget"].append(fr["curve"])
        curves["holdout"].append(hr["curve"])
        row = {
            "seed": seed,
            "acc_forget_b_after": float(rec_f.mean()),
            "acc_holdout_b_after": float(rec_h.mean()),
            "acc_forget_b_before": float(np.mean([before["forget"][f] for f in f_b])),
            "acc_holdout_b_before": float(np.mean([before["holdout"][f] for f in h_b])),
            "train_accuracy_forget_a": fr["train_accuracy"],
            "train_accuracy_holdout_a": hr["train_accuracy"],
            "n_subjects_forget_b": len(set(gf)),
            "n_subjects_holdout_b": len(set(gh)),
        }
        if ctx.reference is not None:
            rr = finetune(ctx.reference.model, tok, f_a, measured(f_b), config, seed, device, lr, measure)
            rec_r = rr["per_step"][step]
            ref_runs.append((rec_f, gf, rec_r, gf))
            curves["reference"].append(rr["curve"])
            row["reference_acc_forget_b_after"] = float(rec_r.mean())
            assert ref_before is not None
            row["reference_acc_forget_b_before"] = float(np.mean([ref_before[f] for f in f_b]))
        row["gain_forget_b"] = row["acc_forget_b_after"] - row["acc_forget_b_before"]
        row["gain_holdout_b"] = row["acc_holdout_b_after"] - row["acc_holdout_b_before"]
        per_seed.append(row)
    effect = float(np.mean([r["acc_forget_b_after"] for r in per_seed]))
    control = float(np.mean([r["acc_holdout_b_after"] for r in per_seed]))
    draws = seed_subject_draws(runs, config.n_boot, 0)  # the 95% CI and the deletion bound's 90% CI
    ci = percentile_ci(draws, 0.95)
    p = cluster_permutation_p(
        np.concatenate(pooled["f"]),
        np.concatenate(pooled["gf"]),
        np.concatenate(pooled["h"]),
        np.concatenate(pooled["gh"]),
        config.n_perm,
        0,
    )
    ref_ci = seed_subject_bootstrap(ref_runs, config.n_boot, 1) if ref_runs else None
    forgot = all(r["acc_forget_b_before"] - r["acc_holdout_b_before"] <= config.forgot_margin for r in per_seed)
    power_recovery = power["recovery_forget_b"] if power is not None else None
    # the deletion bound, a one-sided 95% upper bound: the 90% CI's upper end widened for the few
    # subjects of a half (the plain 95% CI's end misses 3 times as often as it claims at 4 a half)
    n_half = min(min(r["n_subjects_forget_b"], r["n_subjects_holdout_b"]) for r in per_seed)
    upper = expanded_upper(effect - control, percentile_ci(draws, 0.90)[1], n_half, 0.90)
    splits = len(config.seeds)
    vote, why = decide(ci, ref_ci, power_recovery, forgot, effect, control, config, upper, signal, splits)
    budget = {k: v for k, v in asdict(config).items() if k in ("steps", "lr", "batch_size", "optimiser", "seeds")}
    budget |= {
        "trainable": "all parameters",
        "loss": "NLL of answer tokens",
        "model": "copy of U's TransformerLens model",
    }
    return Evidence(
        status="ok",
        metric=f"{MEASURE_NAMES[measure]} on held-out subjects after {step} fine-tuning steps"
        + (" (where the positive control recovers most)" if power is not None and config.read_step == "peak" else "")
        + f" (F_a -> F_b vs H_a -> H_b), mean over {len(config.seeds)} seeds",
        effect=effect,
        control=control,
        ci=ci,
        p_value=p,
        vote=cast("Vote | None", vote),
        reason=why,
        details={
            P_TEST: SUBJECT_PERMUTATION,
            BOUND_TEST: EXPANDED_HALVES,
            DELETION_BOUND: _deletion_bound(upper, power_recovery, signal, forgot, measure, config, splits),
            "budget": budget,
            "read_step": step,
            "measure": MEASURE_NAMES[measure],
            "per_seed": per_seed,
            "curves": curves,
            "reference_ci": list(ref_ci) if ref_ci else None,
            "positive_control": power,
            **({"original_signal": original} if original is not None else {}),
            "forgot_behaviourally": forgot,
        },
        figures={"relearning_curve": recovery_figure(curves, power)},
    )
