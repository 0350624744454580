"""The checkpoint series: ordering, the gate, the first change (pure), and a series of zoo
checkpoints audited from the command line with the gate's exit code."""

from __future__ import annotations

import json

import pytest

from forensics.cli import main
from forensics.core.errors import ForensicsInputError
from forensics.metaeval.series import checkpoint_order, first_change, gate, summarise


def test_checkpoints_are_ordered_by_step_then_name(tmp_path):
    for name in ("checkpoint-1000", "checkpoint-200", "final", "checkpoint-30", "not-a-model"):
        (tmp_path / name).mkdir()
        if name != "not-a-model":
            (tmp_path / name / "config.json").write_text("{}")
    assert [p.name for p in checkpoint_order(tmp_path)] == [
        "checkpoint-30",
        "checkpoint-200",
        "checkpoint-1000",
        "final",
    ]
    with pytest.raises(ForensicsInputError, match="holds no checkpoint"):
        checkpoint_order(tmp_path / "not-a-model")


def test_the_gate_and_the_first_change():
    verdicts = ["DELETED", "DELETED", "SUPPRESSED", "DELETED"]
    assert gate(verdicts, ("SUPPRESSED",), "any") == (
        False,
        "checkpoint 3 of 4 is SUPPRESSED (--fail-on SUPPRESSED, --gate any)",
    )
    assert gate(verdicts, ("SUPPRESSED",), "last")[0] is True
    assert gate(verdicts + ["NOT_FORGOTTEN"], ("SUPPRESSED", "NOT_FORGOTTEN"), "last")[0] is False
    assert first_change(verdicts) == 2 and first_change(["DELETED"] * 3) is None
    with pytest.raises(ForensicsInputError, match="unknown verdict"):
        gate(verdicts, ("GONE",), "any")


def test_summarise_keeps_each_lines_difference_and_vote():
    results = {
        "verdict": {"label": "DELETED", "confidence": "high"},
        "evidence": [
            {"line": "a", "status": "ok", "difference": 0.1, "ci": [0.0, 0.2], "vote": None},
            {"line": "b", "status": "not_run", "difference": None, "ci": None, "vote": None},
        ],
    }
    assert summarise("c1", results) == {
        "checkpoint": "c1",
        "verdict": "DELETED",
        "confidence": "high",
        "lines": {"a": {"difference": 0.1, "ci": [0.0, 0.2], "vote": None}},
    }


@pytest.mark.slow
def test_the_zoos_npo_run_is_audited_as_a_series_and_gated(tiny_zoo, tmp_path, capsys):
    """The zoo keeps 6 checkpoints of its npo run (series/npo); the first ones still answer F
    (ground truth NOT_FORGOTTEN in the zoo's labels), the last is the delivered npo model."""
    truth = json.loads((tiny_zoo / "series" / "npo" / "labels.json").read_text())["checkpoints"]
    assert len(truth) >= 5
    d = tiny_zoo / "data"
    args = ["series", "--original", str(tiny_zoo / "models" / "original")]
    args += ["--checkpoints-dir", str(tiny_zoo / "series" / "npo")]
    args += ["--forget", str(d / "forget.jsonl"), "--retain", str(d / "retain.jsonl")]
    args += ["--holdout", str(d / "holdout.jsonl")]
    args += ["--profile", "quick", "--lines", "behaviour,tuned_lens", "--fail-on", "NOT_FORGOTTEN"]
    code = main([*args, "--out", str(tmp_path / "any")])
    series = json.loads((tmp_path / "any" / "series.json").read_text())
    rows = series["checkpoints"]
    assert [row["checkpoint"] for row in rows] == sorted(truth, key=lambda name: truth[name]["step"])
    verdicts = [row["verdict"] for row in rows]
    # a checkpoint that still answers F is NOT_FORGOTTEN, and the gate fails on it
    for row in rows:
        if truth[row["checkpoint"]]["ground_truth"] == "NOT_FORGOTTEN":
            assert row["verdict"] == "NOT_FORGOTTEN", row
    assert verdicts[0] == "NOT_FORGOTTEN" and code == 1 and not series["gate"]["passed"]
    # the run's end is the delivered npo model: forgotten in behaviour
    assert truth[rows[-1]["checkpoint"]]["ground_truth"] == "SUPPRESSED" and verdicts[-1] != "NOT_FORGOTTEN"
    change = series["first_change"]
    assert (
        change is not None
        and change["from"] == "NOT_FORGOTTEN"
        and rows[change["index"]]["verdict"] != ("NOT_FORGOTTEN")
    )
    for row in rows:
        assert (tmp_path / "any" / "checkpoints" / row["checkpoint"] / "results.json").is_file()
    assert (tmp_path / "any" / "series.png").stat().st_size > 1000
    assert rows[-1]["checkpoint"] in (tmp_path / "any" / "series.html").read_text()
    # gating on the last checkpoint only passes
    assert main([*args, "--gate", "last", "--out", str(tmp_path / "last")]) == 0
    capsys.readouterr()
    assert main([*args, "--fail-on", "GONE", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown verdict" in capsys.readouterr().err and not (tmp_path / "bad").exists()
