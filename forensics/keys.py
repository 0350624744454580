"""The one key scheme of every cache: a SHA-256 over the canonical JSON of what a result
depends on.

Captured activations (:func:`forensics.capture.cache_key`), finished line results
(:func:`forensics.runner.line_key`) and trained SAEs (:func:`saes.sae.cache_key`) are all
named by :func:`stable_key` of a dict of their inputs (weights hash, data content hash,
configuration, code or format version ...), so a key changes exactly when one of those does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_key(parts: dict[str, Any]) -> str:
    """SHA-256 (64 hex characters) of ``parts`` as JSON with sorted keys; values JSON cannot
    encode (paths, dataclass reprs) enter as their ``repr``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()
