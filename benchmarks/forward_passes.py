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
totals. The counting patches only PyTorch and ``forensics.inputs.loading.load_model``, so the same
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
# Run as a script, this folder is sys.path[0]: drop it and fall back on the repository root
# (or whatever PYTHONPATH names first).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE.parent)]


class PassCounter:
    """Counts outermost language-model forward calls by (model, set); see the module docstring.

    ``roles`` maps ``id(model)`` to a role name (filled by :meth:`watch_loading`); ``prefixes``
    maps each fact prompt's token ids to its set. :meth:`install` registers the global hooks.
    """

    def __init__(self, zoo: Path, original: str, unlearned: str):
        from forensics.inputs.data import load_facts
        from forensics.inputs.loading import load_tokenizer

        self.original, self.unlearned = original, unlearned
        self.roles: dict[int, str] = {}
        self.counts: dict[tuple[str, str], list[int]] = {}
        tokenizer = load_tokenizer(zoo / "models" / original)
        self.prefixes: dict[tuple[int, ...], str] = {}
        for name in ("forget", "retain", "holdout"):
            for fact in load_facts(zoo / "data" / f"{name}.jsonl")[0]:
                self.prefixes[tuple(tokenizer(fact.prompt)["input_ids"])] = name
        self.lengths = sorted({len(p) for p in self.prefixes})
        self._depth = 0

    def watch_loading(self) -> None:
        """Wrap ``forensics.inputs.loading.load_model`` so the loaded O and U are recognised."""
        import forensics.inputs.loading as loading

        real = loading.load_model

        def load_model(path, *args, **kwargs):
            loaded = real(path, *args, **kwargs)
            name = Path(str(path)).name
            self.roles[id(loaded.model)] = (
                "original" if name == self.original else "unlearned" if name == self.unlearned else name
            )
            return loaded

        for mod in [loading] + list(sys.modules.values()):
            if getattr(mod, "load_model", None) is real:
                mod.load_model = load_model

    def set_of(self, tokens) -> str:
        """The set whose prompts start most rows of ``tokens`` (``other`` when none)."""
        import torch

        if not (isinstance(tokens, torch.Tensor) and tokens.dtype == torch.long and tokens.dim() == 2):
            return "other"
        votes: Counter = Counter()
        for row in tokens.tolist():
            hit = next(
                (self.prefixes[tuple(row[:n])] for n in self.lengths if tuple(row[:n]) in self.prefixes), "other"
            )
            votes[hit] += 1
        return votes.most_common(1)[0][0]

    def install(self) -> None:
        """Register the global forward hooks that count LM calls."""
        from torch.nn.modules import module as nn_module
        from transformer_lens import HookedTransformer
        from transformers import PreTrainedModel

        def pre(module, args):
            if self._depth == 0 and isinstance(module, (HookedTransformer, PreTrainedModel)):
                tokens = args[0] if args else None
                entry = self.counts.setdefault((self.roles.get(id(module), "derived"), self.set_of(tokens)), [0, 0])
                entry[0] += 1
                entry[1] += int(tokens.shape[0]) if hasattr(tokens, "shape") else 0
            self._depth += 1

        def post(module, args, output):
            self._depth -= 1

        nn_module.register_module_forward_pre_hook(pre)
        nn_module.register_module_forward_hook(post)

    def table(self) -> str:
        """The counts as a text table, one row per (model, set), plus the total."""
        rows = [f"{'model/set':<24} {'forward calls':>14} {'rows':>8}"]
        for (model, name), (calls, n_rows) in sorted(self.counts.items()):
            rows.append(f"{model + '/' + name:<24} {calls:>14} {n_rows:>8}")
        total = [sum(v[i] for v in self.counts.values()) for i in (0, 1)]
        rows.append(f"{'total':<24} {total[0]:>14} {total[1]:>8}")
        return "\n".join(rows)


def count_passes(zoo: Path, model: str, profile: str, seed: int = 0) -> dict:
    """Run one audit and return ``{"passes": {"model/set": [calls, rows]}, "verdict": [label, confidence]}``."""
    original = "llama_original" if model.startswith("llama_") else "original"
    counter = PassCounter(zoo, original, model)
    counter.watch_loading()
    counter.install()
    import forensics

    data = zoo / "data"
    with tempfile.TemporaryDirectory() as tmp:
        result = forensics.audit(
            zoo / "models" / original,
            zoo / "models" / model,
            data / "forget.jsonl",
            data / "retain.jsonl",
            data / "holdout.jsonl",
            out=Path(tmp) / "report",
            profile=profile,
            progress=False,
            seed=seed,
            pdf=False,
        )
    return {
        "passes": {f"{m}/{s}": v for (m, s), v in sorted(counter.counts.items())},
        "verdict": [result.verdict.label, result.verdict.confidence],
        "table": counter.table(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--model", default="npo")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--json", help="also write the counts here")
    args = parser.parse_args()
    numbers = count_passes(Path(args.zoo), args.model, args.profile)
    print(f"audit of {args.model} ({args.zoo}), profile {args.profile}: verdict {' '.join(numbers['verdict'])}")
    print(numbers.pop("table"))
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
