"""The on-disk activation store: cache keys, safetensors shards, manifests, atomic writes
(see "Disk cache" in :mod:`forensics.compute.capture`). Only safetensors and JSON are ever read."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from forensics.core.keys import model_config_hash, stable_key, tokenizer_hash
from forensics.inputs.data import content_hash

if TYPE_CHECKING:
    from forensics.compute.capture.spec import CaptureSpec

#: Bump when the on-disk layout or the meaning of a cached tensor changes.
CACHE_FORMAT_VERSION = 2  # 2: a doubled BOS is captured as one
MANIFEST = "manifest.json"
SPEC_FILE = "spec.json"
#: Tensor names in a shard that are not hooks (hook names never start with "meta.").
META_LENGTHS = "meta.prompt_lengths"
META_POSITIONS = "meta.positions"


def data_hash(prompts: Sequence[str], subjects: Sequence[str | None] | None, position: str) -> str:
    """Content hash of what is fed to the model (subjects only count for position='subject')."""
    if position == "subject":
        return content_hash(json.dumps([p, s], ensure_ascii=False) for p, s in zip(prompts, subjects or []))
    return content_hash(prompts)


def cache_key_parts(
    loaded,
    prompts: Sequence[str],
    spec: CaptureSpec,
    subjects: Sequence[str | None] | None = None,
    shard_size: int = 512,
) -> dict:
    """Everything a cached capture depends on (written to ``spec.json`` in its folder)."""
    model = loaded.model
    return {
        "format": CACHE_FORMAT_VERSION,
        "weights_hash": loaded.weights_hash,
        "model_config_hash": model_config_hash(model),
        "dtype": str(model.cfg.dtype).removeprefix("torch."),
        "device_type": torch.device(model.cfg.device).type,
        "tokenizer_hash": tokenizer_hash(loaded.tokenizer),
        "data_hash": data_hash(prompts, subjects, spec.position),
        "n_prompts": len(prompts),
        "hooks": list(spec.hooks),
        "position": spec.position,
        "shard_size": shard_size,
        "stored_dtype": "float32",
    }


def cache_key(
    loaded,
    prompts: Sequence[str],
    spec: CaptureSpec,
    subjects: Sequence[str | None] | None = None,
    shard_size: int = 512,
) -> str:
    """The SHA-256 naming a capture's cache folder (see the module docstring)."""
    parts = cache_key_parts(loaded, prompts, spec, subjects, shard_size)
    return stable_key(parts)


# --------------------------------------------------------------------------- disk I/O


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(target: Path, write) -> None:
    """Write via ``write(tmp_path)`` to a temp file next to ``target``, fsync, then rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)


def _write_shard(path: Path, tensors: dict[str, torch.Tensor], key: str, start: int, stop: int) -> None:
    from safetensors.torch import save_file

    metadata = {"key": key, "start": str(start), "stop": str(stop)}
    contiguous = {name: t.contiguous() for name, t in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(contiguous, tmp, metadata=metadata))


def _shard_is_valid(path: Path, key: str, start: int, stop: int, hooks: Sequence[str], n_rows: int | None) -> bool:
    """A finished shard of this capture: opens cleanly, right key, range, hooks and row counts."""
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("key") != key or meta.get("start") != str(start) or meta.get("stop") != str(stop):
                return False
            names = set(handle.keys())
            if not set(hooks) | {META_LENGTHS, META_POSITIONS} <= names:
                return False
            lengths_shape = handle.get_slice(META_LENGTHS).get_shape()
            if lengths_shape != [stop - start]:
                return False
            if n_rows is not None:
                expected = n_rows
            else:
                expected = int(handle.get_tensor(META_LENGTHS).sum())
            for hook in hooks:
                shape = handle.get_slice(hook).get_shape()
                if len(shape) != 2 or shape[0] != expected:
                    return False
    except Exception:  # noqa: BLE001 - any unreadable shard is simply recomputed
        return False
    return True


def _read_meta(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors import safe_open

    lengths, positions = [], []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            lengths.append(handle.get_tensor(META_LENGTHS))
            positions.append(handle.get_tensor(META_POSITIONS))
    if not files:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(lengths), torch.cat(positions)


def _concat_shards(files: list[Path], hook: str) -> torch.Tensor:
    from safetensors import safe_open

    pieces = []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            pieces.append(handle.get_tensor(hook))
    if len(pieces) == 1:
        return pieces[0]
    return torch.cat(pieces) if pieces else torch.zeros((0, 0), dtype=torch.float32)


def _load_manifest(folder: Path, key: str) -> list[Path] | None:
    """The shard files of a complete capture, or None when the folder holds no valid one."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if manifest.get("key") != key:
        return None
    files = []
    for shard in manifest.get("shards", []):
        path = folder / shard["file"]
        try:
            if path.stat().st_size != shard["bytes"]:
                return None
        except (OSError, KeyError, TypeError):
            return None
        files.append(path)
    return files
