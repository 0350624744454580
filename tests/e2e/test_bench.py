"""The meta-evaluation bench: its measures on hand-made numbers, and one small run on the tiny zoo."""

from __future__ import annotations

import json

import pytest

from forensics.cli import main
from forensics.metaeval.bench import BenchConfig, run_bench
from forensics.metaeval.scoring import (
    TRUTHS,
    VERDICTS,
    confusion,
    line_score,
    meta_evaluation,
    roc_auc,
    scaled_stability,
    uds_stability,
    verdict_score,
)
from forensics.reports.bench import text_tables


def test_measures():
    assert roc_auc([3, 4], [1, 2]) == 1.0 and roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 2], [2]) == 0.25 and roc_auc([], [1]) is None
    assert uds_stability(0.2, 0.2) == 1.0 and uds_stability(0.0, 0.0) == 1.0
    assert uds_stability(0.3, 0.1) == pytest.approx(0.5) and uds_stability(-0.1, 0.1) == 0.0
    assert scaled_stability(0.1, 0.3, 0.4) == pytest.approx(0.5) and scaled_stability(0, 9, 1) == 0.0
    assert line_score({"line": "cka", "status": "ok", "effect": 0.1, "control": 0.4}) == pytest.approx(0.3)
    assert line_score({"line": "logit_lens", "status": "ok", "effect": 0.1, "control": 0.4}) == pytest.approx(-0.3)
    remind = {"line": "remind", "status": "ok", "effect": 0.1, "control": 0.4}
    assert line_score(remind | {"details": {"contrast": {"original": {"difference": -0.5}}}}) == pytest.approx(0.3)
    assert line_score(remind | {"details": {"contrast": {"original": {"difference": 0.5}}}}) == pytest.approx(-0.3)
    assert line_score({"line": "behaviour", "status": "ok", "effect": 0.1, "control": 0.4}) == pytest.approx(-0.3)
    assert line_score({"line": "x", "status": "not_run", "effect": None, "control": None}) is None
    assert verdict_score({"label": "DELETED", "confidence": "high"}) == -1.0
    assert verdict_score({"label": "SUPPRESSED", "confidence": "medium"}) == pytest.approx(2 / 3)
    assert verdict_score({"label": "INCONCLUSIVE", "confidence": "n/a"}) == 0.0


def test_line_score_reads_each_lines_side_of_the_control_from_the_registry():
    from forensics.core.evidence import Evidence
    from forensics.core.registry import LINES, discover_lines, register

    lines = discover_lines()[0]
    assert (lines["logit_lens"].side, lines["cka"].side, lines["remind"].side) == ("above", "either", "o_side")
    below = {"status": "ok", "effect": 0.1, "control": 0.4}  # F 0.3 below the control
    for name, spec in lines.items():  # every shipped line scores as it declares
        score = line_score(below | {"line": name})
        expected = {"above": -0.3, "either": 0.3, "o_side": -0.3}[spec.side]  # o_side, no details: as is
        assert score == pytest.approx(expected), (name, spec.side)
    # remind: signed by the side where O shows its own contrast (details at its o_side_path)
    assert lines["remind"].o_side_path == ("contrast", "original", "difference")
    for o_contrast, expected in ((-0.5, 0.3), (0.5, -0.3), (0.0, -0.3)):
        details = {"contrast": {"original": {"difference": o_contrast}}}
        assert line_score(below | {"line": "remind", "details": details}) == pytest.approx(expected)

    # a line registered now is scored by what it declares; an unknown line by the absolute gap
    def run(ctx, config=None):
        return Evidence.not_run("x", "q", "never run")

    try:
        for name, side, path in (
            ("toy_above", "above", ()),
            ("toy_either", "either", ()),
            ("toy_o_side", "o_side", ("o", "sign")),
        ):
            register(name, question="q", needs=("original",), side=side, o_side_path=path)(run)
        assert line_score(below | {"line": "toy_above"}) == pytest.approx(-0.3)
        assert line_score({"line": "toy_above", "status": "ok", "effect": 0.4, "control": 0.1}) == pytest.approx(0.3)
        assert line_score(below | {"line": "toy_either"}) == pytest.approx(0.3)
        assert line_score(below | {"line": "toy_o_side", "details": {"o": {"sign": -1.0}}}) == pytest.approx(0.3)
        assert line_score(below | {"line": "toy_o_side", "details": {"o": {"sign": 2.0}}}) == pytest.approx(-0.3)
    finally:
        for name in ("toy_above", "toy_either", "toy_o_side"):
            LINES.pop(name, None)
    assert line_score(below | {"line": "toy_above"}) == pytest.approx(0.3)  # gone: unknown, absolute
    assert line_score(below | {"line": "toy_above", "status": "not_run"}) is None
    assert line_score({"line": "logit_lens", "status": "ok", "effect": float("nan"), "control": 0.1}) is None


def test_confusion_and_meta_evaluation_on_hand_made_rows():
    rows = [
        {"truth": "SUPPRESSED", "verdict": "SUPPRESSED", "scores": {"a": 0.5, "verdict": 1.0}},
        {"truth": "NOT_FORGOTTEN", "verdict": "NOT_FORGOTTEN", "scores": {"a": 0.1, "verdict": 1.0}},
        {"truth": "DELETED", "verdict": "SUPPRESSED", "scores": {"a": 0.2, "verdict": 1.0}},
        {"truth": "DELETED", "verdict": "DELETED", "scores": {"a": 0.0, "verdict": -1.0}},
        # the oracle could not settle this one: listed by the bench, never scored
        {"truth": "UNDETERMINED", "verdict": "SUPPRESSED", "scores": {"a": 9.0, "verdict": 1.0}},
    ]
    conf = confusion(rows)
    assert conf["n"] == 4 and conf["correct"] == 3 and conf["accuracy"] == 0.75
    assert conf["deleted_called_suppressed"] == 1
    assert sum(conf["matrix"][t][v] for t in TRUTHS for v in VERDICTS) == 4
    perturbed = [
        {"perturbation": "q4", "before": {"a": 0.2}, "scores": {"a": 0.1}},
        {"perturbation": "relearn", "before": {"a": 0.2}, "scores": {"a": 0.2}},
    ]
    table = meta_evaluation(rows, perturbed)
    assert table["a"]["faithfulness"] == pytest.approx(0.75)  # 0.5 beats both, 0.1 beats 0.0 only
    assert table["a"]["stability_q4"] == pytest.approx(1 - 0.1 / 0.3) and table["a"]["stability_relearn"] == 1.0
    q = 1 - 0.1 / 0.3
    assert table["a"]["robustness"] == pytest.approx(2 * q / (q + 1))
    assert table["verdict"]["robustness"] is None  # no perturbed verdict scores given


@pytest.mark.slow
def test_bench_on_the_tiny_zoo(tiny_zoo, tmp_path):
    root = tmp_path / "zoos"
    root.mkdir()
    (root / "seed0").symlink_to(tiny_zoo)
    out = tmp_path / "bench"
    config = BenchConfig(
        seeds=(0,),
        size="tiny",
        profile="quick",
        models=("npo", "retrain", "retrain_mentions"),
        lines=("behaviour", "logit_lens"),
    )
    bench = run_bench(root, out, config, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["audits", "bench.html", "bench.json"]
    assert json.loads((out / "bench.json").read_text()) == bench
    assert not (tmp_path / ".bench.work").exists()  # work folder removed after success
    html = (out / "bench.html").read_text()
    assert html.startswith("<!doctype html>") and "faithfulness" in html

    pooled, seed0 = bench["confusion"]["pooled"], bench["confusion"]["per_seed"]["0"]
    assert pooled == seed0
    assert pooled["n"] == 3 == sum(pooled["matrix"][t][v] for t in TRUTHS for v in VERDICTS)
    truths = {row["model"]: row["truth"] for row in bench["models"]}
    assert truths == {"npo": "SUPPRESSED", "retrain": "DELETED", "retrain_mentions": "DELETED"}
    assert pooled["correct"] == sum(row["truth"] == row["verdict"] for row in bench["models"])
    assert {(p["model"], p["perturbation"]) for p in bench["perturbed"]} == {
        (m, k) for m in ("retrain", "retrain_mentions") for k in ("q4", "relearn")
    }
    assert bench["perturbed_confusion"]["n"] == 4
    assert sorted((out / "audits" / "seed0").iterdir()) == sorted(
        out / "audits" / "seed0" / f"{n}.json"
        for n in (
            "npo",
            "retrain",
            "retrain~q4",
            "retrain~relearn",
            "retrain_mentions",
            "retrain_mentions~q4",
            "retrain_mentions~relearn",
        )
    )
    hard = bench["hard_negatives"]
    assert hard["n"] == 1 and hard["models"][0]["model"] == "retrain_mentions"
    assert hard["called_suppressed"] == (hard["models"][0]["verdict"] == "SUPPRESSED")
    assert "faithfulness without hard negatives" in html and "hard negatives" in text_tables(bench)
    assert bench["bound_honesty"] == {}  # neither the gate nor the logit lens states a deletion bound

    lines = bench["lines"]
    assert set(lines) == {"verdict", "behaviour", "logit_lens"}
    for row in lines.values():
        assert row["n_positive"] == 1 and row["n_negative"] == 2
    for row in bench["lines_without_hard_negatives"].values():
        assert row["n_positive"] == 1 and row["n_negative"] == 1
        assert row["faithfulness"] in (0.0, 0.5, 1.0)
        for key in ("stability_q4", "stability_relearn", "robustness"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0

    # the CLI refuses an existing output folder with one line and exit 2
    assert main(["bench", "--zoo", str(root), "--out", str(out), "--seeds", "0", "--size", "tiny"]) == 2
    assert main(["bench", "--zoo", str(root), "--out", str(tmp_path / "b2"), "--seeds", "x"]) == 2
    assert not (tmp_path / "b2").exists()
