"""Benchmark: REMIND neighbour scoring, batched versus a naive loop over neighbours.

On the same examples (the zoo's forget facts) and the same neighbours (15 per example,
~30% substitution, seeded; :func:`forensics.lines.remind.line.prepare_scan`), times:

(a) ``batched``: :func:`forensics.compute.scoring.sequence_losses` over every neighbour at once
    (length-sorted, right-padded batches of ``--batch-size``), as the REMIND line does;
(b) ``naive``: one forward pass per neighbour (batch of 1), the same loss.

Both give the same losses (checked, to 1e-4). Reported: neighbours scored per second for
each, and the ratio (target: batched >= 5x naive). The machine's load average is printed
next to the timings: other processes slow both variants.

    python benchmarks/remind.py [--zoo zoo] [--model npo] [--examples 200] [--batch-size 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from forensics.compute.scoring import sequence_losses
from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model
from forensics.lines.remind.line import RemindConfig, prepare_scan


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--model", default="npo")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zoo = Path(args.zoo)
    loaded = load_model(zoo / "models" / args.model)
    facts = load_facts(zoo / "data" / "forget.jsonl")[0][: args.examples]
    ctx = AuditContext(loaded, loaded, facts, facts, facts)
    scan = prepare_scan(ctx, RemindConfig(max_per_set=None), sets=("forget",))
    neighbours = scan.neighbours["forget"][0]
    pad = loaded.tokenizer.pad_token_id or 0
    n = len(neighbours)
    print(
        f"model {args.model}, {len(facts)} examples, {n} neighbours, "
        f"{np.mean([len(s) for s in neighbours]):.1f} tokens each, threads {args.threads}"
    )
    print(f"load average before: {os.getloadavg()}")

    sequence_losses(loaded.model, neighbours[:64], args.batch_size, loaded.device, pad)  # warm-up
    t = time.perf_counter()
    batched = sequence_losses(loaded.model, neighbours, args.batch_size, loaded.device, pad)
    t_batched = time.perf_counter() - t

    t = time.perf_counter()
    naive = np.array([sequence_losses(loaded.model, [s], 1, loaded.device, pad)[0] for s in neighbours])
    t_naive = time.perf_counter() - t

    assert np.allclose(batched, naive, atol=1e-4), float(np.abs(batched - naive).max())
    print(f"batched: {t_batched:7.2f} s  {n / t_batched:9.0f} neighbours/s")
    print(f"naive:   {t_naive:7.2f} s  {n / t_naive:9.0f} neighbours/s")
    print(f"ratio batched/naive throughput: {t_naive / t_batched:.1f}x (target >= 5x)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
