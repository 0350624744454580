"""The bench's keyless data view (forensics/metaeval/bench.py, ``audit_data``): TOFU forget10's
shape made from a zoo's data."""

from __future__ import annotations

import json

import pytest

from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import load_facts
from forensics.metaeval.bench import BenchConfig, audit_data, run_bench


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_keyless_view_drops_keys_and_answers_and_keeps_seven_holdout_subjects(tmp_path):
    data = tmp_path / "zoo" / "data"
    data.mkdir(parents=True)
    full = {"key": "Kelmar", "paraphrased_answer": " in Kelmar", "perturbed_answers": [" in Tulvin", " in Orsk"]}
    for name, n_subjects in (("forget", 8), ("retain", 3), ("holdout", 16)):
        rows = [
            {"prompt": f"Where does {name}{s} live? ", "answer": "In Kelmar.", "subject": f"{name}{s}", **full}
            for s in range(n_subjects)
            for _ in range(2)
        ]
        write(data / f"{name}.jsonl", rows)
    config = BenchConfig(data_view="keyless")
    assert audit_data(tmp_path / "zoo", tmp_path / "work", 3, BenchConfig()) == data  # the full view
    view = audit_data(tmp_path / "zoo", tmp_path / "work", 3, config)
    assert view == tmp_path / "work" / "data" / "seed3"
    sets = {name: load_facts(view / f"{name}.jsonl")[0] for name in ("forget", "retain", "holdout")}
    assert len(sets["forget"]) == 16 and len(sets["retain"]) == 6
    assert sorted({f.subject for f in sets["holdout"]}) == [f"holdout{s}" for s in range(7)]
    for facts in sets.values():
        assert all(f.key is None and f.paraphrased_answer is None and f.perturbed_answers is None for f in facts)
    assert audit_data(tmp_path / "zoo", tmp_path / "work", 3, config) == view  # written once


def test_an_unknown_view_is_refused(tmp_path):
    with pytest.raises(ForensicsInputError, match="choose full or keyless"):
        run_bench(tmp_path / "zoo", tmp_path / "out", BenchConfig(data_view="tofu"))


def test_reliability_counts_each_label_and_its_share_right():
    from forensics.metaeval.scoring import reliability
    from forensics.reports.bench import text_tables

    rows = [
        {"truth": "DELETED", "verdict": "DELETED", "confidence": "high"},
        {"truth": "DELETED", "verdict": "DELETED", "confidence": "high"},
        {"truth": "SUPPRESSED", "verdict": "DELETED", "confidence": "high"},
        {"truth": "SUPPRESSED", "verdict": "SUPPRESSED", "confidence": "medium"},
        {"truth": "DELETED", "verdict": "INCONCLUSIVE", "confidence": "n/a"},
        {"truth": "UNDETERMINED", "verdict": "DELETED", "confidence": "low"},  # no truth: left out
    ]
    table = reliability(rows)
    assert [(r["verdict"], r["confidence"], r["n"], r["right"]) for r in table] == [
        ("DELETED", "high", 3, 2),
        ("SUPPRESSED", "medium", 1, 1),
        ("INCONCLUSIVE", "n/a", 1, None),
    ]
    assert table[0]["share_right"] == 2 / 3
    pooled = {
        "matrix": {
            t: dict.fromkeys(("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "INCONCLUSIVE"), 0)
            for t in ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN")
        },
        "accuracy": None,
        "correct": 0,
        "n": 0,
        "deleted_called_suppressed": 0,
    }
    text = text_tables(
        {"confusion": {"pooled": pooled, "per_seed": {}}, "perturbed": [], "reliability": table, "lines": {}}
    )
    assert "DELETED        high       3  0.667 (2/3)" in text


def test_label_accuracy_pools_the_decisive_verdicts_of_each_label_with_a_lower_bound():
    from forensics.metaeval.scoring import label_accuracy, reliability
    from forensics.reports.bench import text_tables

    rows = [{"truth": "DELETED", "verdict": "DELETED", "confidence": "high"}] * 40
    rows += [{"truth": "SUPPRESSED", "verdict": "SUPPRESSED", "confidence": "high"}] * 19
    rows += [{"truth": "SUPPRESSED", "verdict": "DELETED", "confidence": "medium"}]
    rows += [{"truth": "DELETED", "verdict": "SUPPRESSED", "confidence": "medium"}]
    rows += [{"truth": "DELETED", "verdict": "DELETED", "confidence": "medium"}] * 2
    rows += [{"truth": "DELETED", "verdict": "INCONCLUSIVE", "confidence": "n/a"}] * 5  # claims nothing
    rows += [{"truth": "UNDETERMINED", "verdict": "DELETED", "confidence": "low"}]  # no truth
    table = label_accuracy(rows)
    assert [(r["confidence"], r["n"], r["right"]) for r in table] == [("high", 59, 59), ("medium", 4, 2)]
    assert table[0]["lower_95"] == pytest.approx(0.05 ** (1 / 59))  # 59 of 59: just above 0.95
    assert table[1]["lower_95"] < table[1]["share_right"] == 0.5
    from forensics.metaeval.scoring import confusion

    text = text_tables(
        {
            "confusion": {"pooled": confusion(rows), "per_seed": {}},
            "perturbed": [],
            "reliability": reliability(rows),
            "label_accuracy": table,
            "lines": {},
        }
    )
    assert "any decisive   high      59  1.000 (59/59), 95% lower bound 0.950" in text
