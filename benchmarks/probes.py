"""Probe lines on one small-zoo model pair: activation capture time vs probe-fitting time.

    python benchmarks/probes.py [--zoo DIR] [--model npo] [--curves final/linear,final/mlp,subject/linear]

Capture (residual stream at every depth, final and subject tokens, O and U on F, R and
H) is timed once, into a temporary activation cache (``<cache>/activations``, the on-disk
store of :class:`forensics.core.context.AuditContext` with ``cache_dir=<cache>``); every probe
line then runs on its own fresh ``AuditContext`` over that cache folder, so it reads the
captures from disk and shares nothing in memory with the other lines. A line's timing is
probe fitting plus the extra passes it makes itself: the logit lens's unembedding, the
trace detector's capture of R and H as one prompt list and its unembedding of the last
layer, the memorisation line's captures of the F and H fact texts (O, U and a random-init
twin). Prints the wall time of each and the ratio of probe time to capture time. Issue
3's target: all lines under 30 s for one pair.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path; the benchmarks are not a package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from forensics.compute.capture import CaptureSpec, capture_facts, resid_hooks
from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model
from forensics.lines.attribute_probes import AttributeProbeConfig, attribute_probe_line
from forensics.lines.logit_lens import LogitLensConfig, logit_lens_line
from forensics.lines.memorisation_probe import SignatureConfig, memorisation_line
from forensics.lines.trace_detector import TraceConfig, trace_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path("zoo"), help="a built zoo (forensics zoo build)")
    parser.add_argument("--model", default="npo")
    parser.add_argument(
        "--curves",
        default=",".join(AttributeProbeConfig().curves),
        help="attribute-probe curves, position/kind (default: the audit's)",
    )
    args = parser.parse_args()
    if not (args.zoo / "labels.json").is_file():
        from forensics.zoo import build_zoo

        build_zoo(args.zoo, size="small", seed=0, progress=True)
    sets = {s: load_facts(args.zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    original = load_model(args.zoo / "models" / "original")
    unlearned = load_model(args.zoo / "models" / args.model)
    n_facts = sum(len(v) for v in sets.values())
    print(
        f"zoo {args.zoo}: original vs {args.model}, {original.n_layers} layers, "
        f"d_model {original.model.cfg.d_model}, {n_facts} facts"
    )

    cache = Path(tempfile.mkdtemp(prefix="probe-bench-"))

    def fresh_context() -> AuditContext:
        """A new audit context over the cache folder: nothing shared in memory, captures on disk."""
        return AuditContext(original, unlearned, **sets, cache_dir=cache)

    activation_dir = fresh_context().activation_dir  # where the context reads and writes captures
    start, cpu_start = time.perf_counter(), time.process_time()
    for loaded in (original, unlearned):
        for position in ("final", "subject"):
            spec = CaptureSpec(resid_hooks(loaded.n_layers), position)
            for facts in sets.values():
                capture_facts(loaded, facts, spec, batch_size=64, cache_dir=activation_dir)
    capture_seconds, capture_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"capture (2 models x 3 sets x 2 positions, every depth): {capture_seconds:.2f} s (CPU {capture_cpu:.2f} s)")

    curves = tuple(args.curves.split(","))
    lines = (
        ("attribute_probes", attribute_probe_line, AttributeProbeConfig(curves=curves)),
        ("logit_lens", logit_lens_line, LogitLensConfig()),
        ("trace_detector", trace_line, TraceConfig()),
        ("memorisation", memorisation_line, SignatureConfig()),
    )
    total = total_cpu = 0.0
    for name, run, config in lines:
        ctx = fresh_context()
        start, cpu_start = time.perf_counter(), time.process_time()
        evidence = run(ctx, config)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        total, total_cpu = total + seconds, total_cpu + cpu
        print(f"{name:<17} {seconds:7.2f} s (CPU {cpu:6.2f} s)   vote {evidence.vote}   ({evidence.reason[:60]})")
    print(
        f"all probe lines: {total:.2f} s (CPU {total_cpu:.2f} s); probe time / capture time = "
        f"{total / capture_seconds:.1f} (CPU: {total_cpu / capture_cpu:.1f})"
    )
    print(
        f"with capture: {total + capture_seconds:.2f} s wall; torch threads {torch.get_num_threads()}; "
        f"load average {os.getloadavg()[0]:.1f} (CPU time is the fairer number on a shared machine)"
    )
    print(f"attribute-probe curves: {', '.join(curves)}")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
