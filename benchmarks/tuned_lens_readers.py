"""The tuned lens read two ways on one zoo seed: U's states through O's translators and O's head (the
line's ``reader="original"``) and through U's own translators and head (``reader="own"``); the mean
reciprocal rank of the key's first token on F and on H at every depth, per model.

    python benchmarks/tuned_lens_readers.py ZOO_SEED_DIR MODEL [MODEL ...]

``ZOO_SEED_DIR``: one seed's zoo folder (``data/`` and ``models/``); each model is read against the
folder's ``original``, with the line's default settings (:class:`TunedLensConfig`), one torch thread.
Prints one line a model: ``d<depth> F/H`` for each reader. Used by
docs/results/2026-12-06-tuned-lens-reader.md.
"""

from __future__ import annotations

import sys

import torch

from forensics.compute.lens import lens_scores
from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model
from forensics.lines.tuned_lens import TunedLensConfig


def main(zoo: str, names: list[str]) -> None:
    torch.set_num_threads(1)
    sets = {s: load_facts(f"{zoo}/data/{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    original = load_model(f"{zoo}/models/original")
    config = TunedLensConfig()
    for name in names:
        unlearned = load_model(f"{zoo}/models/{name}")
        ctx = AuditContext(original, unlearned, **sets)
        readers = {
            "O's lens": (ctx.tuned_lens(config).translate, original),
            "U's own lens": (ctx.tuned_lens(config, unlearned).translate, unlearned),
        }
        row = [name]
        for label, (translate, head) in readers.items():
            f, h = (
                lens_scores(ctx, unlearned, sets[s], config, translate=translate, head=head)["reciprocal_rank"]
                for s in ("forget", "holdout")
            )
            row.append(f"{label}: " + " ".join(f"d{d} {f[d].mean():.3f}/{h[d].mean():.3f}" for d in range(f.shape[0])))
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print("usage: python benchmarks/tuned_lens_readers.py ZOO_SEED_DIR MODEL [MODEL ...]")
        raise SystemExit(2)
    main(sys.argv[1], sys.argv[2:])
