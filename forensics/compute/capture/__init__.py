"""Activation capture (docs/methods.md §2): residual streams at chosen token positions.

What is captured
    Any TransformerLens hook point whose activation is ``[batch, pos, d]`` (the residual
    stream ``blocks.{l}.hook_resid_pre`` / ``hook_resid_mid`` / ``hook_resid_post``,
    ``hook_embed``, ``blocks.{l}.hook_mlp_out``, ``ln_final.hook_normalized`` ...), at one
    of three positions per prompt:

    * ``"final"``: the prompt's last token (where the model predicts the answer);
    * ``"subject"``: the last token of the fact's ``subject`` inside the prompt. The
      subject's *first* occurrence in the prompt string is located, and the last token
      whose character span (fast tokenizer offset mapping) overlaps it is taken. When the
      subject ends inside a token (``"Zorb"`` in ``"Zorbil"``), that token is taken;
    * ``"all"``: every real token of every prompt (no pad), stored ragged: one
      ``[total_tokens, d]`` tensor per hook plus ``token_offsets`` (``n_prompts + 1``
      int64), so prompt ``i``'s tokens are rows ``token_offsets[i]:token_offsets[i+1]``.

    :func:`resid_hooks` names the whole residual stream: the input to block 0 (the
    embeddings, plus positional embeddings for GPT-2) and the output of every block.

Tokenisation
    Exactly as :func:`forensics.compute.scoring.encode_facts` tokenises a prompt:
    ``tokenizer(prompt)`` with the tokenizer's own special-token settings (a Llama
    tokenizer adds its BOS itself), so captured positions align with behaviour scoring.

Batching and padding
    Prompts are grouped into shards of ``shard_size`` consecutive prompts; inside a shard
    they are sorted by length and run in right-padded batches. Right padding is safe for a
    causal model: real positions never attend to later (pad) positions and their position
    indices start at 0 as if unpadded, so no attention mask is needed (and none is passed:
    the forward pass is told ``padding_side="right"`` so TransformerLens never builds one).
    Batched and one-by-one capture agree to float rounding (tested at 1e-5 for every
    supported architecture).

Cost
    Hooks are registered once for the whole capture, only on the requested hook points;
    each hook gathers the chosen positions (``act[rows, cols]``, a ``[k, d]`` copy) so no
    full ``[batch, pos, d]`` activation outlives its hook; the gathered slices go to CPU as
    float32 at the end of each batch (one transfer per hook and batch, which keeps a GPU's
    queue full). The forward pass stops after the last block that holds a requested hook
    (``stop_at_layer``), which also skips the final norm and the unembedding when only
    block hooks are asked for. Activations are computed in the model's dtype and stored
    as float32.

Disk cache
    With ``cache_dir`` set, a capture lives in ``cache_dir/<key>/`` where the key is a
    SHA-256 over: the model's weights hash, its TransformerLens config (minus names and
    device count), dtype and device type; the tokenizer (vocabulary and full backend
    serialisation); the prompts' (and subjects') content hash; the hooks, the position
    mode and the shard size; and a format version. Each shard of ``shard_size`` prompts
    is written as one safetensors file as soon as it is complete (temp file in the same
    folder, fsync, ``os.replace``), so peak memory does not grow with the number of
    prompts. ``manifest.json`` is written last, the same way. A folder with a valid
    manifest is read back without running the model. A folder without one is an
    interrupted capture: shards that open cleanly and carry the right key and row counts
    are reused, the rest are recomputed. A half-written shard can only exist under a
    ``.tmp`` name and is never read. Only safetensors and JSON are ever read: no pickle.
    A cache-backed :class:`Activations` reads a hook's shards from disk on each access
    (keep the tensor you need rather than indexing repeatedly).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch

from forensics.compute.capture.runner import (
    _capture_in_memory,
    _check_subjects,
    _encode,
    _resolve_hooks,
    _run_shard,
)
from forensics.compute.capture.spec import (
    POSITIONS,
    Activations,
    CaptureSpec,
    Position,
    layer_hook,
    resid_hooks,
    spread,
    spread_text,
)
from forensics.compute.capture.store import (
    MANIFEST,
    META_LENGTHS,
    META_POSITIONS,
    SPEC_FILE,
    _atomic_write,
    _load_manifest,
    _read_meta,
    _shard_is_valid,
    _shard_name,
    _write_shard,
    cache_key,
    cache_key_parts,
    tokenizer_hash,
)
from forensics.core.errors import ForensicsInputError
from forensics.core.keys import stable_key
from forensics.inputs.data import Fact

__all__ = [
    "Activations",
    "CaptureSpec",
    "POSITIONS",
    "Position",
    "cache_key",
    "capture",
    "capture_facts",
    "layer_hook",
    "resid_hooks",
    "spread",
    "spread_text",
    "tokenizer_hash",
]


# --------------------------------------------------------------------------- the API


def capture(
    loaded,
    prompts: Sequence[str],
    spec: CaptureSpec,
    subjects: Sequence[str | None] | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    shard_size: int = 512,
) -> Activations:
    """Capture ``spec.hooks`` at ``spec.position`` for every prompt.

    ``loaded``: a :class:`forensics.inputs.loading.LoadedModel`. ``subjects``: one per prompt, for
    ``position="subject"`` (ignored otherwise). ``batch_size``: prompts per forward pass.
    ``cache_dir``: keep (and reuse, and resume) the capture on disk there; without it the
    result is held in memory. ``shard_size``: prompts per shard (the unit of streaming to
    disk, of resuming, and of length-sorting). Returns :class:`Activations` with rows in
    the order of ``prompts``.

    Raises :class:`ForensicsInputError` for an unknown hook, a hook that is not
    ``[batch, pos, d]``, a missing subject or one not found in its prompt, an empty
    prompt, or one longer than the model's context.
    """
    prompts = list(prompts)
    if not isinstance(spec, CaptureSpec):
        raise ForensicsInputError("spec must be a CaptureSpec")
    if batch_size < 1 or shard_size < 1:
        raise ForensicsInputError("batch_size and shard_size must be at least 1")
    if any(not isinstance(p, str) for p in prompts):
        raise ForensicsInputError("prompts must be strings")
    if spec.position == "subject":
        _check_subjects(prompts, subjects)
        assert subjects is not None  # _check_subjects raises without them
        subjects = cast("list[str]", list(subjects))  # _check_subjects: all strings
    else:
        subjects = None
    model, tokenizer = loaded.model, loaded.tokenizer
    stop_at_layer = _resolve_hooks(model, spec.hooks)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(prompts)
    bounds = [(lo, min(lo + shard_size, n)) for lo in range(0, n, shard_size)]

    if n == 0:  # nothing to run or cache; d_model columns (exact for residual-stream hooks)
        empty = {hook: torch.zeros((0, model.cfg.d_model), dtype=torch.float32) for hook in spec.hooks}
        none = torch.zeros(0, dtype=torch.int64)
        return Activations(spec, none, None if spec.position == "all" else none, tensors=empty)

    folder: Path | None = None
    key = ""
    if cache_dir is not None:
        parts = cache_key_parts(loaded, prompts, spec, subjects, shard_size)
        key = stable_key(parts)
        folder = Path(cache_dir) / key[:40]
        files = _load_manifest(folder, key)
        if files is not None:
            lengths, positions = _read_meta(files)
            return Activations(
                spec,
                lengths,
                None if spec.position == "all" else positions,
                shard_files=files,
                cache_path=folder,
                from_cache=True,
            )
        folder.mkdir(parents=True, exist_ok=True)
        spec_file = folder / SPEC_FILE
        if not spec_file.is_file():
            text = json.dumps({"key": key, **parts}, indent=2)
            _atomic_write(spec_file, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="capture", unit="prompt")
    shard_records = []
    try:
        # no_grad rather than inference_mode: inference-mode tensors could not later enter
        # autograd (say, as inputs of a torch probe being trained).
        with torch.no_grad():
            if folder is None:
                return _capture_in_memory(
                    model, tokenizer, prompts, subjects, spec, bounds, batch_size, stop_at_layer, pad_id, bar
                )
            for index, (lo, hi) in enumerate(bounds):
                path = folder / _shard_name(index)
                if _shard_is_valid(path, key, lo, hi, spec.hooks, None if spec.position == "all" else hi - lo):
                    if bar is not None:
                        bar.update(hi - lo)
                else:
                    encoded = _encode(
                        tokenizer,
                        prompts[lo:hi],
                        subjects[lo:hi] if subjects else None,
                        spec.position,
                        model.cfg.n_ctx,
                        lo,
                    )
                    result = _run_shard(
                        model, encoded, spec.hooks, spec.position, batch_size, stop_at_layer, pad_id, bar
                    )
                    result[META_LENGTHS] = torch.tensor([len(r) for r in encoded.ids], dtype=torch.int64)
                    result[META_POSITIONS] = torch.tensor(encoded.positions, dtype=torch.int64)
                    _write_shard(path, result, key, lo, hi)
                    del result, encoded
                shard_records.append({"file": path.name, "start": lo, "stop": hi, "bytes": path.stat().st_size})
    finally:
        if bar is not None:
            bar.close()

    manifest = {
        "key": key,
        "n_prompts": n,
        "hooks": list(spec.hooks),
        "position": spec.position,
        "shards": shard_records,
    }
    text = json.dumps(manifest, indent=1)
    _atomic_write(folder / MANIFEST, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    files = [folder / r["file"] for r in shard_records]
    lengths, positions = _read_meta(files)
    return Activations(
        spec,
        lengths,
        None if spec.position == "all" else positions,
        shard_files=files,
        cache_path=folder,
        from_cache=False,
    )


def capture_facts(
    loaded,
    facts: Sequence[Fact],
    spec: CaptureSpec,
    **kwargs,
) -> Activations:
    """:func:`capture` on fact prompts (their ``subject`` for ``position="subject"``)."""
    prompts = [f.prompt for f in facts]
    subjects = [f.subject for f in facts] if spec.position == "subject" else None
    return capture(loaded, prompts, spec, subjects=subjects, **kwargs)
