"""The verdict rule (forensics/core/verdict.py): its steps, and the family-wise control of the
suppressed side (Holm over the lines that tested for suppression)."""

from __future__ import annotations

import numpy as np
import pytest

from forensics.core.evidence import Evidence
from forensics.core.verdict import FAMILY_ALPHA, HIGH_BOUND_FRACTION, RULE, decide, holm, multiplicity_control

# --------------------------------------------------------------------------- the verdict rule


def behaviour(vote=None, o_f=1.0, o_h=0.1, share=0.05) -> Evidence:
    table = {
        "original": {"forget": {"accuracy": o_f}, "holdout": {"accuracy": o_h}},
        "unlearned": {"forget": {"accuracy": 0.1}, "holdout": {"accuracy": 0.1}},
    }
    return Evidence(
        "behaviour",
        "q",
        "ok",
        effect=0.1,
        control=0.1,
        ci=(-0.05, 0.05),
        vote=vote,
        details={"table": table, "retained_share": share},
    )


def line(name, vote, status="ok", p=0.001, bound="recovery") -> Evidence:
    """A line's evidence; a ``deleted`` vote carries a deletion bound of kind ``bound`` (None: no bound)."""
    details = {}
    if vote == "deleted" and bound is not None:
        details["deletion_bound"] = {
            "upper": 0.05,
            "signal": 1.0,
            "share": 0.05,
            "margin": 0.25,
            "signal_is": "O's signal",
            "kind": bound,
        }
    return Evidence(name, "q", status, effect=0.3, control=0.1, ci=(0.1, 0.3), p_value=p, vote=vote, details=details)


def test_verdict_rule_steps():
    assert decide([behaviour("not_forgotten", share=0.9), line("a", "suppressed")], True).label == "NOT_FORGOTTEN"
    assert decide([behaviour("not_forgotten", share=0.9)], False).confidence == "high"
    # no holdout: never DELETED or SUPPRESSED
    assert decide([behaviour(), line("a", "suppressed")], False).label == "INCONCLUSIVE"
    assert decide([behaviour(), line("a", "deleted")], False).label == "INCONCLUSIVE"
    # O never knew F: nothing to forget
    assert decide([behaviour(o_f=0.1, o_h=0.1), line("a", "deleted")], True).label == "INCONCLUSIVE"
    # one suppressed vote alone is not replicated: INCONCLUSIVE, with the line named
    one = decide([behaviour(), line("a", "suppressed"), line("b", None)], True)
    assert (one.label, one.step) == ("INCONCLUSIVE", 4) and [d["line"] for d in one.deciding] == ["a"]
    assert decide([behaviour(), line("a", "suppressed"), line("b", "deleted")], True).label == "INCONCLUSIVE"
    two = decide([behaviour(), line("a", "suppressed"), line("b", "suppressed")], True)
    assert (two.label, two.confidence, two.step) == ("SUPPRESSED", "medium", 3)
    three = [line(n, "suppressed") for n in "abc"]
    assert decide([behaviour(), *three], True).confidence == "high"
    mixed = decide([behaviour(), line("a", "suppressed"), line("c", "suppressed"), line("b", "deleted")], True)
    assert (mixed.label, mixed.confidence) == ("SUPPRESSED", "low")
    assert [d["line"] for d in mixed.deciding] == ["a", "c"] and [d["line"] for d in mixed.against] == ["b"]
    assert decide([behaviour(), line("b", "deleted")], True).label == "DELETED"
    # descriptive lines, lines not run and trace votes never decide
    ignored = [line("c", "suppressed", "descriptive"), line("d", "suppressed", "not_run"), line("t", "modified")]
    assert decide([behaviour(), *ignored], True).label == "INCONCLUSIVE"
    assert decide([behaviour(), *ignored, line("b", "deleted")], True).label == "DELETED"
    assert decide([line("a", "suppressed")], True).label == "INCONCLUSIVE"  # no behaviour gate
    assert len(RULE) == 7 and decide([behaviour(), line("b", "deleted")], True).to_json()["rule"] == list(RULE)


def test_holm_adjusted_p_values_by_hand():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> running max .06
    assert holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    assert holm([]) == []
    assert holm([0.3]) == [0.3]
    assert holm([0.5, 0.6, 0.9]) == [1.0, 1.0, 1.0]


def test_a_suppressed_vote_that_does_not_survive_holm_is_held_back():
    # nine lines tested; "a" voted suppressed at one-sided p = 0.02 (its own 2.5% test), the
    # others did not: Holm needs p <= 0.05 / 9 for the smallest, so the vote is held back
    family = {f"l{i}" for i in range(8)} | {"a"}
    evidence = [behaviour(), line("a", "suppressed", p=0.04), line("b", "deleted", p=0.9)]
    evidence += [line(f"l{i}", None, p=0.5) for i in range(8)]
    v = decide(evidence, True, suppressing=family)
    assert (v.label, v.step) == ("DELETED", 5)
    assert [h["line"] for h in v.held_back] == ["a"] and "Held back: a" in v.reason
    rows = {r["line"]: r for r in v.multiplicity["family"]}
    assert len(rows) == 9 and "b" not in rows  # b cannot vote suppressed and did not
    assert rows["a"]["p_one_sided"] == 0.02 and rows["a"]["p_adjusted"] == 0.18 and not rows["a"]["counted"]
    # the same vote with a strong p survives: one counted vote, not replicated
    strong = decide([*evidence[:1], line("a", "suppressed", p=0.001), *evidence[2:]], True, suppressing=family)
    assert (strong.label, strong.step) == ("INCONCLUSIVE", 4) and not strong.held_back
    # a suppressed vote without a p-value cannot be counted
    bare = decide([behaviour(), line("a", "suppressed", p=None), line("c", "suppressed")], True)
    assert (bare.label, [h["line"] for h in bare.held_back]) == ("INCONCLUSIVE", ["a"])
    json = v.to_json()
    assert json["multiplicity"]["method"] == "holm" and json["held_back"][0]["line"] == "a"


def test_lines_that_did_not_test_are_not_in_the_family():
    evidence = [
        behaviour(),
        line("a", "suppressed"),
        line("d", None, status="descriptive"),
        line("n", None, status="not_run"),
    ]
    control = multiplicity_control(evidence, "behaviour", {"a", "d", "n"})
    assert [r["line"] for r in control["family"]] == ["a"]


def test_the_family_wise_error_rate_holds_where_the_old_rule_did_not():
    """Simulated deleted models: ten lines, each a valid one-sided test (p uniform under the null),
    each voting suppressed when its own p < 0.025 as the lines do. Without the control, some line
    votes suppressed in about 1 - 0.975^10 = 22% of audits; with it, at most FAMILY_ALPHA counts."""
    rng = np.random.default_rng(0)
    names = [f"l{i}" for i in range(10)]
    trials, any_vote, any_counted, deleted = 4000, 0, 0, 0
    for _ in range(trials):
        p_one = rng.uniform(size=10)
        evidence = [behaviour(), line("b", "deleted", p=0.9)]
        evidence += [line(n, "suppressed" if p < 0.025 else None, p=2 * p) for n, p in zip(names, p_one, strict=True)]
        v = decide(evidence, True, suppressing=set(names))
        any_vote += bool(p_one.min() < 0.025)
        any_counted += any(r["counted"] for r in v.multiplicity["family"])
        deleted += v.label == "DELETED"
    # binomial standard error at 4000 trials is about 0.0035
    assert 0.18 < any_vote / trials < 0.26
    assert any_counted / trials <= FAMILY_ALPHA + 0.01
    # DELETED is lost only to a counted finding (at most 5%) or to two held-back votes (binomial:
    # P(at least 2 of 10 below 0.025) = 2.4%); the old rule lost it to any single vote (22%)
    two_or_more = 1 - 0.975**10 - 10 * 0.025 * 0.975**9
    assert deleted / trials >= 1 - FAMILY_ALPHA - two_or_more - 0.01


def test_deletion_bound_is_a_share_of_the_signal():
    from forensics.core.evidence import deletion_bound

    b = deletion_bound(0.03, 0.5, 0.1, "O's F - H", kind="recovery")
    assert b is not None and abs(b["share"] - 0.06) < 1e-12 and b["margin"] == 0.1 and b["kind"] == "recovery"
    assert deletion_bound(-0.02, 0.5, 0.1, "x", kind="trace")["share"] == 0.0  # a CI wholly below 0 misses nothing
    assert deletion_bound(0.03, 0.0, 0.1, "x", kind="trace") is None  # O shows no signal: no bound
    assert deletion_bound(0.03, -0.2, 0.1, "x", kind="trace") is None
    assert deletion_bound(float("nan"), 0.5, 0.1, "x", kind="trace") is None
    with pytest.raises(ValueError, match="unknown deletion bound kind"):
        deletion_bound(0.03, 0.5, 0.1, "x", kind="membership")


def _deleted(name, share, kind="recovery"):
    e = line(name, "deleted", p=0.9)
    bound = {"upper": share, "signal": 1.0, "share": share, "margin": 0.25, "signal_is": "O's signal", "kind": kind}
    e.details = {"deletion_bound": bound}
    return e


def test_deleted_states_the_tightest_bound():
    deleted = _deleted
    v = decide([behaviour(), deleted("a", 0.2), deleted("b", 0.06), line("c", "deleted", bound=None)], True)
    assert v.label == "DELETED" and v.bound is not None and (v.bound["line"], v.bound["share"]) == ("b", 0.06)
    assert "At most 6% of O's signal is recoverable by b" in v.reason
    assert v.to_json()["bound"]["line"] == "b"
    # no bound unless DELETED, and none when no deleted voter carries one
    assert (
        decide([behaviour(), deleted("a", 0.2), line("s", "suppressed"), line("t", "suppressed")], True).bound is None
    )
    # a deleted vote without a bound certifies nothing
    unbounded = decide([behaviour(), line("c", "deleted", bound=None)], True)
    assert (unbounded.label, unbounded.step, unbounded.bound) == ("INCONCLUSIVE", 6, None)


def test_only_a_recovery_bound_certifies_deletion():
    """A trace (what a probe or membership statistic still sees) can vanish while the knowledge is
    recoverable: DELETED needs a recovery attack's deleted vote with its bound, and states that
    bound even when a trace bound is tighter; trace votes alone leave the audit INCONCLUSIVE."""
    v = decide([behaviour(), _deleted("mia", 0.05, "trace"), _deleted("attack", 0.2)], True)
    assert v.label == "DELETED" and v.confidence == "medium"  # 20% of a 25% margin: the trace adds nothing
    assert (v.bound["line"], v.bound["kind"]) == ("attack", "recovery")
    assert "At most 20% of O's signal is recoverable by attack" in v.reason
    only_traces = decide([behaviour(), _deleted("mia", 0.12, "trace"), _deleted("probe", 0.08, "trace")], True)
    assert (only_traces.label, only_traces.step, only_traces.bound) == ("INCONCLUSIVE", 6, None)
    assert "no recovery attack with shown power" in only_traces.reason and "mia, probe" in only_traces.reason
    # with two held-back findings the older reason stands
    held = [line("s", "suppressed", p=0.04), line("t", "suppressed", p=0.03)]
    family = {"s", "t", "mia"} | {f"l{i}" for i in range(8)}
    quiet = [line(f"l{i}", None, p=0.5) for i in range(8)]
    two = decide([behaviour(), *held, _deleted("mia", 0.1, "trace"), *quiet], True, suppressing=family)
    assert two.label == "INCONCLUSIVE" and "two or more lines found it" in two.reason


def test_deleted_confidence_is_the_bounds_distance_inside_its_margin():
    """Rule version 6: DELETED is high when the stated recovery bound is at most half its line's
    margin, else medium, whatever the number of deleted votes (a trace line near its own threshold
    used to swing the label between a model and its perturbed copies)."""
    assert HIGH_BOUND_FRACTION == 0.5
    for share, label in ((0.05, "high"), (0.125, "high"), (0.126, "medium"), (0.24, "medium")):
        alone = decide([behaviour(), _deleted("attack", share)], True)
        assert (alone.label, alone.confidence) == ("DELETED", label), share
        traces = [_deleted(f"trace{i}", 0.01, "trace") for i in range(3)]
        with_traces = decide([behaviour(), _deleted("attack", share), *traces], True)
        assert (with_traces.label, with_traces.confidence) == ("DELETED", label), share
    # the tightest recovery bound decides, against its own line's margin
    two = decide([behaviour(), _deleted("attack", 0.2), _deleted("other", 0.1)], True)
    assert (two.bound["line"], two.confidence) == ("other", "high")


def test_two_held_back_votes_rule_out_deleted():
    family = {"a", "c"} | {f"l{i}" for i in range(8)}
    evidence = [behaviour(), line("a", "suppressed", p=0.04), line("c", "suppressed", p=0.03), line("b", "deleted")]
    evidence += [line(f"l{i}", None, p=0.5) for i in range(8)]
    v = decide(evidence, True, suppressing=family)
    assert (v.label, v.step, v.bound) == ("INCONCLUSIVE", 6, None)
    assert "deletion is not certified" in v.reason and len(v.held_back) == 2
    one = decide([*evidence[:1], evidence[1], *evidence[3:]], True, suppressing=family)
    assert one.label == "DELETED"  # one stray vote, held back, does not
    # a held-back vote counts against certifying only when significant at its own level (one-sided
    # p, unadjusted, within 5%): a vote whose own p is 0.2 one-sided is listed but does not block
    weak = [evidence[0], evidence[1], line("c", "suppressed", p=0.4), *evidence[3:]]
    v = decide(weak, True, suppressing=family)
    assert (v.label, len(v.held_back)) == ("DELETED", 2) and "Held back: a, c" in v.reason
    edge = [evidence[0], evidence[1], line("c", "suppressed", p=0.1), *evidence[3:]]
    assert decide(edge, True, suppressing=family).label == "INCONCLUSIVE"  # one-sided 0.05: nominal


def test_every_voting_line_can_reach_holms_first_threshold_in_every_profile():
    """A permutation p-value is at least 1 / (n_perm + 1) (times the line's own Bonferroni factor):
    with too few permutations a line can never count under the multiplicity control, whatever
    the data. Every line able to vote suppressed must be able to reach alpha / m (m: the lines
    that can vote suppressed), one-sided, in every profile. The attribute probes are the one
    exception: each of their permutations re-fits the probes (docs/decisions.md)."""
    from forensics.core.config import line_config
    from forensics.core.profiles import PROFILES
    from forensics.core.registry import discover_lines

    lines = discover_lines()[0]
    suppressing = [spec for spec in lines.values() if "suppressed" in spec.votes]
    m = len(suppressing)
    for profile in PROFILES.values():
        for spec in suppressing:
            if spec.name == "attribute_probes":
                continue
            config = line_config(spec, profile, seed=0)
            factor = len(getattr(config, "bits", ())) or (
                3 if spec.name in ("steering_restoration", "membership_inference") else 1
            )
            smallest = factor / (config.n_perm + 1) / 2
            assert smallest <= FAMILY_ALPHA / m, (profile.name, spec.name, config.n_perm, smallest)
