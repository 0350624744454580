"""The bench's bound-honesty table: each line's deletion bound on a suppressed model against the
zoo oracle's recovery, both as shares of O's signal (forensics/metaeval/scoring.py)."""

from __future__ import annotations

import pytest


def _results(margin: float, bounds: dict[str, float | None]) -> dict:
    evidence = [{"line": "behaviour", "vote": None, "details": {"original_margin": margin}}]
    for line, share in bounds.items():
        bound = {"share": share, "upper": share * margin, "signal": margin} if share is not None else None
        evidence.append({"line": line, "vote": "suppressed", "details": {"deletion_bound": bound}})
    return {"evidence": evidence}


def test_a_bound_under_the_oracles_recovery_is_counted_as_missed():
    from forensics.metaeval.scoring import bound_cases, bound_honesty

    oracle = {"difference": 0.4}  # 0.4 of O's signal 0.8: the oracle recovered half of it
    cases = bound_cases(3, "npo", oracle, _results(0.8, {"remind": 1.2, "relearning_attack": 0.3, "cka": None}))
    assert [(c["line"], c["share"]) for c in cases] == [("remind", 1.2), ("relearning_attack", 0.3)]
    assert all(c["oracle_share"] == pytest.approx(0.5) for c in cases)
    more = bound_cases(4, "ga", {"difference": -0.1}, _results(0.5, {"relearning_attack": 0.0}))
    assert more[0]["oracle_share"] == 0.0  # a negative recovery is no recovery: any bound covers it
    table = bound_honesty(cases + more)
    assert table["remind"] == {"bounds": 1, "below_oracle": 0, "missed": []}
    assert table["relearning_attack"]["bounds"] == 2 and table["relearning_attack"]["below_oracle"] == 1
    assert table["relearning_attack"]["missed"][0]["model"] == "npo"


def test_the_verdict_row_holds_the_bound_a_deleted_verdict_would_have_stated():
    """On a suppressed model where a recovery attack voted deleted, the ``verdict`` case is its
    bound (here 0.3, though a trace bound 0.1 is tighter) against the oracle's share; with trace
    votes only, or none, a DELETED verdict was impossible and there is no such case."""
    from forensics.metaeval.scoring import STATED, bound_cases, bound_honesty

    res = _results(0.8, {"membership_inference": 0.1, "relearning_attack": 0.3, "remind": 0.05})
    kinds = {"membership_inference": "trace", "relearning_attack": "recovery", "remind": "trace"}
    for e in res["evidence"][1:]:
        e["details"]["deletion_bound"]["kind"] = kinds[e["line"]]
        e["vote"] = "deleted" if e["line"] != "remind" else None
    cases = bound_cases(3, "ga", {"difference": 0.4}, res)
    stated = [c for c in cases if c["line"] == STATED]
    assert len(stated) == 1 and stated[0]["from_line"] == "relearning_attack" and stated[0]["share"] == 0.3
    assert bound_honesty(cases)[STATED]["below_oracle"] == 1  # 0.3 < 0.4 / 0.8
    res["evidence"][2]["vote"] = None  # the relearning attack no longer votes deleted: nothing is stated
    cases = bound_cases(3, "ga", {"difference": 0.4}, res)
    assert not [c for c in cases if c["line"] == STATED]
    assert [c["kind"] for c in cases] == ["trace", "recovery", "trace"]  # each line's own bound is still listed


def test_no_case_without_an_oracle_recovery_or_an_original_signal():
    from forensics.metaeval.scoring import bound_cases

    assert bound_cases(0, "ga", None, _results(0.8, {"remind": 0.1})) == []
    assert bound_cases(0, "ga", {"note": "by construction"}, _results(0.8, {"remind": 0.1})) == []
    assert bound_cases(0, "ga", {"difference": 0.3}, _results(0.0, {"remind": 0.1})) == []


def test_the_text_report_names_each_missed_bound():
    from forensics.metaeval.scoring import bound_cases, bound_honesty, confusion
    from forensics.reports.bench import text_tables

    cases = bound_cases(5, "simnpo", {"difference": 0.4}, _results(0.8, {"relearning_attack": 0.2}))
    text = text_tables(
        {
            "confusion": {"pooled": confusion([]), "per_seed": {}},
            "perturbed": [],
            "lines": {},
            "bound_honesty": bound_honesty(cases),
        }
    )
    assert "relearning_attack      1 of 1 (seed 5 simnpo 20% < 50%)" in text
