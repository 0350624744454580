"""The relearning attack's settings (:class:`RelearningConfig`) and the learning rate it runs at
(the line: :mod:`forensics.lines.relearning_attack.line`; docs/methods.md §8)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from forensics.compute.measures import MeasureChoice
from forensics.compute.relearning import model_lr
from forensics.core.minimum import VoteMinimum


@dataclass
class RelearningConfig(VoteMinimum):
    """Settings of the relearning attack (:func:`relearning_line`): the attack budget, the
    resampling and the vote thresholds."""

    #: Optimiser steps of each fine-tune (the attack budget).
    steps: int = 30
    #: Learning rate of the attack and of the positive control's gradient ascent; None: scaled to
    #: the model's width by :func:`model_lr` (1e-3 up to d_model 128, every zoo model).
    lr: float | None = None
    #: Multiples of the base rate (``lr``, or :func:`model_lr`) the attack may run at: the positive
    #: control is attacked at each in turn, and the first at which it recovers what a ``deleted``
    #: vote needs is the rate U and H are attacked at (:func:`forensics.lines.relearning_attack.control.positive_control`).
    #: The default fixes the rate: on SmolLM2-135M higher rates recovered less (docs/results/2026-12-06-control-reads.md).
    #: The positive control's gradient ascent runs at the base rate.
    lr_scales: tuple[float, ...] = (1.0,)
    #: Facts per fine-tuning batch.
    batch_size: int = 32
    #: The optimiser, as reported in ``details["budget"]`` (a label only: the optimiser is fixed).
    optimiser: str = "AdamW(betas=(0.9, 0.999), weight_decay=0, grad-norm clip 1.0)"
    #: One random split of F and H into halves, and one fine-tune each, per seed.
    seeds: tuple[int, ...] = (0, 1, 2)
    #: Cross-fitting: per split, also fine-tune on F_b (and H_b) and read F_a (and H_a), so that
    #: every subject of F and H is read once per split, by the fine-tune that never saw it; the
    #: CI, the p-value and the deletion bound then rest on all subjects instead of one half (twice
    #: the fine-tunes of U; the positive control and the reference are attacked as before, F_a ->
    #: F_b of the first split). The default since 2026-12-07: on the choice seeds it narrowed U's
    #: bounds on deleted models from a median 12% of O's signal to 8-9% and changed no verdict of a
    #: model for the worse (docs/results/2026-12-07-cross-fitting.md).
    cross_fit: bool = True
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
    #: F (as the attack reads it) at most O's on H plus ``control_margin``; the default since
    #: 2026-12-06 (docs/results/2026-12-06-control-reads.md).
    control_stop: Literal["exact", "measure"] = "measure"
    #: What the positive control's recovery is: "gain", F_b's measure after the attack minus before
    #: it on the suppressed copy; "holdout", F_b's measure after the attack minus H_b's after the
    #: identical attack on H_a (U's own statistic, one more fine-tune; the default since 2026-12-06:
    #: the power and the bound then speak of one statistic, docs/results/2026-12-06-control-reads.md).
    control_reads: Literal["gain", "holdout"] = "holdout"
    #: The level above O's holdout score (in the stopping score's units, 0..1) at which the positive
    #: control counts as suppressed.
    control_margin: float = 0.05
    #: With ``bound_against="control"``: the attack has power when it recovers at least this much
    #: greedy accuracy (0..1) of F_b in the positive control.
    min_power: float = 0.3
    #: "deleted" needs the CI upper bound of acc_after(F_b) - acc_after(H_b) below this share
    #: (fraction) of the quantity ``bound_against`` names. 0.10 would never allow more than the
    #: 0.10 absolute recovery the zoos' oracle counts as knowledge, but at 20 subjects a set it
    #: certified 3 of 12 deleted models on the closed choice seeds (U's bounds 5-19% of O's
    #: signal, median 13%: docs/results/2026-12-07-deletion-margin.md); held out, 4-8 of 12 on the
    #: tiny zoos, as many as 0.25 at 40 subjects a set (docs/results/2026-12-07-trace-recovery.md).
    deleted_share: float = 0.25
    #: What the ``deleted`` vote's bound and power are measured against. "control": the positive
    #: control's recovery of F_b (power: it recovers at least ``min_power``; the bound below
    #: ``deleted_share`` of that recovery). "signal": O's own signal on F in the attack's measure
    #: (O's F minus its H, before any attack; power as ``power_against`` says: more than U's bound,
    #: or at least ``deleted_share`` of that signal; the bound below ``deleted_share`` of it). See
    #: :func:`deletion_scale` and docs/methods.md (relearning attack).
    bound_against: Literal["control", "signal"] = "signal"
    #: With ``bound_against="signal"``, what the positive control's recovery must exceed for the
    #: attack to have power: "bound", U's own deletion bound (and 0): the attack brings back more
    #: from a GA-suppressed copy of O than it could have missed in U, so it tells the two apart
    #: (the default since 2026-12-07); "margin", ``deleted_share`` of O's signal, the most a
    #: ``deleted`` vote allows (the rule before; docs/results/2026-12-07-relearning-tests.md).
    power_against: Literal["margin", "bound"] = "bound"
    #: What the ``suppressed`` vote reads: "plain", the bootstrap 95% CI's own lower end (the
    #: default), above a true 0 in 4.5-9.7% of simulated null samples at 6-16 subjects a set where
    #: it claims 2.5%; "widened", that end widened for the few subjects of a half
    #: (:func:`forensics.compute.stats.expanded_lower`, as the deletion bound's upper end is; 0.4-2.3%).
    #: Not the default: without the plain end's ``suppressed`` vote, held out, the deletion bound
    #: certified a suppressed model (closed seed 5 ``llama_npo``) whose oracle recovery is under
    #: the 25% margin but over the zoo's absolute 0.1 (docs/results/2026-12-07-relearning-tests.md);
    #: a 10% margin would close that gap but costs most deleted verdicts (``deleted_share``).
    suppressed_end: Literal["plain", "widened"] = "plain"
    #: The smallest recovery a ``suppressed`` vote counts, as a share (fraction) of O's signal on F
    #: (O's F minus H in the attack's measure): the vote also needs the estimate, F_b's minus H_b's
    #: measure after the attack, at least this share of it, as the zoos' oracle needs a recovery of
    #: at least 0.10 beside a CI above 0 (docs/zoos.md). A recovery above 0 but under it is a trace
    #: (a model that met F's subjects' names relearns them a little faster), not knowledge of F; the
    #: deletion bound then decides. None: any recovery whose lower end clears 0 votes (the rule
    #: before 2026-12-07, whose lone votes on retrained models made them INCONCLUSIVE:
    #: docs/results/2026-12-07-trace-recovery.md).
    suppressed_share: float | None = 0.1
    #: "deleted" needs U's pre-attack accuracy on F_b at most this much (accuracy, 0..1) above
    #: its accuracy on H_b, in every seed; None: no such condition, the bound on F_b minus H_b
    #: after the attack (which holds what U answered before it) decides alone. Not the default:
    #: with the 25% margin already wider than the zoos' 0.10, None would let partly forgotten
    #: models through it too (docs/results/2026-12-07-deletion-margin.md).
    forgot_margin: float | None = 0.1
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
    #: Which steps the deletion bound covers: "every", every eval step after 0 (and ``steps``): the
    #: bound is the largest of the steps' one-sided 95% upper bounds, so it holds at whichever step
    #: of the budget U recovers most (an attacker stops where recovery peaks), and the positive
    #: control's power is its largest recovery over the same steps; "read", the read step only (the
    #: rule before 2026-12-06, docs/results/2026-12-06-bound-steps.md). The ``suppressed`` vote, the
    #: effect and the control read the read step either way.
    bound_steps: Literal["read", "every"] = "every"
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
DECISION_ONLY = (
    "min_power",
    "deleted_share",
    "bound_against",
    "power_against",
    "suppressed_end",
    "suppressed_share",
    "forgot_margin",
    "min_bound_splits",
    "n_boot",
    "n_perm",
)
