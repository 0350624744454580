"""Benchmark: how many language-model forward passes one audit makes, by (model, set).

Counts every *outermost* call of a language model (a TransformerLens ``HookedTransformer``
or a ``transformers`` ``PreTrainedModel``) during one ``forensics.audit`` of ``--model``
against its original on the zoo's F / R / H, written to a temporary ``--out`` folder as
the command line does (so the audit's own cache folder is in use), and attributes it:

- **model**: ``original`` / ``unlearned`` for the two loaded checkpoints, ``derived`` for
  any other model object (quantized copies, fine-tuned copies of the relearning attack);
- **set**: ``forget`` / ``retain`` / ``holdout`` when the rows of the batch start with the
  prompts of that set (majority over the batch's rows), ``other`` otherwise (SAE training
  text, embeddings fed directly, perturbed inputs).

It prints one row per (model, set): forward calls and rows (prompts) passed, plus the
totals. The counting patches only PyTorch and ``forensics.loading.load_model``, so the same
script measures any version of the audit.

    python benchmarks/forward_passes.py --zoo ZOO [--model npo] [--profile quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
# Run as a script, this folder is sys.path[0] and benchmarks/probes.py would shadow the probes
# package: put the repository root (or whatever PYTHONPATH names) first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE.parent)]


def count_passes(zoo: Path, model: str, profile: str, seed: int = 0) -> dict:
    """Run one audit and return ``{"passes": {(model, set): [calls, rows]}, "verdict": ...}``."""
    import torch
    from torch.nn.modules import module as nn_module
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedModel

    import forensics.loading as loading
    from forensics.data import load_facts

    original = "llama_original" if model.startswith("llama_") else "original"
    data = zoo / "data"
    roles: dict[int, str] = {}
    real_load = loading.load_model

    def load_model(path, *args, **kwargs):
        loaded = real_load(path, *args, **kwargs)
        name = Path(str(path)).name
        roles[id(loaded.model)] = "original" if name == original else "unlearned" if name == model else name
        return loaded

    loading.load_model = load_model
    for mod in list(sys.modules.values()):  # modules that imported the function by name
        if getattr(mod, "load_model", None) is real_load:
            mod.load_model = load_model

    facts = {name: load_facts(data / f"{name}.jsonl")[0] for name in ("forget", "retain", "holdout")}
    tokenizer = loading.load_tokenizer(zoo / "models" / original) if hasattr(loading, "load_tokenizer") else None
    prefixes: dict[tuple[int, ...], str] = {}
    for name, items in facts.items():
        for fact in items:
            prefixes[tuple(tokenizer(fact.prompt)["input_ids"])] = name
    lengths = sorted({len(p) for p in prefixes})

    def set_of(tokens) -> str:
        if not (isinstance(tokens, torch.Tensor) and tokens.dtype == torch.long and tokens.dim() == 2):
            return "other"
        votes = Counter()
        for row in tokens.tolist():
            for n in lengths:
                hit = prefixes.get(tuple(row[:n]))
                if hit:
                    votes[hit] += 1
                    break
            else:
                votes["other"] += 1
        return votes.most_common(1)[0][0]

    counts: dict[tuple[str, str], list[int]] = {}
    depth = [0]

    def pre(module, args, kwargs=None):
        if depth[0] == 0 and isinstance(module, (HookedTransformer, PreTrainedModel)):
            tokens = args[0] if args else (kwargs or {}).get("input", (kwargs or {}).get("input_ids"))
            key = (roles.get(id(module), "derived"), set_of(tokens))
            entry = counts.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += int(tokens.shape[0]) if isinstance(tokens, torch.Tensor) else 0
        depth[0] += 1

    def post(module, args, output):
        depth[0] -= 1

    nn_module.register_module_forward_pre_hook(pre)
    nn_module.register_module_forward_hook(post)
    import forensics

    with tempfile.TemporaryDirectory() as tmp:
        result = forensics.audit(zoo / "models" / original, zoo / "models" / model, data / "forget.jsonl",
                       data / "retain.jsonl", data / "holdout.jsonl", out=Path(tmp) / "report", profile=profile,
                       progress=False, seed=seed, pdf=False)
    return {"passes": {f"{m}/{s}": v for (m, s), v in sorted(counts.items())},
            "verdict": [result.verdict.label, result.verdict.confidence]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--model", default="npo")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args()
    numbers = count_passes(Path(args.zoo), args.model, args.profile)
    print(f"audit of {args.model} ({args.zoo}), profile {args.profile}: verdict {' '.join(numbers['verdict'])}")
    print(f"{'model/set':<24} {'forward calls':>14} {'rows':>8}")
    for key, (calls, rows) in numbers["passes"].items():
        print(f"{key:<24} {calls:>14} {rows:>8}")
    total = [sum(v[i] for v in numbers["passes"].values()) for i in (0, 1)]
    print(f"{'total':<24} {total[0]:>14} {total[1]:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
