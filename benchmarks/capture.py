"""Benchmark: activation capture versus a plain forward pass.

Builds (or takes via ``--model``) a checkpoint, loads it with ``forensics.inputs.loading.load_model``
and, on the same prompts, times:

(a) ``forward``: ``model(tokens)`` over pre-tokenised, length-sorted, right-padded batches
    (the same batches capture builds: same batch size, same shard-wise length sorting);
(b) ``capture``: ``forensics.compute.capture.capture`` of the residual stream at every depth
    (``resid_hooks``) at the final token, end to end from the prompt strings (tokenisation,
    batching, hooks, gathering, float32 copy to CPU included);
(c) ``capture+disk``: the same with ``cache_dir`` set (a fresh folder each repetition, so
    every shard is written; safetensors + fsync + rename).

The variants are interleaved chunk by chunk (``--chunk`` prompts: a, b, c on chunk 1,
then b, c, a on chunk 2, ...), each repetition is one pass over all prompts per variant,
and the median pass is reported, so load from other processes affects every variant
alike. Capture runs on each chunk as its own ``capture()`` call (with the disk cache: its
own fresh cache folder, so spec.json and manifest.json are written once per chunk). Ratio = capture time / forward time
(target: at most 1.15).

Default model: random-init GPT-NeoX, 4 layers, d_model 128, 4 heads, vocab ~1000, context
64 (about the project's "small" zoo model), 2,000 prompts of 10-30 tokens, batch 32.

    python benchmarks/capture.py [--model DIR] [--prompts 2000] [--reps 5] [--batch-size 32]
                                 [--chunk 500] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

WORDS = (
    "river stone harbor lantern meadow copper violet winter orchard falcon marble canyon "
    "silver thunder garden forest ember willow crystal velvet shadow summit prairie glacier "
    "anchor beacon cobalt dune fern grove hollow island jasper kettle lagoon mosaic nectar "
    "opal pebble quartz raven saffron tundra umber valley wren yarrow zephyr the a of in "
    "lives works near was born city country capital known for famous plays writes"
).split()


def _vocabulary(n_words: int = 1500, seed: int = 0) -> list[str]:
    """The fixed words plus made-up ones built from syllables, so BPE can fill ~1000 entries."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words = list(WORDS)
    while len(words) < n_words:
        words.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
    return words


def _sentences(n: int, length: int, seed: int = 0):
    rng = random.Random(seed)
    words = _vocabulary()
    for _ in range(n):
        yield [rng.choice(words) for _ in range(length)]


def train_tokenizer(vocab_size: int = 1000):
    """A byte-level BPE tokenizer (the zoo's trainer) on random word sequences."""
    from forensics.zoo.tokenizer import train_tokenizer as train_bpe

    return train_bpe([" ".join(sentence) for sentence in _sentences(2000, 20)], vocab_size)


def build_checkpoint(
    folder: Path, n_layers: int = 4, d_model: int = 128, n_ctx: int = 64, vocab_size: int = 1000, seed: int = 0
) -> Path:
    """A random-init GPT-NeoX checkpoint folder (safetensors + tokenizer)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = train_tokenizer(vocab_size)
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        intermediate_size=4 * d_model,
        max_position_embeddings=n_ctx,
        rotary_pct=0.25,
    )
    model = GPTNeoXForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_prompts(tokenizer, n: int, lo: int = 10, hi: int = 30, seed: int = 0) -> list[str]:
    """Random word prompts whose token counts fall in [lo, hi]."""
    rng = random.Random(seed)
    vocabulary = _vocabulary()
    prompts = []
    while len(prompts) < n:
        target = rng.randint(lo, hi)
        words = []
        text = ""
        while True:
            candidate = " ".join(words + [rng.choice(vocabulary)])
            if len(tokenizer(candidate)["input_ids"]) > target:
                break
            words, text = candidate.split(" "), candidate
        if lo <= len(tokenizer(text)["input_ids"]) <= hi:
            prompts.append(text)
    return prompts


def forward_batches(tokenizer, prompts, batch_size: int, shard_size: int) -> list[torch.Tensor]:
    """The right-padded, shard-wise length-sorted batches capture itself runs."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for lo in range(0, len(prompts), shard_size):
        ids = [list(x) for x in tokenizer(prompts[lo : lo + shard_size])["input_ids"]]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(ids[i]) for i in idx)
            tokens = torch.full((len(idx), width), pad_id, dtype=torch.long)
            for r, i in enumerate(idx):
                tokens[r, : len(ids[i])] = torch.tensor(ids[i])
            batches.append(tokens)
    return batches


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: build a random GPT-NeoX)")
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=500, help="prompts per interleaving step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)

    from forensics.compute.capture import CaptureSpec, capture, resid_hooks
    from forensics.inputs.loading import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="capture-bench-"))
    try:
        folder = args.model or build_checkpoint(workdir / "gpt-neox-small")
        loaded = load_model(folder)
        model, tokenizer = loaded.model, loaded.tokenizer
        prompts = make_prompts(tokenizer, args.prompts)
        lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
        spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
        batches = forward_batches(tokenizer, prompts, args.batch_size, args.shard_size)
        cfg = model.cfg
        print(
            f"model: {loaded.architecture} {folder.name}: {cfg.n_layers} layers, d_model {cfg.d_model}, "
            f"vocab {cfg.d_vocab}, n_ctx {cfg.n_ctx}, dtype {loaded.dtype}, device {loaded.device}"
        )
        print(
            f"data: {len(prompts)} prompts, {min(lengths)}-{max(lengths)} tokens "
            f"(mean {statistics.mean(lengths):.1f}), batch {args.batch_size}, {len(batches)} batches; "
            f"capture: {len(spec.hooks)} hooks ({spec.hooks[0]} .. {spec.hooks[-1]}) at the final token; "
            f"torch threads {torch.get_num_threads()}"
        )

        chunks = [(lo, min(lo + args.chunk, len(prompts))) for lo in range(0, len(prompts), args.chunk)]
        chunk_batches = [
            forward_batches(tokenizer, prompts[lo:hi], args.batch_size, args.shard_size) for lo, hi in chunks
        ]

        def run_forward(c):
            with torch.inference_mode():
                for tokens in chunk_batches[c]:
                    model(tokens)

        def run_capture(c):
            lo, hi = chunks[c]
            capture(loaded, prompts[lo:hi], spec, batch_size=args.batch_size, shard_size=args.shard_size)

        def run_capture_disk(c):
            lo, hi = chunks[c]
            cache = Path(tempfile.mkdtemp(dir=workdir, prefix="cache-"))
            try:
                acts = capture(
                    loaded,
                    prompts[lo:hi],
                    spec,
                    batch_size=args.batch_size,
                    shard_size=args.shard_size,
                    cache_dir=cache,
                )
                assert not acts.from_cache
            finally:
                shutil.rmtree(cache, ignore_errors=True)

        variants = {"forward": run_forward, "capture": run_capture, "capture+disk": run_capture_disk}
        names = list(variants)
        for fn in variants.values():  # warm-up
            fn(0)
        # times[name][rep]: seconds for one pass over all prompts. Within a repetition the
        # variants alternate chunk by chunk (rotating which goes first), so a change in
        # machine load hits all three alike.
        times: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(args.reps):
            total = dict.fromkeys(names, 0.0)
            for c in range(len(chunks)):
                k = (rep + c) % len(names)
                for name in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    variants[name](c)
                    total[name] += time.perf_counter() - t0
            for name in names:
                times[name].append(total[name])
        med = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"repetitions: {args.reps}, interleaved in chunks of {args.chunk} prompts; "
            f"rate from the median pass (min-max seconds per pass over all prompts):"
        )
        for name, t in times.items():
            print(
                f"  {name:13s} {len(prompts) / med[name]:9.0f} prompts/s   "
                f"median {med[name]:.3f}s  ({min(t):.3f}-{max(t):.3f})"
            )
        per_rep = {name: [t / f for t, f in zip(times[name], times["forward"])] for name in ("capture", "capture+disk")}
        for name in ("capture", "capture+disk"):
            print(
                f"ratio {name}/forward: {med[name] / med['forward']:.3f} (per repetition: "
                + ", ".join(f"{r:.3f}" for r in per_rep[name])
                + (")  target <= 1.15" if name == "capture" else ")")
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
