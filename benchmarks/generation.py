"""Benchmark: greedy generation of a ``transformers`` model (the zoo's oracle, the quantization
attack) through ``transformers``' cached ``generate`` (:func:`forensics.compute.freetext.greedy_generations`)
against generation without a cache: prompts of equal token length batched together and the whole
sequence recomputed at each new token (the reference kept in ``tests/e2e/test_generation.py``,
which stops a row at EOS only; the code this replaced also stopped it at a newline, so on prompts
whose answers end in a newline the ratio here is larger than the gain over that code). Prints
both wall times, their ratio, and how many generations are identical (the change must keep
every one).

    python benchmarks/generation.py --zoo ZOO [--models original,npo] [--sets forget,holdout]
        [--threads 2] [--dtype float32]

A zoo whose ``zoo.json`` says ``chat_template`` (a real-base zoo) has its prompts rendered in
the model's chat template, as its audits do. Measured on SmolLM2-135M-Instruct's real-base zoo
(2026-12-05, 2 threads, float32): README "Cost".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from forensics.compute.freetext import greedy_generations
    from forensics.inputs.chat import template_of, templated
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_hf_model, load_tokenizer
    from tests.e2e.test_generation import _reference_generations

    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", required=True, type=Path)
    parser.add_argument("--models", default="original,npo")
    parser.add_argument("--sets", default="forget,holdout")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    tokenizer = load_tokenizer(args.zoo / "models" / models[0])
    facts = [f for s in args.sets.split(",") for f in load_facts(args.zoo / "data" / f"{s}.jsonl")[0]]
    zoo_json = args.zoo / "zoo.json"
    if zoo_json.exists() and json.loads(zoo_json.read_text()).get("chat_template") and template_of(tokenizer):
        facts = templated(facts, tokenizer)
    print(f"{len(facts)} prompts, models {', '.join(models)}, {args.dtype}, threads {args.threads}")
    print(f"load average before: {os.getloadavg()}")
    t_new = t_ref = 0.0
    same = total = 0
    for name in models:
        model = load_hf_model(args.zoo / "models" / name, args.dtype).eval()
        t = time.perf_counter()
        new = greedy_generations(model, tokenizer, facts, args.max_new_tokens)
        t_new += time.perf_counter() - t
        t = time.perf_counter()
        ref = _reference_generations(model, tokenizer, facts, args.max_new_tokens)
        t_ref += time.perf_counter() - t
        same += sum(a == b for a, b in zip(new, ref))
        total += len(new)
        print(f"{name}: identical {sum(a == b for a, b in zip(new, ref))}/{len(new)}", flush=True)
    print(f"cached generate: {t_new:8.1f} s")
    print(f"reference:       {t_ref:8.1f} s")
    print(f"ratio reference/cached: {t_ref / t_new:.1f}x; identical generations {same}/{total}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
