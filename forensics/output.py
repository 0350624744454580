"""Output folders that appear whole or not at all.

Commands write into a hidden temporary sibling and rename it into place at the end, so
a failure or a kill never leaves a half-written output folder behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from forensics.errors import ForensicsInputError


def check_output_dir(path: str | Path) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`; raises :class:`ForensicsInputError` when it
    exists and is not an empty folder."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ForensicsInputError(f"output folder {path} already exists and is not empty; choose a new one")
    return path


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
