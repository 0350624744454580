"""Benchmark: peak memory of a cached capture stays flat as the number of prompts grows.

For each prompt count (default 400 and 4,000: 10x) and for capture with and without the
disk cache, a fresh Python process loads the model (the GPT-NeoX built by
``benchmarks/capture.py``'s factory), makes the prompts, resets the kernel's peak-RSS
counter (``/proc/self/clear_refs``), runs the capture, and reports the peak resident
memory above what it held just before the capture. Capture mode is ``"all"`` (every
token, every depth of the residual stream), where the result itself is large: a cached
capture streams shards to disk and should stay flat; an in-memory one must grow with the
result.

    python benchmarks/memory.py [--counts 400 4000] [--shard-size 256]

Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(folder: str, n: int, cache_dir: str | None, shard_size: int) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    from capture import make_prompts  # benchmarks/capture.py

    from forensics.compute.capture import CaptureSpec, capture, resid_hooks
    from forensics.inputs.loading import load_model

    torch.set_num_threads(1)
    loaded = load_model(folder)
    prompts = make_prompts(loaded.tokenizer, n)
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "all")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    acts = capture(loaded, prompts, spec, batch_size=32, shard_size=shard_size, cache_dir=cache_dir)
    peak = _status_kib("VmHWM")
    n_tokens = int(acts.prompt_lengths.sum())
    result_mib = n_tokens * len(spec.hooks) * loaded.model.cfg.d_model * 4 / 2**20
    print(
        json.dumps(
            {
                "n": n,
                "cached": cache_dir is not None,
                "peak_above_start_mib": (peak - before) / 1024,
                "result_mib": result_mib,
                "tokens": n_tokens,
            }
        )
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[400, 4000])
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        folder, n, cache_dir, shard_size = args.child
        child(folder, int(n), None if cache_dir == "-" else cache_dir, int(shard_size))
        return 0

    sys.path.insert(0, str(HERE))
    from capture import build_checkpoint

    workdir = Path(tempfile.mkdtemp(prefix="capture-memory-"))
    try:
        folder = build_checkpoint(workdir / "gpt-neox-small")
        print(
            f"capture position='all', residual stream at every depth, shard size {args.shard_size}; "
            "peak RSS during capture above RSS at its start:"
        )
        for cached in (True, False):
            for n in args.counts:
                cache = str(workdir / f"cache-{n}") if cached else "-"
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(folder), str(n), cache, str(args.shard_size)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"  {'cached   ' if cached else 'in memory'} {row['n']:6d} prompts ({row['tokens']:6d} tokens): "
                    f"peak +{row['peak_above_start_mib']:7.1f} MiB   (result itself {row['result_mib']:6.1f} MiB)"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
