"""forensics.metaeval.stored: a finished bench folder read back row by row."""

from __future__ import annotations

import json

import pytest

from forensics.metaeval.stored import NotABench, audit_path, stored_audits


def _bench(tmp_path, perturbed=True):
    models = [{"seed": 3, "model": "retrain", "truth": "DELETED"}, {"seed": 3, "model": "npo", "truth": "SUPPRESSED"}]
    copies = [{"seed": 3, "model": "retrain", "perturbation": "q4"}] if perturbed else []
    (tmp_path / "bench.json").write_text(json.dumps({"models": models, "perturbed": copies}))
    for row in models + copies:
        path = audit_path(tmp_path, row)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"who": path.stem}))
    return tmp_path


def test_rows_in_order_with_their_own_audit(tmp_path):
    audits = stored_audits(_bench(tmp_path))
    assert [(r["model"], r.get("perturbation")) for r, _ in audits] == [
        ("retrain", None),
        ("npo", None),
        ("retrain", "q4"),
    ]
    assert [res["who"] for _, res in audits] == ["retrain", "npo", "retrain~q4"]
    assert audit_path(tmp_path, audits[2][0]) == tmp_path / "audits" / "seed3" / "retrain~q4.json"


def test_not_a_bench_is_one_line(tmp_path):
    with pytest.raises(NotABench, match="not a finished bench") as e:
        stored_audits(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "bench.json").write_text("[1, 2]")
    with pytest.raises(NotABench, match="no 'models'"):
        stored_audits(tmp_path)


def test_missing_audit_named(tmp_path):
    bench = _bench(tmp_path)
    (bench / "audits" / "seed3" / "npo.json").unlink()
    with pytest.raises(NotABench, match=r"npo\.json"):
        stored_audits(bench)
