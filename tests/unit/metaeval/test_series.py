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
def test_a_series_of_zoo_checkpoints_is_audited_and_gated(tiny_zoo, tmp_path, capsys):
    series_dir = tmp_path / "run"
    series_dir.mkdir()
    order = ["retrain", "npo", "rmu", "relearned", "retrain_mentions"]
    for step, name in zip((100, 200, 300, 400, 500), order):
        (series_dir / f"checkpoint-{step}").symlink_to(tiny_zoo / "models" / name, target_is_directory=True)
    d = tiny_zoo / "data"
    args = ["series", "--original", str(tiny_zoo / "models" / "original"), "--checkpoints-dir", str(series_dir)]
    args += [
        "--forget",
        str(d / "forget.jsonl"),
        "--retain",
        str(d / "retain.jsonl"),
        "--holdout",
        str(d / "holdout.jsonl"),
    ]
    args += ["--profile", "quick", "--lines", "behaviour,tuned_lens", "--fail-on", "NOT_FORGOTTEN"]
    code = main([*args, "--out", str(tmp_path / "any")])
    series = json.loads((tmp_path / "any" / "series.json").read_text())
    verdicts = [row["verdict"] for row in series["checkpoints"]]
    assert [row["checkpoint"] for row in series["checkpoints"]] == [
        f"checkpoint-{s}" for s in (100, 200, 300, 400, 500)
    ]
    # relearned still answers F: the behaviour gate decides NOT_FORGOTTEN, and the series gate fails
    assert verdicts[3] == "NOT_FORGOTTEN" and code == 1 and not series["gate"]["passed"]
    assert series["first_change"] is not None and series["first_change"]["index"] <= 3
    for row in series["checkpoints"]:
        assert (tmp_path / "any" / "checkpoints" / row["checkpoint"] / "results.json").is_file()
    assert (tmp_path / "any" / "series.png").stat().st_size > 1000
    assert "checkpoint-400" in (tmp_path / "any" / "series.html").read_text()
    # gating on the last checkpoint only: retrain_mentions never learned F's answers
    assert main([*args, "--gate", "last", "--out", str(tmp_path / "last")]) == (
        0 if verdicts[-1] != "NOT_FORGOTTEN" else 1
    )
    assert verdicts[-1] != "NOT_FORGOTTEN"
    capsys.readouterr()
    assert main([*args, "--fail-on", "GONE", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown verdict" in capsys.readouterr().err and not (tmp_path / "bad").exists()
