"""Atomic writes: output folders that appear whole or not at all, and JSON files that are
never read half-written.

Commands write into a hidden temporary sibling and rename it into place at the end, so
a failure or a kill never leaves a half-written output folder behind
(:func:`atomic_output_dir`). Cache entries that several audits may share are written to a
unique temporary file, flushed and renamed (:func:`write_json_atomic`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError


def check_output_dir(path: str | Path) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`; raises :class:`ForensicsInputError` when it
    exists and is not an empty folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ForensicsInputError(f"output folder {path} is a file; choose a new folder")
    if path.exists() and any(path.iterdir()):
        raise ForensicsInputError(f"output folder {path} already exists and is not empty; choose a new one")
    _check_parents(path)
    return path


def check_cache_dir(cache: str | Path, out: Path | None) -> Path:
    """Return ``cache`` as a Path; raises :class:`ForensicsInputError` when it is a file, when
    a parent is a file, or when it lies inside (or is) the output folder ``out``, which is
    written atomically at the end."""
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise ForensicsInputError(f"cache folder {cache} is a file; choose a folder")
    _check_parents(cache)
    if out is not None:
        inner, outer = cache.resolve(), out.resolve()
        if inner == outer or outer in inner.parents:
            raise ForensicsInputError(f"the cache folder {cache} must not be inside the output folder {out}")
    return cache


def _check_parents(path: Path) -> None:
    for parent in path.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ForensicsInputError(f"cannot create {path}: {parent} is a file")
            return


@contextmanager
def atomic_output_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` only if the block succeeds (on any
    exception it is deleted). Raises :class:`ForensicsInputError` as :func:`check_output_dir`."""
    path = check_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a unique temp file, fsync, rename), so two
    audits sharing a cache never read half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is absent, unreadable or not JSON (a cache miss)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
