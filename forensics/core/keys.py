"""The one key scheme of every cache: a SHA-256 over the canonical JSON of what a result
depends on.

Captured activations (:func:`forensics.compute.capture.cache_key`), finished line results
(:func:`forensics.core.runner.line_key`) and trained SAEs (:func:`forensics.sae.train.cache_key`) are all
named by :func:`stable_key` of a dict of their inputs (weights hash, data content hash,
configuration, code or format version ...), so a key changes exactly when one of those does.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

#: Packages whose source makes up :func:`code_version`.
SOURCE_PACKAGES = ("forensics",)
#: Distributions whose versions make up :func:`code_version`.
DEPENDENCIES = ("torch", "transformer-lens", "sae-lens", "transformers", "scikit-learn", "numpy")


def stable_key(parts: dict[str, Any]) -> str:
    """SHA-256 (64 hex characters) of ``parts`` as JSON with sorted keys; values JSON cannot
    encode (paths, dataclass reprs) enter as their ``repr``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """SHA-256 of a tokenizer's vocabulary and (fast tokenizers) full backend definition."""
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    for attr in ("add_bos_token", "add_eos_token", "bos_token_id", "eos_token_id"):
        digest.update(f"{attr}={getattr(tokenizer, attr, None)!r};".encode())
    return digest.hexdigest()


def model_config_hash(model) -> str:
    """SHA-256 of a TransformerLens model's config, without names and device placement."""
    cfg = model.cfg.to_dict() if hasattr(model.cfg, "to_dict") else dict(vars(model.cfg))
    skip = {"model_name", "tokenizer_name", "device", "n_devices"}
    cleaned = {k: v for k, v in cfg.items() if k not in skip}
    return hashlib.sha256(json.dumps(cleaned, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(loaded) -> dict[str, Any]:
    """What a loaded model's results depend on besides its inputs: the weights file hash, the
    model config, the computation dtype, the device type and the tokenizer."""
    import torch

    model = loaded.model
    return {
        "weights": loaded.weights_hash,
        "config": model_config_hash(model),
        "dtype": str(model.cfg.dtype).removeprefix("torch."),
        "device_type": torch.device(model.cfg.device).type,
        "tokenizer": tokenizer_hash(loaded.tokenizer),
    }


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 of every source file of this distribution's packages and of the versions of the
    numerical dependencies: a result cached under an older code or library version is never
    served by a newer one."""
    from importlib import metadata

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    for name in DEPENDENCIES:
        try:
            digest.update(f"{name}={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none;".encode())
    return digest.hexdigest()
