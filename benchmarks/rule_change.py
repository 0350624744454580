"""A verdict-rule change measured on the same evidence: re-decide every audit a bench stored
under two versions of ``forensics/core/verdict.py`` and print both verdict tables.

    python benchmarks/rule_change.py BENCH_OUT [BENCH_OUT ...] --before REV [--json out.json]

``BENCH_OUT``: a ``forensics bench`` output folder (``bench.json`` and ``audits/``). ``REV``: a git
revision whose ``forensics/core/verdict.py`` is the rule before (read with ``git show``, loaded
as a module of its own); the rule after is the checkout's. Every stored audit's evidence is
re-read (:meth:`forensics.core.evidence.Evidence.from_json`) and decided by both rules; the
stored verdict must equal one of them (the rule the bench ran), else the script stops. The
verdict rule is a pure function of the evidence, so this is the bench's before/after without
re-running any line. Prints, per bench and pooled: the confusion matrix before -> after, the
perturbed deleted copies' verdicts, the deleted models called SUPPRESSED, and every model whose
verdict changed with the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from forensics.core.evidence import Evidence
from forensics.core.registry import discover_lines, gate_of
from forensics.core.verdict import Verdict, decide
from forensics.metaeval.bench import audit_tag
from forensics.metaeval.scoring import TRUTHS, VERDICTS, confusion
from forensics.metaeval.stored import NotABench, read_bench, stored_audits


def load_rule(rev: str) -> Any:
    """``forensics/core/verdict.py`` at git revision ``rev``, as a module."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:forensics/core/verdict.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "verdict_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("verdict_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def redecide(results: dict[str, Any], before: Any, gate: str | None) -> tuple[str, str, Verdict]:
    """The stored verdict label of one stored audit, the rule-before's label, the rule-after's verdict."""
    evidence = [Evidence.from_json(e) for e in results["evidence"]]
    has_holdout = results["inputs"].get("holdout") is not None
    old = before.decide(evidence, has_holdout, gate=gate)
    new = decide(evidence, has_holdout, gate=gate)
    return results["verdict"]["label"], old.label, new


def matrix_text(rows_before: list[dict], rows_after: list[dict]) -> str:
    """Markdown confusion matrix, each cell ``before -> after``."""
    b, a = confusion(rows_before)["matrix"], confusion(rows_after)["matrix"]
    out = ["| truth \\ verdict | " + " | ".join(VERDICTS) + " |", "| --- |" + " --- |" * len(VERDICTS)]
    for t in TRUTHS:
        n = sum(b[t].values())
        if not n:
            continue
        cells = [f"{b[t][v]} → {a[t][v]}" if b[t][v] != a[t][v] else str(b[t][v]) for v in VERDICTS]
        out.append(f"| {t} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("benches", nargs="+", type=Path)
    parser.add_argument("--before", required=True, help="git revision of the rule before")
    parser.add_argument("--json", type=Path, help="write every re-decided audit here")
    args = parser.parse_args()
    before = load_rule(args.before)
    gate = gate_of(discover_lines()[0])
    pooled_b, pooled_a, pert_b, pert_a, changed = [], [], [], [], []
    dump = []
    for bench_dir in args.benches:
        try:
            bench, audits = read_bench(bench_dir), stored_audits(bench_dir)
        except NotABench as e:
            print(f"rule_change: {e}", file=sys.stderr)
            return 2
        rows_b, rows_a, pb, pa = [], [], [], []
        for row, results in audits:
            kind = row.get("perturbation")
            name = audit_tag(row["model"], kind)
            stored, old, new_verdict = redecide(results, before, gate)
            if stored not in (old, new_verdict.label):
                print(f"{bench_dir} seed{row['seed']}/{name}: stored {stored}, neither rule gives it", file=sys.stderr)
                return 1
            truth = "DELETED" if kind else row["truth"]
            dump.append(
                {
                    "bench": str(bench_dir),
                    "seed": row["seed"],
                    "model": name,
                    "truth": truth,
                    "before": old,
                    "after": new_verdict.label,
                    "step": new_verdict.step,
                    "held_back": [h["line"] for h in new_verdict.held_back],
                }
            )
            (pb if kind else rows_b).append({"truth": truth, "verdict": old})
            (pa if kind else rows_a).append({"truth": truth, "verdict": new_verdict.label})
            if old != new_verdict.label:
                changed.append(
                    f"- {bench_dir.name} seed {row['seed']} {name} (truth {truth}): {old} → "
                    f"{new_verdict.label}: {new_verdict.reason}"
                )
        print(
            f"## {bench_dir} ({bench['config']['world']}, {bench['config']['size']}, "
            f"{bench['config']['profile']}, seeds {bench['config']['seeds']})\n"
        )
        print(matrix_text(rows_b, rows_a) + "\n")
        cb, ca = confusion(rows_b), confusion(rows_a)
        print(
            f"accuracy {cb['correct']}/{cb['n']} → {ca['correct']}/{ca['n']}; deleted called SUPPRESSED "
            f"{cb['deleted_called_suppressed']} → {ca['deleted_called_suppressed']}"
        )
        if pb:
            print(
                "perturbed deleted copies: "
                + ", ".join(
                    f"{v} {sum(r['verdict'] == v for r in pb)} → {sum(r['verdict'] == v for r in pa)}" for v in VERDICTS
                )
            )
        print()
        pooled_b += rows_b
        pooled_a += rows_a
        pert_b += pb
        pert_a += pa
    if len(args.benches) > 1:
        print("## pooled\n\n" + matrix_text(pooled_b, pooled_a) + "\n")
    print("## verdicts that changed\n\n" + ("\n".join(changed) if changed else "none"))
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
