"""The confidence labels' measured accuracy, pooled over several benches: what "high" and
"medium" have been worth on held-out seeds.

    python benchmarks/reliability.py BENCH_OUT [BENCH_OUT ...] [--json out.json]

``BENCH_OUT``: a ``forensics bench`` output folder (its ``bench.json``). Every scored model
(oracle label DELETED, SUPPRESSED or NOT_FORGOTTEN; UNDETERMINED ones are left out) and every
perturbed copy of a deleted model (its truth stays DELETED) is one audit. Prints, per bench and
pooled: :func:`forensics.metaeval.scoring.reliability` (per verdict and label) and
:func:`forensics.metaeval.scoring.label_accuracy` (per label over the decisive verdicts), each
with its one-sided 95% Clopper-Pearson lower bound. Recomputed from the stored rows, so benches
written before ``label_accuracy`` existed pool the same way. The audits are counted as
independent trials; models of one seed share an original, so read the bound as optimistic where
they agree for a shared reason.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from forensics.metaeval.scoring import label_accuracy, reliability, scored_audits


def audits_of(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The bench's scored audits as ``{"truth", "verdict", "confidence"}`` rows."""
    return scored_audits(bench["models"], bench["perturbed"])


def table(rows: list[dict[str, Any]]) -> list[str]:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    out = [f"  {'verdict':<14} {'label':<7} {'audits':>6} {'right':>6} {'share':>6} {'lower 95%':>9}"]
    for r in reliability(rows):
        right = "" if r["right"] is None else str(r["right"])
        out.append(
            f"  {r['verdict']:<14} {r['confidence']:<7} {r['n']:>6} {right:>6} {fmt(r['share_right']):>6} "
            f"{fmt(r['lower_95']):>9}"
        )
    for r in label_accuracy(rows):
        out.append(
            f"  {'any decisive':<14} {r['confidence']:<7} {r['n']:>6} {r['right']:>6} {fmt(r['share_right']):>6} "
            f"{fmt(r['lower_95']):>9}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benches", nargs="+", type=Path, help="forensics bench output folders")
    parser.add_argument("--json", type=Path, help="also write the pooled tables here")
    args = parser.parse_args()
    pooled: list[dict[str, Any]] = []
    for folder in args.benches:
        bench = json.loads((folder / "bench.json").read_text())
        config = bench["config"]
        rows = audits_of(bench)
        pooled += rows
        view = config.get("data_view") or "full"
        print(
            f"{folder}: {config['size']} {config['world']} ({view}), seeds {config['seeds']}, "
            f"{config['profile']}: {len(rows)} audits"
        )
        print("\n".join(table(rows)))
    print(f"pooled over {len(args.benches)} benches: {len(pooled)} audits")
    print("\n".join(table(pooled)))
    if args.json:
        args.json.write_text(
            json.dumps({"reliability": reliability(pooled), "label_accuracy": label_accuracy(pooled)}, indent=2)
        )


if __name__ == "__main__":
    main()
