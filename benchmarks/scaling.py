"""Benchmark: how an audit's cost grows with the model and with the fact sets.

Two axes, each point a standard audit (every line, ``all_lines=True``) in a fresh process:

- **parameters**: random-init GPT-NeoX pairs of growing size, the zoo's shape (d128, 4
  layers) then Pythia-70M, Pythia-160M and Pythia-410M shapes (vocabulary 50,304), audited on
  the zoo's F / R / H. O is random; U is O with Gaussian noise of 1% of each tensor's standard
  deviation. Random models know no fact, so the verdict means nothing here; every line still
  runs its full work (none stops early for a model that knows nothing).
- **facts**: the zoo pair (``original`` against ``--model``) with R of growing size: the
  zoo's retain subjects first, then the same templates about new invented subjects
  (``forensics.zoo.world.make_world`` with another seed), whole subjects only.

Each point prints wall time and peak memory by stage (the stages of ``benchmarks/audit.py``:
loading, capture, probes, SAE, steering, REMIND, attacks, report, other; peak resident memory
of the process during each line, or peak CUDA memory with ``--device cuda``), and the share of
wall time in the models' own forward and backward passes. Then, per stage, the growth exponent
``k`` in ``cost ~ size^k`` between consecutive points (log-log slope): 1 is linear.

    python benchmarks/scaling.py --zoo ZOO [--axis params facts] [--shapes zoo 70m 160m 410m]
        [--retain 500 1000 2000 4000] [--model npo] [--profile standard] [--device cpu] [--dtype float32]
        [--threads 2] [--timeout 3600] [--passes-only] [--json out.json]

ZOO is a small zoo (``forensics zoo build --size small``). Linux only (reads /proc/self/status).
Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

#: name -> (d_model, layers, heads, vocabulary, context); Pythia shapes from its model cards.
SHAPES = {
    "zoo": (128, 4, 4, None, 64),
    "70m": (512, 6, 8, 50304, 2048),
    "160m": (768, 12, 12, 50304, 2048),
    "410m": (1024, 24, 16, 50304, 2048),
}
STAGE_ORDER = ("loading", "capture", "probes", "SAE", "steering", "REMIND", "attacks", "report", "other")


def _audit_module():
    """benchmarks/audit.py, loaded by path (this folder is kept off sys.path)."""
    spec = importlib.util.spec_from_file_location("audit_bench", HERE / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


# ----------------------------------------------------------------------------- inputs


def build_pair(shape: str, tokenizer_folder: Path, dest: Path) -> tuple[Path, Path, int]:
    """A random-init GPT-NeoX pair of ``shape`` with the zoo's tokenizer: (O, U, parameters)."""
    import torch
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    d, layers, heads, vocab, n_ctx = SHAPES[shape]
    tok = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    config = GPTNeoXConfig(
        vocab_size=vocab or len(tok),
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * d,
        max_position_embeddings=n_ctx,
        rotary_pct=0.25,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    paths = []
    for role, noise in (("original", 0.0), ("unlearned", 0.01)):
        if noise:
            generator = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=generator) * noise * float(p.std().clamp(min=1e-3)))
        folder = dest / f"{shape}-{role}"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        paths.append(folder)
    return paths[0], paths[1], n_params


def retain_set(zoo: Path, n: int, dest: Path) -> tuple[Path, int]:
    """A retain JSONL of about ``n`` facts (whole subjects): the zoo's retain subjects first,
    then new subjects from another seed's world. Returns (path, facts written)."""
    from forensics.zoo.world import make_world

    rows = [json.loads(line) for line in (zoo / "data" / "retain.jsonl").read_text().splitlines() if line.strip()]
    per_subject = max(1, len(rows) // len({r["subject"] for r in rows}))
    taken = {r["subject"] for r in rows}
    for f in ("forget", "holdout"):
        taken |= {json.loads(x)["subject"] for x in (zoo / "data" / f"{f}.jsonl").read_text().splitlines() if x}
    extra_subjects = max(0, math.ceil((n - len(rows)) / per_subject))
    if extra_subjects:
        world = make_world(0, extra_subjects + 50, 0, 0, seed="scaling-extra-retain")
        new = [r for r in world.facts("retain") if r["subject"] not in taken]
        for r in new:
            r["id"] = "x" + r["id"]
        rows += new
    subjects = list(dict.fromkeys(r["subject"] for r in rows))[: math.ceil(n / per_subject)]
    keep = set(subjects)
    chosen = [r for r in rows if r["subject"] in keep]
    path = dest / f"retain-{n}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    return path, len(chosen)


def count_params(folder: Path) -> tuple[int, int]:
    """(all parameters, those of the input embedding) of a checkpoint, from its safetensors headers."""
    from safetensors import safe_open

    from forensics.inputs.loading import weight_files

    total = embedding = 0
    for file in weight_files(folder):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                n = math.prod(handle.get_slice(key).get_shape())
                total += n
                embedding += n if "embed_in" in key or "wte" in key or "embed_tokens" in key else 0
    return total, embedding


def model_flops(row: dict) -> float:
    """Model-pass FLOPs of a point: 2 N per token forward and 4 N more per token with a backward,
    N the parameters outside the input embedding (a lookup)."""
    n = row["params"] - row["embedding_params"]
    return 2 * n * row["lm_tokens"] + 4 * n * row["lm_grad_tokens"]


# ----------------------------------------------------------------------------- one point (child process)


def child(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    bench = _audit_module()
    t = bench.Timers()
    bench.instrument(t)
    cuda = spec["device"].startswith("cuda")
    peaks: dict[str, float] = {}

    from forensics.core.registry import LINES

    def measured(name, run):
        def wrapper(*args, **kwargs):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            else:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            try:
                return run(*args, **kwargs)
            finally:
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _status_kib("VmHWM") / 2**20
                peaks[name] = max(peaks.get(name, 0.0), peak)

        return wrapper

    for name, line in list(LINES.items()):
        LINES[name] = replace(line, run=measured(name, line.run))

    from forensics.core.pipeline import audit

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = audit(
            spec["original"],
            spec["unlearned"],
            spec["forget"],
            spec["retain"],
            spec["holdout"],
            out=Path(tmp) / "report",
            profile=spec["profile"],
            device=spec["device"],
            dtype=spec["dtype"],
            progress=False,
            seed=0,
            all_lines=True,
        )
        wall = time.perf_counter() - start
    stages: dict[str, float] = {"loading": (t.first_line_start or start) - start, "capture": t.capture}
    stage_peak: dict[str, float] = {}
    for name, seconds in t.line_wall.items():
        stage = bench.STAGES.get(name, "other lines")
        stages[stage] = stages.get(stage, 0.0) + seconds - t.capture_in_line.get(name, 0.0)
        stage_peak[stage] = max(stage_peak.get(stage, 0.0), peaks.get(name, 0.0))
    stages["report"] = t.report
    stages["other"] = wall - sum(stages.values())
    overall = torch.cuda.max_memory_allocated() / 2**30 if cuda else _status_kib("VmHWM") / 2**20
    return {
        "wall": wall,
        "stages": stages,
        "stage_peak_gib": stage_peak,
        "peak_gib": max([overall, *peaks.values()]),
        "lm_forward": t.lm_forward,
        "lm_backward": t.backward_lm,
        "other_forward": t.other_forward,
        "model_share": (t.lm_forward + t.backward_lm) / wall,
        "lm_tokens": t.lm_tokens,
        "lm_grad_tokens": t.lm_grad_tokens,
        "lm_tokens_by_line": t.lm_tokens_by_line,
        "verdict": result.verdict.label,
        "line_seconds": t.line_wall,
    }


def pass_costs(spec: dict) -> dict:
    """Seconds per token position of the model's own passes at one shape, and peak memory:
    loading the pair (with the load's agreement check), a no-grad forward of O, and a
    forward + backward + AdamW step on a copy of U (what the relearning attack does), on
    batches of 64 rows of 16 tokens."""
    import copy

    import torch

    from forensics.inputs.loading import load_model

    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    o = load_model(spec["original"], spec["device"], spec["dtype"])
    u = load_model(spec["unlearned"], spec["device"], spec["dtype"])
    loading = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, len(o.tokenizer), (64, 16), generator=generator).to(o.device)
    with torch.no_grad():
        o.model(tokens)  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            o.model(tokens)
        forward = (time.perf_counter() - start) / (3 * tokens.numel())
    trainable = copy.deepcopy(u.model)
    for p in trainable.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable.parameters(), lr=1e-5)
    steps = []
    for _ in range(3):
        begin = time.perf_counter()
        logits = trainable(tokens)[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1)
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
        steps.append(time.perf_counter() - begin)
    cuda = spec["device"].startswith("cuda")
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else _status_kib("VmHWM") / 2**20
    return {
        "loading": loading,
        "forward_per_token": forward,
        "train_step_per_token": min(steps[1:]) / tokens.numel(),
        "peak_gib": peak,
    }


# ----------------------------------------------------------------------------- driver


def _run_point(spec: dict, timeout: float) -> dict:
    started = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s", "wall": time.perf_counter() - started}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _print_point(label: str, size: str, row: dict) -> None:
    if "error" in row:
        print(f"{label:<14} {size:>12}  {row['error']}")
        return
    stages = row["stages"]
    cells = " ".join(f"{stages.get(s, 0.0):>8.1f}" for s in STAGE_ORDER)
    print(f"{label:<14} {size:>12} {row['wall']:>8.1f} {cells} {row['model_share']:>7.1%} {row['peak_gib']:>8.2f}")
    passes = row["lm_forward"] + row["lm_backward"]
    row["model_flops"] = model_flops(row)
    print(
        f"{'':<14} {'':>12} model passes: {row['lm_tokens']:,} token positions forward, "
        f"{row['lm_grad_tokens']:,} of them with a backward; {row['model_flops'] / 1e12:.2f} TFLOP in "
        f"{passes:.1f} s ({row['model_flops'] / max(passes, 1e-9) / 1e9:.1f} GFLOP/s); per-line peak memory "
        + ", ".join(f"{k} {v:.2f}" for k, v in row["stage_peak_gib"].items())
        + " GiB"
    )
    by_line = sorted(row.get("lm_tokens_by_line", {}).items(), key=lambda kv: -kv[1])
    print(
        f"{'':<14} {'':>12} forward token positions by line: "
        + ", ".join(f"{k} {v / max(row['lm_tokens'], 1):.0%}" for k, v in by_line)
    )


def _header(first: str) -> None:
    print(
        f"{first:<14} {'size':>12} {'wall s':>8} "
        + " ".join(f"{s:>8}" for s in STAGE_ORDER)
        + f" {'model':>7} {'peak GiB':>8}"
    )


def _growth(points: list[tuple[float, dict]], what: str) -> None:
    """Per-stage log-log slope between consecutive points."""
    good = [(x, r) for x, r in points if "error" not in r]
    if len(good) < 2:
        return
    print(f"growth exponent k (cost ~ {what}^k) between consecutive points:")
    for stage in ("wall", *STAGE_ORDER):
        ks = []
        for (x0, r0), (x1, r1) in zip(good, good[1:]):
            a = r0["wall"] if stage == "wall" else r0["stages"].get(stage, 0.0)
            b = r1["wall"] if stage == "wall" else r1["stages"].get(stage, 0.0)
            ks.append(f"{math.log(b / a) / math.log(x1 / x0):+.2f}" if a > 0.05 and b > 0.05 else "   -")
        print(f"  {stage:<9} " + "  ".join(ks))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, help="a small zoo folder")
    parser.add_argument("--axis", nargs="+", choices=("params", "facts"), default=["params", "facts"])
    parser.add_argument("--shapes", nargs="+", choices=tuple(SHAPES), default=list(SHAPES))
    parser.add_argument("--retain", nargs="+", type=int, default=[500, 1000, 2000, 4000])
    parser.add_argument("--model", default="npo", help="the zoo's unlearned model for the facts axis")
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per point")
    parser.add_argument(
        "--passes-only",
        action="store_true",
        help="parameters axis: time the model's own passes per token and peak memory instead of "
        "whole audits (for shapes whose audit takes hours on this machine)",
    )
    parser.add_argument("--json", type=Path, help="also write every point here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(pass_costs(spec) if spec.get("passes_only") else child(spec)))
        return 0
    if args.zoo is None:
        parser.error("--zoo is required")
    zoo, d = args.zoo, args.zoo / "data"
    common = {
        "profile": args.profile,
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "forget": str(d / "forget.jsonl"),
        "holdout": str(d / "holdout.jsonl"),
    }
    print(
        f"audits with profile {args.profile}, every line, {args.threads} torch threads, device {args.device}, "
        f"dtype {args.dtype}; load average {os.getloadavg()[0]:.2f}"
    )
    results: dict = {"params": [], "facts": []}
    work = Path(tempfile.mkdtemp(prefix="scaling-"))
    try:
        if "params" in args.axis and args.passes_only:
            print("\nparameters: the model's own passes, per token position (batches of 64 x 16 tokens)")
            print(f"{'shape':<8} {'params':>8} {'load s':>7} {'fwd us/tok':>10} {'train us/tok':>12} {'peak GiB':>9}")
            for shape in args.shapes:
                original, unlearned, n_params = build_pair(shape, zoo / "models" / "original", work)
                row = _run_point(
                    {**common, "original": str(original), "unlearned": str(unlearned), "passes_only": True},
                    args.timeout,
                )
                row.update(shape=shape, params=n_params, embedding_params=count_params(original)[1])
                results["params"].append(row)
                if "error" in row:
                    print(f"{shape:<8} {row['error']}")
                else:
                    print(
                        f"{shape:<8} {n_params / 1e6:>7.1f}M {row['loading']:>7.1f} "
                        f"{row['forward_per_token'] * 1e6:>10.1f} {row['train_step_per_token'] * 1e6:>12.1f} "
                        f"{row['peak_gib']:>9.2f}"
                    )
                shutil.rmtree(original), shutil.rmtree(unlearned)
        elif "params" in args.axis:
            print("\nparameters: random-init GPT-NeoX pairs on the zoo's F / R / H (seconds by stage)")
            _header("shape")
            points = []
            for shape in args.shapes:
                original, unlearned, n_params = build_pair(shape, zoo / "models" / "original", work)
                row = _run_point(
                    {
                        **common,
                        "original": str(original),
                        "unlearned": str(unlearned),
                        "retain": str(d / "retain.jsonl"),
                    },
                    args.timeout,
                )
                row.update(shape=shape, params=n_params, embedding_params=count_params(original)[1])
                _print_point(shape, f"{n_params / 1e6:.1f}M", row)
                results["params"].append(row)
                points.append((n_params, row))
                shutil.rmtree(original), shutil.rmtree(unlearned)
            _growth(points, "parameters")
        if "facts" in args.axis:
            print(f"\nfacts: the zoo pair (original vs {args.model}) with growing R (seconds by stage)")
            _header("R facts")
            points = []
            for n in args.retain:
                path, written = retain_set(zoo, n, work)
                row = _run_point(
                    {
                        **common,
                        "original": str(zoo / "models" / "original"),
                        "unlearned": str(zoo / "models" / args.model),
                        "retain": str(path),
                    },
                    args.timeout,
                )
                total = written + sum(1 for _ in open(d / "forget.jsonl")) + sum(1 for _ in open(d / "holdout.jsonl"))
                params, embedding = count_params(zoo / "models" / "original")
                row.update(retain=written, facts=total, params=params, embedding_params=embedding)
                _print_point(f"R {written}", f"{total} facts", row)
                results["facts"].append(row)
                points.append((total, row))
            _growth(points, "facts")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
