"""Benchmark: wall time of each issue-5 evidence line on one small-zoo model pair.

Loads ``original`` and one unlearned model (default ``npo``) of the zoo, then runs each
line once with its default configuration and prints its wall time (model loading not
included) and the machine's load average next to it (other processes slow every line).

    python benchmarks/attacks.py [--zoo zoo] [--model npo] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model


def main() -> None:
    from forensics.lines.cka import cka_line
    from forensics.lines.membership_inference import membership_line
    from forensics.lines.quantization_attack import quantization_line
    from forensics.lines.relearning_attack import relearning_line
    from forensics.lines.remind.line import remind_line

    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--model", default="npo")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = Path(args.zoo)
    sets = {s: load_facts(zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    ctx = AuditContext(load_model(zoo / "models" / "original"), load_model(zoo / "models" / args.model), **sets)
    print(
        f"zoo {zoo}, U = {args.model}, F/R/H = {len(sets['forget'])}/{len(sets['retain'])}/{len(sets['holdout'])}, "
        f"threads {args.threads}"
    )
    for name, fn in (
        ("membership_inference", membership_line),
        ("quantization_attack", quantization_line),
        ("cka", cka_line),
        ("remind", remind_line),
        ("relearning_attack", relearning_line),
    ):
        load = os.getloadavg()[0]
        t = time.perf_counter()
        ev = fn(ctx)
        print(
            f"{name:<22} {time.perf_counter() - t:7.1f} s   vote {ev.vote or '-':<11} "
            f"(load average at start {load:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
