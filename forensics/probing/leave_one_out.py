"""Leave-one-out cross-sequence memorisation probe (docs/methods.md §4; "Probe-Geometry
Alignment: Erasing the Cross-Sequence Memorization Signature Below Chance", 2025).

Leave-one-out cross-sequence memorisation probe (``forensics memprobe``; not an audit
line). Pools, aligned by key (the i-th record of each file is key i):
  M: sequences the model memorised; C: matched variants with the distinctive tokens
  swapped (not memorised); B: a further paraphrase (not memorised).

Span: the residual stream at every depth at the sequence's last token, for each sequence
preceded by each of a few neutral prefixes (so each key has several samples).

- *true LOO*: for each held-out key, StandardScaler + LogisticRegression(C=1) trained on
  M-vs-C of the other keys, tested on the held-out key's M and C samples;
- *pure LOO*: the same on C-vs-B (neither memorised: what the procedure finds in
  surface differences alone).

Memorisation gap = true - pure, per depth, averaged over keys, with a bootstrap CI over
keys. The control is a random-initialisation model of the same architecture (same
tokenizer, same procedure): its gap should collapse; the reported effect is the gap
minus the random model's gap, paired by key. With few keys the accuracy moves in steps
of 1/(samples per key): read the CI, not the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forensics.compute.capture import CaptureSpec, capture, resid_hooks
from forensics.compute.stats import bootstrap_mean_ci
from forensics.core.errors import ForensicsInputError
from forensics.probing.batched import Task, fit_predict

NEUTRAL_PREFIXES = ("", "Text: ", "Here is a line. ")


@dataclass
class MemorisationConfig:
    """Settings of the leave-one-out memorisation probe (:func:`memorisation_gap`)."""

    #: Neutral prefixes put before each sequence: one sample per prefix and key.
    prefixes: tuple[str, ...] = NEUTRAL_PREFIXES
    #: Bootstrap resamples over keys for the gap CIs (count).
    n_boot: int = 2000
    #: Seed of the bootstrap draws.
    seed: int = 0
    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: Activation cache folder (None: no disk cache).
    cache_dir: Path | None = None


def sequence_features(loaded, texts: list[str], config: MemorisationConfig) -> np.ndarray:
    """``[n_depths, n_texts, n_prefixes, d_model]`` last-token residuals of every
    ``prefix + text`` (``n_depths = n_layers + 1``: embeddings, then every block's output)."""
    prompts = [prefix + text for text in texts for prefix in config.prefixes]
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
    acts = capture(loaded, prompts, spec, batch_size=config.batch_size, cache_dir=config.cache_dir)
    n_prefixes = len(config.prefixes)
    return np.stack([acts[h].numpy().reshape(len(texts), n_prefixes, -1) for h in spec.hooks])


def loo_accuracy(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per held-out key: accuracy of a probe trained on the other keys' pos-vs-neg samples.

    ``pos``, ``neg``: ``[n_keys, n_samples, d]``. Returns ``[n_keys]``.
    """
    n_keys, d = pos.shape[0], pos.shape[-1]
    X = np.concatenate([pos.reshape(-1, d), neg.reshape(-1, d)])
    key = np.r_[np.repeat(np.arange(n_keys), pos.shape[1]), np.repeat(np.arange(n_keys), neg.shape[1])]
    y = np.r_[np.ones(n_keys * pos.shape[1], dtype=np.int64), np.zeros(n_keys * neg.shape[1], dtype=np.int64)]
    predictions = fit_predict("linear", X, [Task(y, key != k, 1.0) for k in range(n_keys)], 2)  # all keys at once
    return np.array([np.mean(predicted[key == k] == y[key == k]) for k, (predicted,) in enumerate(predictions)])


def memorisation_gap(
    loaded, memorised: list[str], matched: list[str], paraphrase: list[str], config: MemorisationConfig
) -> dict:
    """Per depth: true LOO, pure LOO and their gap (per key), for one model.

    ``memorised`` (M), ``matched`` (C) and ``paraphrase`` (B) are aligned key by key.
    Returns ``{"per_depth": [{"true", "pure", "gap"}: arrays [n_keys]], "n_keys": int}``.
    Raises :class:`forensics.core.errors.ForensicsInputError` when the pools differ in length or
    hold fewer than 3 keys.
    """
    if not (len(memorised) == len(matched) == len(paraphrase)):
        raise ForensicsInputError(
            f"the pools must align key by key: {len(memorised)} memorised, {len(matched)} matched, "
            f"{len(paraphrase)} paraphrase sequences"
        )
    if len(memorised) < 3:
        raise ForensicsInputError(f"the leave-one-out probe needs at least 3 keys, got {len(memorised)}")
    M, C, B = (sequence_features(loaded, pool, config) for pool in (memorised, matched, paraphrase))
    per_depth = []
    for depth in range(M.shape[0]):
        true_loo = loo_accuracy(M[depth], C[depth])
        pure_loo = loo_accuracy(C[depth], B[depth])
        per_depth.append({"true": true_loo, "pure": pure_loo, "gap": true_loo - pure_loo})
    return {"per_depth": per_depth, "n_keys": len(memorised)}


def random_init_twin(loaded, seed: int = 0):
    """A random-initialisation model of the same architecture and tokenizer (the control).

    A :class:`forensics.inputs.loading.LoadedModel` with ``loaded``'s config, tokenizer, device and
    dtype, weights initialised by TransformerLens with ``seed``.
    """
    from transformer_lens import HookedTransformer

    from forensics.inputs.loading import LoadedModel

    cfg = type(loaded.model.cfg)(**{**_init_fields(loaded.model.cfg.to_dict()), "init_weights": True, "seed": seed})
    torch.manual_seed(seed)
    model = HookedTransformer(cfg, tokenizer=loaded.tokenizer, default_padding_side="right", move_to_device=True)
    model.eval()
    return LoadedModel(
        name=f"{loaded.name} (random init)",
        path=loaded.path,
        model=model,
        tokenizer=loaded.tokenizer,
        architecture=loaded.architecture,
        weights_hash=f"random-init-{seed}-{loaded.weights_hash}",
        device=loaded.device,
        dtype=loaded.dtype,
    )


def _init_fields(cfg: dict) -> dict:
    """Config fields accepted by the constructor (derived fields dropped)."""
    import dataclasses

    from transformer_lens import HookedTransformerConfig

    names = {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}
    return {k: v for k, v in cfg.items() if k in names}


def memprobe_table(model_result: dict, control_result: dict, config: MemorisationConfig) -> list[dict]:
    """Per-depth rows: gap in the model and in its random-init control, and their paired difference.

    Inputs: two :func:`memorisation_gap` results over the same keys. Each row: mean true
    and pure LOO accuracy, the gap with its bootstrap CI over keys, the control's gap, and
    gap minus control with its CI (paired by key).
    """
    rows = []
    for depth, (m, c) in enumerate(zip(model_result["per_depth"], control_result["per_depth"])):
        paired = m["gap"] - c["gap"]
        rows.append(
            {
                "depth": depth,
                "true_loo": float(m["true"].mean()),
                "pure_loo": float(m["pure"].mean()),
                "gap": float(m["gap"].mean()),
                "gap_ci": list(bootstrap_mean_ci(m["gap"], config.n_boot, config.seed)),
                "control_gap": float(c["gap"].mean()),
                "gap_minus_control": float(paired.mean()),
                "gap_minus_control_ci": list(bootstrap_mean_ci(paired, config.n_boot, config.seed)),
            }
        )
    return rows


def memprobe_figure(rows: list[dict], title: str) -> bytes:
    """PNG of the memorisation gap per depth (with its CI band) and the random-init control's
    gap; ``rows`` from :func:`memprobe_table`."""
    from forensics.compute.plotting import figure_png, plt

    depth = [r["depth"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(depth, [r["gap"] for r in rows], "o-", label="model: true - pure LOO")
    ax.fill_between(depth, [r["gap_ci"][0] for r in rows], [r["gap_ci"][1] for r in rows], alpha=0.2)
    ax.plot(depth, [r["control_gap"] for r in rows], "s--", label="random-init control")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("memorisation gap")
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    return figure_png(fig)
