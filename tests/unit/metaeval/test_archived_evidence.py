"""The archived bench evidence (docs/results/data/) re-decides as its page says: the relearning
attack's vote is a pure function of the numbers each stored audit holds, so the settings the bench
ran give back every stored vote and bound, and a changed rule gives the page's table."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

from forensics.metaeval.scoring import confusion

ROOT = Path(__file__).resolve().parents[3]
ARCHIVE = ROOT / "docs" / "results" / "data" / "2026-12-07-bio-tiny-seeds-3-5.tar.xz"


def _relearning_rule():
    """benchmarks/relearning_rule.py as a module (it puts its own folder on the path for its sibling)."""
    spec = importlib.util.spec_from_file_location("relearning_rule", ROOT / "benchmarks" / "relearning_rule.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tiny_bio_held_out_bench_re_decides_as_its_page_says(tmp_path):
    """docs/results/2026-12-07-trace-recovery.md, tiny bio held out: under the settings the bench
    ran (no size rule) every stored vote and deletion bound comes back and 10 of 12 deleted models
    are DELETED; with ``suppressed_share=0.1`` 12 of 12, the 24 suppressed models SUPPRESSED either
    way, and only the two hard negatives' lone ``suppressed`` votes (and a copy's) move."""
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    rule = _relearning_rule()
    bench = tmp_path / "bt-ho"
    rows, perturbed, differs = rule.redecided(bench, {"suppressed_share": None})
    assert differs == []
    assert len(rows) == 39 and len(perturbed) == 24
    before = confusion(rows)["matrix"]
    assert before["DELETED"]["DELETED"] == 10 and before["SUPPRESSED"]["SUPPRESSED"] == 24
    after_rows, after_perturbed, _ = rule.redecided(bench, {"suppressed_share": 0.1})
    after = confusion(after_rows)["matrix"]
    assert after["DELETED"]["DELETED"] == 12 and after["SUPPRESSED"]["SUPPRESSED"] == 24
    moved = {
        (r["seed"], r["model"], r.get("perturbation"))
        for r, a in zip(rows + perturbed, after_rows + after_perturbed)
        if r["line_vote"] != a["line_vote"]
    }
    assert moved == {(3, "retrain_mentions", None), (5, "retrain_lineage", None), (3, "retrain_mentions", "q4")}
