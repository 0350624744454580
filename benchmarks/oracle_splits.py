"""The zoo oracle's relearning fine-tune on the oracle's own split of F and on the splits the
relearning attack draws: how much of a gap between an audit's deletion bound and the oracle's
recovery is which subjects land in the fine-tuned half.

    python benchmarks/oracle_splits.py ZOO_SEED_FOLDER MODEL [MODEL ...] [--seeds 0,1]

``ZOO_SEED_FOLDER``: one seed of a built zoo (``models/``, ``data/``). For each model, greedy
accuracy on the held-out half before and after :func:`forensics.zoo.oracle.relearn_probe` (the
oracle's budget, one direction) on the oracle's split (:func:`forensics.zoo.oracle.split_forget`),
on the attack's splits of F (:func:`forensics.compute.relearning.split_by_subject` with each seed)
and of H (seed + 10000, as the attack draws them). Used in
docs/results/2026-12-06-two-splits.md (closed zoo seed 3, ``retrain`` and ``npo``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from forensics.compute.relearning import split_by_subject
from forensics.inputs.data import load_facts
from forensics.zoo.oracle import OracleConfig, relearn_probe, split_forget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zoo", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--seeds", default="0,1", help="the attack's split seeds (comma-separated)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = OracleConfig()
    tokenizer = AutoTokenizer.from_pretrained(args.zoo / "models" / "original")
    forget, _ = load_facts(args.zoo / "data" / "forget.jsonl")
    holdout, _ = load_facts(args.zoo / "data" / "holdout.jsonl")
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = [("oracle's split of F", split_forget(forget))]
    splits += [(f"F, attack split {s}", split_by_subject(forget, s)) for s in seeds]
    splits += [(f"H, attack split {s}", split_by_subject(holdout, s + 10_000)) for s in seeds]
    for name in args.models:
        model = AutoModelForCausalLM.from_pretrained(args.zoo / "models" / name).eval()
        for label, (tuned, held_out) in splits:
            probe = relearn_probe(model, tokenizer, tuned, held_out, config)
            print(f"{name:16s} {label:20s} {probe['before'].mean():.3f} -> {probe['after'].mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
