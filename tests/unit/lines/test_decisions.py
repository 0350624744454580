"""Every voting line's decision is a pure function of its numbers: hand-made inputs, each
threshold crossed from both sides. (REMIND's and the quantization attack's own tests sit
beside their lines' other tests.)"""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest

from forensics.core.registry import discover_lines
from forensics.lines import (
    answer_probe,
    attribute_probes,
    behaviour,
    membership_inference,
    relearning_attack,
    steering_restoration,
    trace_detector,
    tuned_lens,
)
from forensics.lines.patching import line as patching


def test_every_voting_line_exposes_a_decision():
    lines, _ = discover_lines()
    voting = {name: spec for name, spec in lines.items() if spec.votes}
    assert len(voting) >= 10
    for name, spec in voting.items():
        decide = getattr(importlib.import_module(spec.module), "decide", None)
        assert callable(decide), f"{name} ({spec.module}) has no decide()"


def test_behaviour_gate():
    config = behaviour.BehaviourConfig()  # retained_share_not_forgotten 0.5
    assert behaviour.decide(0.8, 0.6, (0.2, 0.6), "accuracy", config) == (
        "not_forgotten",
        "U keeps 60% of O's above-control accuracy on F",
    )
    # below the share, or a CI touching 0: U forgot behaviourally, no vote
    assert behaviour.decide(0.8, 0.4, (0.2, 0.6), "accuracy", config)[0] is None
    assert behaviour.decide(0.8, 0.9, (0.0, 0.6), "accuracy", config)[0] is None
    # O itself does not answer F: nothing to keep
    vote, reason = behaviour.decide(0.0, float("nan"), (0.2, 0.6), "accuracy", config)
    assert vote is None and reason == "O itself does not answer F above the control"


@pytest.mark.parametrize("module", [answer_probe, tuned_lens])
def test_above_the_control_with_a_small_p_is_suppressed(module):
    config = (answer_probe.AnswerProbeConfig if module is answer_probe else tuned_lens.TunedLensConfig)()
    assert module.decide((0.01, 0.2), 0.01, config)[0] == "suppressed"
    assert module.decide((0.01, 0.2), 0.06, config)[0] is None  # p above alpha (0.05)
    assert module.decide((-0.01, 0.2), 0.01, config)[0] is None  # CI touches 0


def test_tuned_lens_calls_f_below_h_a_trace_not_a_vote():
    vote, reason = tuned_lens.decide((-0.3, -0.1), 0.01, tuned_lens.TunedLensConfig())
    assert vote is None and "trace of the unlearning" in reason


def test_patching():
    config = patching.PatchingConfig()
    vote, reason = patching.decide((0.05, 0.3), 0.01, 0.8, config)
    assert vote == "suppressed" and "U keeps 80% of O's own carriage" in reason
    vote, reason = patching.decide((-0.05, 0.3), 0.01, None, config)
    assert vote is None and "keep n/a of O's carriage" in reason


def _cell(difference: float, ci: tuple[float, float]) -> dict:
    return {"difference": difference, "ci": ci, "forget": difference + 0.1, "holdout": 0.1, "cell_forget": "layer 1"}


def test_steering_votes_on_the_best_restoring_intervention():
    config = steering_restoration.SteeringConfig()  # min_restoration 0.1
    best = {"ablate": _cell(0.5, (-0.1, 0.9)), "reverse": _cell(0.3, (0.05, 0.5))}
    # "ablate" has the larger difference, but only "reverse" restores (CI above 0)
    assert steering_restoration.decision_intervention(best, config) == "reverse"
    vote, reason = steering_restoration.decide(best, config)
    assert vote == "suppressed" and reason.startswith("reverse restores")
    # a CI above 0 but a restoration below the minimum does not vote; the largest is reported
    small = {"ablate": _cell(0.05, (0.01, 0.09)), "reverse": _cell(0.02, (-0.1, 0.1))}
    assert steering_restoration.decision_intervention(small, config) == "ablate"
    vote, reason = steering_restoration.decide(small, config)
    assert vote is None and "steering never votes deleted" in reason


def test_relearning_attack():
    # the control rule: min_power 0.3, deleted_share 0.25 of the control's recovery
    config = relearning_attack.RelearningConfig(bound_against="control")
    decide = relearning_attack.decide
    assert decide((0.05, 0.3), None, None, True, 0.4, 0.2, config, splits=2)[0] == "suppressed"
    # above H, but not above the reference model's recovery
    assert decide((0.05, 0.3), (-0.1, 0.2), None, True, 0.4, 0.2, config, splits=2)[0] is None
    # deleted: power shown (0.6 >= 0.3), U had forgotten, CI upper 0.1 < 0.25 * 0.6
    assert decide((-0.1, 0.1), None, 0.6, True, 0.2, 0.2, config, splits=2)[0] == "deleted"
    assert decide((-0.1, 0.2), None, 0.6, True, 0.2, 0.2, config, splits=2)[0] is None  # CI too wide
    assert decide((-0.1, 0.1), None, 0.2, True, 0.2, 0.2, config, splits=2)[0] is None  # power not shown
    assert decide((-0.1, 0.1), None, None, True, 0.2, 0.2, config, splits=2)[0] is None  # no positive control
    vote, reason = decide((-0.1, 0.1), None, 0.6, False, 0.2, 0.2, config, splits=2)
    assert vote is None and "still answers F before" in reason
    # the widened upper end decides deletion when given: 0.1 passes, widened to 0.16 it does not
    assert decide((-0.1, 0.1), None, 0.6, True, 0.2, 0.2, config, upper=0.16, splits=2)[0] is None
    assert decide((-0.1, 0.1), None, 0.6, True, 0.2, 0.2, config, upper=0.14, splits=2)[0] == "deleted"


def test_relearning_attack_against_os_signal():
    """``bound_against="signal"`` (the default): power when the control recovers at least deleted_share (0.25) of
    O's signal; deleted when the bound is under that share of the signal, whatever the control's
    own size (0.3 was the floor of the control rule)."""
    # the margin rule of power (the default before 2026-12-07; the bound rule: the next test)
    config = relearning_attack.RelearningConfig(power_against="margin")  # bound_against="signal" is the default
    decide, scale = relearning_attack.decide, relearning_attack.deletion_scale
    assert scale(0.21, 0.8, config) == 0.8  # 0.21 >= 0.25 * 0.8
    assert scale(0.19, 0.8, config) is None  # short of the margin's size
    assert scale(0.5, 0.0, config) is None and scale(0.5, None, config) is None  # O shows nothing
    assert scale(None, 0.8, config) is None
    # bound 0.15 < 0.25 * 0.8 = 0.2: deleted, though the control's 0.21 is under the old 0.3 floor
    vote, reason = decide((-0.1, 0.1), None, 0.21, True, 0.1, 0.1, config, upper=0.15, signal=0.8, splits=2)
    assert vote == "deleted" and "19% of O's signal 0.80" in reason
    assert decide((-0.1, 0.1), None, 0.21, True, 0.1, 0.1, config, upper=0.21, signal=0.8, splits=2)[0] is None
    assert decide((-0.1, 0.1), None, 0.6, True, 0.1, 0.1, config, upper=0.15, signal=0.4, splits=2)[0] is None
    # the control rule on the same numbers: 0.21 recovers less than min_power
    control = replace(config, bound_against="control")
    assert decide((-0.1, 0.1), None, 0.21, True, 0.1, 0.1, control, upper=0.15, signal=0.8, splits=2)[0] is None
    # one split (the quick profile before 2026-12-06) states no bound and cannot vote deleted;
    # it can still vote suppressed
    vote, reason = decide((-0.1, 0.1), None, 0.21, True, 0.1, 0.1, config, upper=0.15, signal=0.8, splits=1)
    assert vote is None and "needs at least 2 splits" in reason and "this ran 1" in reason
    assert decide((0.05, 0.3), None, None, True, 0.4, 0.2, config, signal=0.8, splits=1)[0] == "suppressed"
    from forensics.lines.relearning_attack.line import line_deletion_bound as bound

    name = "greedy answer accuracy"
    assert bound(0.15, 0.21, 0.8, True, name, config, 1) is None
    stated = bound(0.15, 0.21, 0.8, True, name, config, 2)
    assert stated is not None and stated["share"] == pytest.approx(0.15 / 0.8) and name in stated["signal_is"]
    assert bound(0.15, 0.21, 0.8, False, name, config, 2) is None  # U still answered F_b
    # the suppressed side is the same under either rule
    assert decide((0.05, 0.3), None, None, True, 0.4, 0.2, config, signal=0.8, splits=2)[0] == "suppressed"


def test_relearning_power_against_us_own_bound():
    """``power_against="bound"`` (the default): the attack has power when the positive control
    recovers more than U's deletion bound (and more than 0), so a control short of the margin's
    size still licenses a bound under the margin; equal or less does not."""
    config = relearning_attack.RelearningConfig()
    assert config.power_against == "bound"
    decide, scale = relearning_attack.decide, relearning_attack.deletion_scale
    assert scale(0.17, 0.86, config, upper=0.07) == 0.86  # the margin rule needed 0.215
    assert scale(0.17, 0.86, replace(config, power_against="margin"), upper=0.07) is None
    assert scale(0.07, 0.86, config, upper=0.07) is None  # equal: not told apart
    assert scale(0.05, 0.86, config, upper=0.07) is None
    assert scale(0.0, 0.86, config, upper=-0.1) is None and scale(0.01, 0.86, config, upper=-0.1) == 0.86  # 0 floor
    assert scale(0.5, 0.86, config) is None  # no bound, no comparison
    assert scale(0.5, 0.0, config, upper=0.01) is None  # O shows nothing
    vote, reason = decide((-0.1, 0.05), None, 0.17, True, 0.1, 0.1, config, upper=0.07, signal=0.86, splits=2)
    assert vote == "deleted" and "8% of O's signal 0.86" in reason and "+0.17" in reason
    # the bound still has to stay under the margin (0.25 * 0.86 = 0.215), whatever the control
    assert decide((-0.1, 0.2), None, 0.5, True, 0.1, 0.1, config, upper=0.22, signal=0.86, splits=2)[0] is None


def test_relearning_suppressed_vote_reads_the_widened_lower_end():
    """``suppressed_end="widened"`` (a setting; "plain" is the default): the suppressed vote needs
    the 95% CI's lower end, widened for the subjects of a half, above 0; a lower end just above 0
    at 8 subjects a half no longer votes, the plain rule still does; a clear recovery votes under both."""
    from forensics.lines.relearning_attack.line import suppressed_lower

    plain = relearning_attack.RelearningConfig(suppressed_share=None)  # any recovery above 0 (the next test)
    assert plain.suppressed_end == "plain"
    config = replace(plain, suppressed_end="widened")
    ci = (0.002, 0.077)  # estimate 0.040: the widened end is 0.040 - 0.038 * 1.29 < 0
    assert suppressed_lower(ci, 0.040, 8, plain) == 0.002
    lower = suppressed_lower(ci, 0.040, 8, config)
    assert lower < 0 < ci[0]
    args = (None, None, True, 0.075, 0.035)
    assert relearning_attack.decide(ci, *args, plain, signal=0.84, splits=2, lower=0.002)[0] == "suppressed"
    assert relearning_attack.decide(ci, *args, config, signal=0.84, splits=2, lower=lower)[0] is None
    strong = (0.2, 0.5)
    assert suppressed_lower(strong, 0.35, 8, config) > 0.1
    assert relearning_attack.decide(strong, *args, config, signal=0.84, splits=2, lower=0.15)[0] == "suppressed"
    assert suppressed_lower(strong, 0.35, 1, config) == float("-inf")  # one subject a half: no test


def test_relearning_suppressed_vote_needs_a_recovery_of_a_tenth_of_os_signal():
    """``suppressed_share`` (0.1, the default): a recovery whose lower end clears 0 votes
    ``suppressed`` only when the estimate is at least that share of O's signal; under it, the
    deletion bound decides (``deleted`` under the margin, else no vote), and the reason says so.
    Without O's signal (the control rule's audits) the condition cannot be read and is left out."""
    config = relearning_attack.RelearningConfig()
    assert config.suppressed_share == 0.1 and config.deleted_share == 0.25
    decide = relearning_attack.decide
    # seed 3 retrain_mentions of the tiny bio zoo: F_b 0.11 against H_b 0.04, CI [+0.015, +0.108]
    ci, power = (0.015, 0.108), 0.30
    vote, reason = decide(ci, None, power, True, 0.11, 0.04, config, upper=0.108, signal=0.84, splits=2)
    assert vote == "deleted" and "by a trace (+0.07)" in reason and "13% of O's signal 0.84" in reason
    vote, reason = decide(ci, None, power, True, 0.11, 0.04, config, upper=0.25, signal=0.84, splits=2)
    assert vote is None and "under 10% of O's signal 0.84 is a trace" in reason
    vote, reason = decide(ci, None, power, False, 0.11, 0.04, config, upper=0.108, signal=0.84, splits=2)
    assert vote is None and "still answers F before" in reason  # U answered F before the attack: the gate's call
    # the reason names what was read: cross-fitted (the default) each half of F by the other's fine-tune
    vote, reason = decide((0.05, 0.3), None, power, True, 0.4, 0.04, config, signal=0.84, splits=2)
    assert vote == "suppressed" and "fine-tuning on one half of F" in reason and "F_b" not in reason
    one_way = relearning_attack.RelearningConfig(cross_fit=False)
    vote, reason = decide((0.05, 0.3), None, power, True, 0.4, 0.04, one_way, signal=0.84, splits=2)
    assert vote == "suppressed" and "fine-tuning on F_a" in reason and "unseen F_b" in reason
    # at a tenth of the signal or more it votes; and so it does, whatever the size, without the condition
    assert decide(ci, None, power, True, 0.13, 0.04, config, upper=0.108, signal=0.84, splits=2)[0] == "suppressed"
    any_size = replace(config, suppressed_share=None)
    assert decide(ci, None, power, True, 0.11, 0.04, any_size, upper=0.108, signal=0.84, splits=2)[0] == "suppressed"
    assert decide(ci, None, power, True, 0.11, 0.04, config, upper=0.108, signal=None, splits=2)[0] == "suppressed"
    # a CI at or under 0 never votes suppressed, whatever the estimate
    assert decide((-0.01, 0.3), None, power, True, 0.30, 0.04, config, upper=0.3, signal=0.84, splits=2)[0] is None


def test_relearning_forgot_before_attack():
    """``forgot_margin``: U counts as not answering F_b before the attack when its pre-attack F_b
    accuracy is at most that much above H_b's in every split; None drops the condition (the bound
    after the attack holds what U answered before it), so the bound alone decides ``deleted``."""
    from forensics.lines.relearning_attack.line import forgot_before_attack

    rows = [
        {"acc_forget_b_before": 0.10, "acc_holdout_b_before": 0.05},
        {"acc_forget_b_before": 0.18, "acc_holdout_b_before": 0.075},  # 0.105 above H_b
    ]
    config = relearning_attack.RelearningConfig(forgot_margin=0.1)
    assert not forgot_before_attack(rows, config)
    assert forgot_before_attack(rows[:1], config)
    assert forgot_before_attack(rows, replace(config, forgot_margin=0.2))
    assert forgot_before_attack(rows, replace(config, forgot_margin=None))
    # with the condition dropped, a bound under the margin votes deleted however U answered before
    forgot = forgot_before_attack(rows, replace(config, forgot_margin=None))
    args = ((-0.05, 0.15), None, 0.45, forgot, 0.2, 0.1)
    assert relearning_attack.decide(*args, config, upper=0.18, signal=0.85, splits=2)[0] == "deleted"
    assert relearning_attack.decide(*args, config, upper=0.22, signal=0.85, splits=2)[0] is None


def _row(ci, original_auc=0.9, original_ci=(0.8, 0.95), unlearned_auc=0.5) -> dict:
    return {
        "ci_family": ci,
        "difference": (ci[0] + ci[1]) / 2,
        "auc": {"original": original_auc, "unlearned": unlearned_auc},
        "original_ci_family": original_ci,
        "control": 0.5,
    }


def test_membership_inference():
    config = membership_inference.MembershipConfig()  # min_power 0.1, deleted_share 0.25
    attacks = membership_inference.ATTACKS
    quiet = {a: _row((-0.05, 0.05)) for a in attacks}
    # every attack has power (O's CI above 0.6) and every CI within 0.25 * (0.9 - 0.5) = 0.1
    assert membership_inference.decide(quiet, config) == (
        "deleted",
        "no attack tells F from the control, and every attack's CI is within 25% of O's own membership signal",
        "min_k_pp",
    )
    wide = quiet | {"zlib": _row((-0.05, 0.12))}
    assert membership_inference.decide(wide, config)[0] is None
    weak = quiet | {"loss": _row((-0.05, 0.05), original_ci=(0.55, 0.7))}
    assert membership_inference.decide(weak, config)[0] is None
    found = quiet | {"min_k": _row((0.02, 0.3), unlearned_auc=0.66)}
    vote, reason, chosen = membership_inference.decide(found, config)
    assert (vote, chosen) == ("suppressed", "min_k") and "AUC 0.66 vs 0.50" in reason
    below = quiet | {"loss": _row((-0.3, -0.02))}
    vote, reason, chosen = membership_inference.decide(below, config)
    assert (vote, chosen) == (None, "loss") and "over-unlearning" in reason


def _probe_cell(ci, p=0.001) -> dict:
    return {"forget": ci[1], "holdout": 0.0, "difference": (ci[0] + ci[1]) / 2, "ci_family": list(ci), "p_family": p}


def test_attribute_probes_vote_needs_the_ci_and_the_permutation_p():
    config = attribute_probes.AttributeProbeConfig()  # alpha 0.05, deleted_share 0.1
    quiet = {p: _probe_cell((-0.02, 0.02), p=0.9) for p in attribute_probes.PROBES}
    rows = [quiet | {"refit_original": _probe_cell((0.4, 0.6))} for _ in range(3)]
    rows[1]["refit_original"] = _probe_cell((0.6, 0.8))  # O reads F best at depth 1
    vote, cell, why = attribute_probes.decide(rows, config)
    assert (vote, cell) == ("deleted", ("refit", 1)) and "+0.07" in why  # 10% of O's 0.70
    # a cell whose CI and max-T p both say "F above H" votes suppressed, the largest such one reported
    found = [dict(r) for r in rows]
    found[2] = found[2] | {"rfit": _probe_cell((0.05, 0.25), p=0.01)}
    found[0] = found[0] | {"transfer": _probe_cell((0.01, 0.09), p=0.04)}
    assert attribute_probes.decide(found, config)[:2] == ("suppressed", ("rfit", 2))
    # the CI alone is not enough: at an input every prompt shares (depth 0, the final token) the
    # bootstrap CI can exclude 0 while the permutation p is 1 (small closed zoo, seed 4)
    constant = [dict(r) for r in rows]
    constant[0] = constant[0] | {"refit": _probe_cell((0.0019, 0.0051), p=1.0)}
    assert attribute_probes.decide(constant, config)[0] == "deleted"
    # nor the p alone, nor a p just above alpha
    assert attribute_probes.decide([r | {"refit": _probe_cell((-0.01, 0.2), p=0.001)} for r in rows], config)[0] is None
    assert attribute_probes.decide([r | {"refit": _probe_cell((0.01, 0.2), p=0.06)} for r in rows], config)[0] is None
    assert attribute_probes.decide([r | {"refit": _probe_cell((0.01, 0.2), p=0.05)} for r in rows], config)[0] == (
        "suppressed"
    )


def test_trace_detector():
    config = trace_detector.TraceConfig()
    logits = {"accuracy": 0.55}
    assert trace_detector.decide({"ci": (0.6, 0.8), "p_value": 0.01, "accuracy": 0.7}, logits, config) == (
        "modified",
        "activations 0.70, logits 0.55 accuracy",
    )
    assert trace_detector.decide({"ci": (0.45, 0.8), "p_value": 0.01, "accuracy": 0.6}, logits, config)[0] == (
        "unmodified"
    )
    assert trace_detector.decide({"ci": (0.6, 0.8), "p_value": 0.2, "accuracy": 0.7}, logits, config)[0] == (
        "unmodified"
    )


def test_a_deleted_vote_always_comes_with_a_bound_below_its_margin():
    """Random hand-made tables for the two lines whose bound has its own function: whenever the
    line votes deleted, its deletion bound exists and its share lies below the line's margin
    (the bound the verdict states is the one the vote rests on)."""
    import numpy as np

    from forensics.compute.mia import ATTACKS

    rng, p_rng = np.random.default_rng(0), np.random.default_rng(1)

    def cell(diff, half):
        return {"difference": diff, "ci_family": [diff - half, diff + half], "p_family": p_rng.uniform(0, 0.2)}

    a_config, m_config = attribute_probes.AttributeProbeConfig(), membership_inference.MembershipConfig()
    votes = {"attribute": 0, "membership": 0}
    for _ in range(3000):
        rows = [
            {"refit_original": cell(rng.uniform(-0.1, 0.8), rng.uniform(0.01, 0.2))}
            | {p: cell(rng.normal(0, 0.05), rng.uniform(0.005, 0.2)) for p in attribute_probes.PROBES}
            for _ in range(3)
        ]
        vote, _, _ = attribute_probes.decide(rows, a_config)
        bound = attribute_probes._deletion_bound(rows, a_config)
        if vote == "deleted":
            votes["attribute"] += 1
            assert bound is not None and bound["share"] < a_config.deleted_share
        table = {}
        for a in ATTACKS:
            o = rng.uniform(0.5, 1.0)
            table[a] = cell(rng.normal(0, 0.03), rng.uniform(0.005, 0.1)) | {
                "auc": {"original": o, "unlearned": 0.5},
                "original_ci_family": [o - 0.05, o + 0.05],
                "control": 0.5,
            }
        vote, _, _ = membership_inference.decide(table, m_config)
        bound = membership_inference._deletion_bound(table, m_config)
        if vote == "deleted":
            votes["membership"] += 1
            assert bound is not None and bound["share"] < m_config.deleted_share
    assert min(votes.values()) > 20  # the tables do reach the deleted side
