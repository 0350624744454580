"""Issue 3's validation table: every probe line on every zoo model against its original.

    python benchmarks/probes_zoo_table.py --zoo DIR [--curves final/linear,final/mlp]

Prints model x line -> effect (F), control (H), CI of the difference, vote, next to the
model's ground-truth label, and writes the rows as JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model
from forensics.lines.attribute_probes import AttributeProbeConfig, attribute_probe_line
from forensics.lines.logit_lens import LogitLensConfig, logit_lens_line
from forensics.lines.memorisation_probe import SignatureConfig, memorisation_line
from forensics.lines.trace_detector import TraceConfig, trace_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument(
        "--curves",
        default=",".join(AttributeProbeConfig().curves),
        help="attribute-probe curves, position/kind (default: the audit's)",
    )
    parser.add_argument("--models", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    labels = json.loads((args.zoo / "labels.json").read_text())
    sets = {s: load_facts(args.zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    cache = Path(tempfile.mkdtemp(prefix="probe-table-"))
    configs = {
        "attribute": (attribute_probe_line, AttributeProbeConfig(curves=tuple(args.curves.split(",")))),
        "logit_lens": (logit_lens_line, LogitLensConfig()),
        "trace": (trace_line, TraceConfig()),
        "memorisation": (memorisation_line, SignatureConfig()),
    }
    originals = {}
    rows = []
    names = args.models.split(",") if args.models else list(labels)
    print(
        f"{'model':<16}{'truth':<14}{'line':<11}{'effect':>8}{'control':>9}{'CI of difference':>20}"
        f"{'p':>7}  vote            seconds"
    )
    for name in names:
        arch = labels[name]["architecture"]
        original_name = "llama_original" if arch == "llama" else "original"
        if original_name not in originals:
            originals[original_name] = load_model(args.zoo / "models" / original_name)
        original = originals[original_name]
        unlearned = original if name == original_name else load_model(args.zoo / "models" / name)
        for line, (run, config) in configs.items():
            # A fresh context per line: lines share captures only through the disk cache.
            ctx = AuditContext(original=original, unlearned=unlearned, **sets, cache_dir=cache)
            start = time.perf_counter()
            ev = run(ctx, config)
            seconds = time.perf_counter() - start
            ci = f"[{ev.ci[0]:+.3f}, {ev.ci[1]:+.3f}]" if ev.ci else "-"
            p = f"{ev.p_value:.3f}" if ev.p_value is not None else "-"
            print(
                f"{name:<16}{labels[name]['ground_truth']:<14}{line:<11}{ev.effect:>8.3f}{ev.control:>9.3f}"
                f"{ci:>20}{p:>7}  {str(ev.vote):<16}{seconds:5.1f}",
                flush=True,
            )
            mlp = ev.details.get("curves", {}).get("final/mlp") if line == "attribute" else None
            if mlp:  # the nonlinear probe's best re-fit cell, for the table
                best = max(mlp, key=lambda r: abs(r["refit"]["difference"]))
                print(
                    f"{'':<30}{'(mlp refit)':<11}{best['refit']['forget']:>8.3f}{best['refit']['holdout']:>9.3f}"
                    f"{'[{:+.3f}, {:+.3f}]'.format(*tuple(best['refit']['ci_family'])):>20}  depth {best['depth']}",
                    flush=True,
                )
            rows.append(
                {
                    "model": name,
                    "truth": labels[name]["ground_truth"],
                    "line": line,
                    "effect": ev.effect,
                    "control": ev.control,
                    "ci": ev.ci,
                    "p_value": ev.p_value,
                    "vote": ev.vote,
                    "reason": ev.reason,
                    "metric": ev.metric,
                    "seconds": seconds,
                }
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
