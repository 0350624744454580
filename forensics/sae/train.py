"""Sparse autoencoders on O's residual stream, trained and loaded with SAELens (docs/methods.md §5).

Never a hand-written SAE: the model is SAELens' ``TopKTrainingSAE``, trained by SAELens'
``SAETrainer`` from an in-memory activation iterator (no ``ActivationsStore``, no
network, ``LoggingConfig(log_to_wandb=False)``), saved with ``save_inference_model`` and
read back with ``SAE.load_from_disk`` (SAELens' own format: ``cfg.json`` +
``sae_weights.safetensors``). A user may pass a folder in that format instead
(:attr:`SAETrainConfig.sae_path`); it is checked against the model (``d_in``, hook).

Layer
    The residual stream after block ``layer`` (``blocks.{layer}.hook_resid_post``). The
    default is the layer where O's re-fit attribute probe reads F best
    (:func:`layer_from_probe_curves`, from the ``attribute_probes`` line's details) when
    those curves are given, else the middle of the network: depth ``n_layers // 2``
    counting the embeddings as depth 0, i.e. block ``n_layers // 2 - 1``.

Tokens
    O's residual activations at *every* token (``CaptureSpec(hook, position="all")``) of
    the fact texts (prompt + answer) of F, R, H and of the retain sequences when given.
    The SAE is an unsupervised dictionary of O: it sees F and H so that it has features
    for them (which features are F-specific is decided later, in :mod:`forensics.lines.sae_features`).
    Texts (not tokens) are split 90/10 into training and evaluation texts (seeded); the
    quality numbers are measured on the evaluation tokens only.

Architecture and budget (the defaults)
    TopK (``k = 16``) with ``d_sae = 4 * d_model``; TopK fixes L0 by construction, so no L1
    coefficient has to be tuned per model, and SAELens' auxiliary loss revives dead
    latents. Training: ``training_tokens`` samples (default 300 000, so a small pool of
    tokens is seen many times over) in batches of 512, Adam lr 1e-3 with a short warm-up
    and a linear decay to 10%. Inputs are rescaled to unit expected norm
    (SAELens' ``expected_average_only_in``), folded into the weights at the end.

Quality (:class:`SAEQuality`) and the bar
    On the evaluation tokens: explained variance ``1 - sum|x - x_hat|^2 / sum|x - mean x|^2``,
    mean L0 (active latents per token), and the dead fraction (latents that never fire
    on any token of the whole pool). The SAE is *trustworthy* when explained variance
    >= 0.70 and dead fraction <= 0.50 and mean L0 <= d_in / 4 (sparse enough that a
    latent can be specific to anything). Below the bar the SAE lines report "not
    trustworthy" and do not vote. The bar is ours (docs/methods.md §5 leaves it open): 0.70 is a
    weak reconstruction by production standards, chosen because a tiny model's residual
    stream is dense; the numbers are always reported so a reader can apply a stricter bar.

Cache
    With ``cache_dir``, a trained SAE lives in ``cache_dir/<key>/`` where the key is a
    SHA-256 over the model's weights hash, the hook name, the training config (every
    field that changes the result), the token texts' content hash and the SAELens
    version (the same key memoises SAEs within one process, so the feature and steering
    lines of one audit train one SAE). The folder is written under a temporary name and renamed into place, so a
    partial SAE is never read. Only safetensors and JSON are read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from forensics.compute.capture import CaptureSpec, capture, layer_hook
from forensics.core.errors import ForensicsInputError
from forensics.core.keys import model_identity, stable_key
from forensics.inputs.data import Fact, content_hash

QUALITY_FILE = "forensics_quality.json"
#: Bump when the meaning of a cached SAE changes.
SAE_FORMAT_VERSION = 1


@dataclass
class SAETrainConfig:
    """How to obtain the SAE. ``layer=None``: see :func:`default_layer`."""

    #: Block whose output (``blocks.{layer}.hook_resid_post``) the SAE reads; None: see get_sae.
    layer: int | None = None
    #: Latents per residual dimension: d_sae = expansion * d_model.
    expansion: int = 4
    #: Active latents per token (TopK).
    k: int = 16
    #: Activation vectors (tokens, repeats included) drawn during training.
    training_tokens: int = 300_000
    #: Tokens per training batch.
    batch_size: int = 512
    #: Peak Adam learning rate (short warm-up, linear decay to 10%).
    lr: float = 1e-3
    #: Seed of the initialisation, the batch order and the train / evaluation text split.
    seed: int = 0
    #: Fraction of the texts held out to measure the quality.
    eval_fraction: float = 0.1
    #: Texts per forward pass when capturing activations.
    capture_batch_size: int = 64
    #: Quality bar: minimum explained variance on the evaluation tokens.
    min_explained_variance: float = 0.70
    #: Quality bar: maximum fraction of latents that never fire on the token pool.
    max_dead_fraction: float = 0.50
    #: Quality bar: maximum mean L0 (active latents per token) as a fraction of d_in.
    max_l0_fraction: float = 0.25
    #: A SAELens SAE folder (cfg.json + sae_weights.safetensors) to use instead of training.
    sae_path: Path | None = None

    def training_fields(self) -> dict:
        """The fields that change a trained SAE (the cache key's config part)."""
        out = asdict(self)
        for name in (
            "sae_path",
            "capture_batch_size",
            "min_explained_variance",
            "max_dead_fraction",
            "max_l0_fraction",
        ):
            out.pop(name)
        return out


@dataclass
class SAEQuality:
    """An SAE's quality numbers on the evaluation tokens and whether it passes the bar
    (see the module docstring); ``reason`` says why in one line."""

    explained_variance: float
    mean_l0: float
    dead_fraction: float
    n_eval_tokens: int
    trustworthy: bool
    reason: str

    def to_dict(self) -> dict:
        """The fields as a plain dict (for a line's details)."""
        return asdict(self)


@dataclass
class TrainedSAE:
    """An SAE (SAELens ``SAE``, inference class) with where it reads and how good it is."""

    sae: Any  # sae_lens.SAE
    hook: str
    layer: int
    quality: SAEQuality
    path: Path | None = None
    from_cache: bool = False
    train_seconds: float | None = None
    n_train_tokens: int | None = None

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations ``[..., d_sae]`` of activations ``x`` ``[..., d_in]`` at :attr:`hook`."""
        return self.sae.encode(x.to(self.sae.W_enc.dtype))

    @property
    def decoder(self) -> torch.Tensor:
        """``[d_sae, d_in]`` decoder directions."""
        return self.sae.W_dec.detach()


def default_layer(n_layers: int) -> int:
    """The middle of the network: block ``n_layers // 2 - 1`` (depth ``n_layers // 2``)."""
    return max(0, n_layers // 2 - 1)


def layer_from_probe_curves(rows: Sequence[dict]) -> int | None:
    """The block whose output O's re-fit probe reads F best, from the attribute-probe line's
    ``details["curves"][...]`` rows (depth 0 = embeddings is skipped); None if unusable."""
    try:
        scored = [(r["refit_original"]["difference"], r["depth"]) for r in rows if r["depth"] >= 1]
    except (KeyError, TypeError):
        return None
    if not scored:
        return None
    return max(scored)[1] - 1


def token_texts(
    forget: Sequence[Fact], retain: Sequence[Fact], holdout: Sequence[Fact] | None, sequences: Sequence | None = None
) -> list[str]:
    """The texts whose every token trains the SAE: fact texts of F, R, H, then sequences."""
    texts = [f.prompt + f.answer for f in list(forget) + list(retain) + list(holdout or [])]
    texts += [s.text for s in (sequences or [])]
    return texts


def capture_tokens(
    loaded, texts: Sequence[str], hook: str, batch_size: int = 64, capture_fn=capture
) -> tuple[torch.Tensor, torch.Tensor]:
    """O's activations at every token of ``texts``: (``[n_tokens, d]``, per-text offsets).

    ``capture_fn``: :func:`forensics.compute.capture.capture` or an audit context's ``capture``."""
    acts = capture_fn(loaded, list(texts), CaptureSpec((hook,), position="all"), batch_size=batch_size)
    return acts[hook], acts.token_offsets


def _batches(x: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """An endless iterator of shuffled batches (a fresh permutation every pass): SAELens' DataProvider."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=gen)
        for lo in range(0, len(order) - batch_size + 1, batch_size):
            yield x[order[lo : lo + batch_size]]


def train_sae(x_train: torch.Tensor, config: SAETrainConfig, hook: str, model_name: str = ""):
    """Train a SAELens TopK SAE on ``[n, d]`` activations; returns the trained SAELens
    *training* SAE (``save_inference_model`` turns it into the inference SAE). Raises
    :class:`ForensicsInputError` for fewer than 2 tokens."""
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    if len(x_train) < 2:
        raise ForensicsInputError("too few tokens to train an SAE")
    d_in = x_train.shape[1]
    torch.manual_seed(config.seed)
    cfg = TopKTrainingSAEConfig(
        d_in=d_in,
        d_sae=config.expansion * d_in,
        k=config.k,
        dtype="float32",
        device="cpu",
        normalize_activations="expected_average_only_in",
        metadata=SAEMetadata(model_name=model_name, hook_name=hook),
    )
    sae = TopKTrainingSAE(cfg)
    batch_size = min(config.batch_size, len(x_train))
    steps = max(1, config.training_tokens // batch_size)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=config.lr,
        lr_end=config.lr * 0.1,
        lr_scheduler_name="constant",
        lr_warm_up_steps=max(1, steps // 20),
        lr_decay_steps=max(1, steps // 2),
        device="cpu",
        dead_feature_window=max(1, steps // 4),
        feature_sampling_window=max(1, steps // 4),
        n_batches_for_norm_estimate=min(50, max(1, len(x_train) // batch_size)),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(trainer_cfg, sae, _batches(x_train, batch_size, config.seed))
    _quiet_tqdm(trainer)
    trained = trainer.fit()
    return trained


def _quiet_tqdm(trainer) -> None:
    """SAELens' fit() and its norm estimate open tqdm bars; keep them off the audit's output."""
    from functools import partial

    import sae_lens.training.activation_scaler as scaler_module
    import sae_lens.training.sae_trainer as trainer_module

    for module in cast("tuple[Any, ...]", (trainer_module, scaler_module)):
        if not getattr(module, "_forensics_quiet", False):
            module.tqdm = partial(module.tqdm, disable=True)
            module._forensics_quiet = True


@torch.no_grad()
def measure_quality(sae, x_eval: torch.Tensor, x_all: torch.Tensor, config: SAETrainConfig) -> SAEQuality:
    """Explained variance and mean L0 on ``x_eval``; dead fraction over ``x_all`` (see the bar)."""
    feats = sae.encode(x_eval)
    recon = sae.decode(feats)
    resid = ((x_eval - recon) ** 2).sum()
    total = ((x_eval - x_eval.mean(0)) ** 2).sum()
    ev = float(1 - resid / total) if total > 0 else float("nan")
    l0 = float((feats > 0).sum(-1).float().mean())
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for lo in range(0, len(x_all), 4096):
        fired |= (sae.encode(x_all[lo : lo + 4096]) > 0).any(0)
    dead = float(1 - fired.float().mean())
    d_in = sae.cfg.d_in
    problems = []
    if not ev >= config.min_explained_variance:
        problems.append(f"explained variance {ev:.2f} < {config.min_explained_variance:.2f}")
    if dead > config.max_dead_fraction:
        problems.append(f"dead fraction {dead:.2f} > {config.max_dead_fraction:.2f}")
    if l0 > config.max_l0_fraction * d_in:
        problems.append(f"mean L0 {l0:.1f} > {config.max_l0_fraction:.2f} * d_in")
    ok = not problems
    reason = (
        f"EV {ev:.2f}, L0 {l0:.1f}, dead {dead:.0%}: passes the quality bar"
        if ok
        else "SAE not trustworthy: " + "; ".join(problems)
    )
    return SAEQuality(ev, l0, dead, int(len(x_eval)), ok, reason)


def _split_texts(offsets: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-row masks (train, eval) from a seeded split of *texts* (a text's tokens stay together)."""
    n_texts = len(offsets) - 1
    rng = np.random.default_rng(seed)
    is_eval = np.zeros(n_texts, dtype=bool)
    n_eval = max(1, int(round(fraction * n_texts))) if n_texts > 1 else 0
    is_eval[rng.choice(n_texts, size=n_eval, replace=False)] = True
    lengths = (offsets[1:] - offsets[:-1]).numpy()
    row_eval = torch.from_numpy(np.repeat(is_eval, lengths))
    return ~row_eval, row_eval


def cache_key(model: dict | str, hook: str, config: SAETrainConfig, texts_hash: str) -> str:
    """The SHA-256 (hex) naming a trained SAE: O's identity (``model``:
    :func:`forensics.core.keys.model_identity`, or any string naming it), the hook, the training
    fields of ``config``, the token texts' content hash, the SAELens version and
    :data:`SAE_FORMAT_VERSION`."""
    import sae_lens

    parts = {
        "model": model,
        "hook": hook,
        "config": config.training_fields(),
        "texts": texts_hash,
        "sae_lens": sae_lens.__version__,
        "format": SAE_FORMAT_VERSION,
    }
    return stable_key(parts)


def load_sae_folder(path: str | Path, d_in: int | None = None):
    """A SAELens SAE folder (``cfg.json`` + ``sae_weights.safetensors``) -> SAELens ``SAE``.

    Raises :class:`ForensicsInputError` for a missing or malformed folder, pickle weights,
    or a ``d_in`` that does not match the model.
    """
    from sae_lens import SAE

    folder = Path(path)
    if not folder.is_dir():
        raise ForensicsInputError(f"SAE folder not found: {folder}")
    if not (folder / "cfg.json").is_file() or not (folder / "sae_weights.safetensors").is_file():
        raise ForensicsInputError(f"{folder} is not a SAELens SAE folder (needs cfg.json and sae_weights.safetensors)")
    try:
        json.loads((folder / "cfg.json").read_text(encoding="utf-8"))
        sae = SAE.load_from_disk(str(folder), device="cpu")
    except Exception as err:  # noqa: BLE001 - a malformed user folder is bad input
        text = str(err).strip().splitlines()
        raise ForensicsInputError(
            f"cannot load the SAE in {folder}: {text[0] if text else type(err).__name__}"
        ) from None
    if d_in is not None and sae.cfg.d_in != d_in:
        raise ForensicsInputError(f"the SAE in {folder} reads d_in={sae.cfg.d_in}, but the model's d_model is {d_in}")
    return sae.eval()


def _layer_of_hook(hook: str | None) -> int | None:
    if not hook:
        return None
    parts = hook.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] == "hook_resid_post":
        return int(parts[1])
    return None


def get_sae(
    loaded,
    texts: Sequence[str],
    config: SAETrainConfig | None = None,
    layer: int | None = None,
    capture_fn=capture,
    cache_dir: str | Path | None = None,
    memo: dict[str, tuple[object, Path | None]] | None = None,
) -> TrainedSAE:
    """The SAE for ``loaded`` (O) at ``layer``: the user's folder, the cache, or a fresh training run.

    ``texts``: the token source (:func:`token_texts`). ``layer`` overrides ``config.layer``;
    both None means :func:`default_layer`. A user SAE folder whose metadata names a
    ``blocks.L.hook_resid_post`` hook is used at that layer. ``capture_fn`` captures the
    tokens (:func:`forensics.compute.capture.capture`, or an audit context's shared capture);
    ``cache_dir``: keep the trained SAE there (``sae-<key>/``) and reuse it (the tier shared
    across audits); ``memo``: a dict that keeps SAEs in memory by cache key (an audit context
    passes its own, so that two lines of one audit share one SAE; None: no memo).

    Raises :class:`ForensicsInputError` for a layer outside the model or an unreadable
    user SAE folder.
    """
    import time

    config = config or SAETrainConfig()
    d_model = loaded.model.cfg.d_model
    user_sae = None
    if config.sae_path is not None:
        user_sae = load_sae_folder(config.sae_path, d_in=d_model)
        meta_layer = _layer_of_hook(getattr(user_sae.cfg.metadata, "hook_name", None))
        if layer is None and config.layer is None and meta_layer is not None:
            layer = meta_layer
    layer = layer if layer is not None else config.layer
    layer = default_layer(loaded.n_layers) if layer is None else layer
    if not 0 <= layer < loaded.n_layers:
        raise ForensicsInputError(f"SAE layer {layer} is outside the model's blocks 0..{loaded.n_layers - 1}")
    hook = layer_hook(layer)

    x_all, offsets = capture_tokens(loaded, texts, hook, config.capture_batch_size, capture_fn)
    train_rows, eval_rows = _split_texts(offsets, config.eval_fraction, config.seed)
    if user_sae is not None:
        assert config.sae_path is not None  # user_sae is loaded from it
        quality = measure_quality(user_sae, x_all[eval_rows], x_all, config)
        return TrainedSAE(user_sae, hook, layer, quality, path=Path(config.sae_path), from_cache=True)

    key = cache_key(model_identity(loaded), hook, config, content_hash(list(texts)))
    memo = {} if memo is None else memo
    if key in memo:
        sae, path = memo[key]
        quality = measure_quality(sae, x_all[eval_rows], x_all, config)
        return TrainedSAE(sae, hook, layer, quality, path=path, from_cache=True)
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"sae-{key[:40]}"
        if (folder / QUALITY_FILE).is_file():
            sae = load_sae_folder(folder, d_in=d_model)
            memo[key] = (sae, folder)
            quality = measure_quality(sae, x_all[eval_rows], x_all, config)
            return TrainedSAE(sae, hook, layer, quality, path=folder, from_cache=True)

    start = time.perf_counter()
    trained = train_sae(x_all[train_rows], config, hook, model_name=loaded.name)
    seconds = time.perf_counter() - start
    n_train = int(train_rows.sum())
    if folder is not None:
        _save_atomic(
            trained,
            folder,
            {
                "hook": hook,
                "layer": layer,
                "train_seconds": seconds,
                "n_train_tokens": n_train,
                "config": config.training_fields(),
            },
        )
        sae = load_sae_folder(folder, d_in=d_model)
    else:
        sae = _to_inference(trained)
    memo[key] = (sae, folder)
    quality = measure_quality(sae, x_all[eval_rows], x_all, config)
    return TrainedSAE(
        sae, hook, layer, quality, path=folder, from_cache=False, train_seconds=seconds, n_train_tokens=n_train
    )


def _to_inference(trained):
    """The SAELens inference SAE of a training SAE, through SAELens' own save/load."""
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        return load_sae_folder(tmp)


def _save_atomic(trained, folder: Path, info: dict) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        trained.save_inference_model(tmp)
        (tmp / QUALITY_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")
        if folder.exists():  # a concurrent writer finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
