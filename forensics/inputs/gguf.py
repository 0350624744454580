"""GGUF input: a ``.gguf`` file (the format llama.cpp, Ollama and LM Studio ship) read through
``transformers``' own GGUF support and audited as the checkpoint it dequantizes to.

:func:`gguf_file` says whether a model path names a GGUF file (the file itself, or a folder
with no ``config.json`` that holds exactly one). :func:`materialize` has ``transformers``
(``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package) dequantize it to
float32 once and saves the result as an ordinary safetensors checkpoint folder (config,
weights, tokenizer) in the GGUF cache (``$FORENSICS_GGUF_CACHE``, default
``~/.cache/unlearning-forensics/gguf``), under the file's SHA-256, written atomically and
reused afterwards. The audit then loads that folder as any checkpoint
(:func:`forensics.inputs.loading.load_model`), so its load agreement check compares the
hooked model with ``transformers``' own load of the same file; the weights hash is the GGUF
file's, and the report says what was loaded (:func:`describe`). A file ``transformers`` cannot
read (an architecture or quantization type it does not support, a damaged file) is a
one-line :class:`ForensicsInputError`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError

#: What the conversion folder records about its source.
SOURCE_FILE = "gguf_source.json"


def gguf_file(path: str | Path) -> Path | None:
    """The GGUF file ``path`` names: ``path`` itself when it is a ``.gguf`` file, or the one
    ``.gguf`` file in a folder that has no ``config.json``; None otherwise. Raises
    :class:`ForensicsInputError` for a folder with several GGUF files (which one is a guess)."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(found) > 1:
        raise ForensicsInputError(
            f"{path} holds {len(found)} GGUF files ({', '.join(p.name for p in found)}); give the file itself"
        )
    return found[0] if found else None


def file_sha256(file: Path) -> str:
    """SHA-256 of the file's name and bytes (the scheme of
    :func:`forensics.inputs.loading.weights_hash`)."""
    digest = hashlib.sha256()
    digest.update(file.name.encode())
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(file: Path) -> dict[str, Any]:
    """What the report says about a GGUF file: its architecture (``general.architecture``), its
    quantization (the file type, else the commonest tensor type that is not F32/F16) and its
    tensor types with counts. Raises :class:`ForensicsInputError` for a file that is not GGUF, is
    cut short, or holds no model (no tensors, or no ``general.architecture``)."""
    reader = _reader(file)
    types = Counter(t.tensor_type.name for t in reader.tensors)
    field = reader.fields.get("general.architecture")
    if field is None or not types:
        missing = "no tensors" if not types else "no general.architecture"
        raise ForensicsInputError(f"{file} is not a readable GGUF file ({missing}: it holds no model)")
    architecture = str(field.contents())
    quantized = [name for name, _ in types.most_common() if name not in ("F32", "F16", "BF16")]
    quantization = quantized[0] if quantized else (types.most_common(1)[0][0] if types else "none")
    return {
        "format": "GGUF",
        "file": file.name,
        "architecture": architecture,
        "quantization": quantization,
        "tensor_types": dict(sorted(types.items())),
        "loaded_as": "dequantized to float32 by transformers",
    }


def _reader(file: Path):
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ForensicsInputError("reading GGUF files needs the gguf package (pip install gguf)") from None
    try:
        return GGUFReader(str(file))
    except Exception as err:  # noqa: BLE001 - any failure to parse is a bad file
        raise ForensicsInputError(f"{file} is not a readable GGUF file ({_first_line(err)})") from None


def cache_root() -> Path:
    """Where converted GGUF files are kept: ``$FORENSICS_GGUF_CACHE`` or
    ``~/.cache/unlearning-forensics/gguf``."""
    env = os.environ.get("FORENSICS_GGUF_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "unlearning-forensics" / "gguf"


def materialize(file: Path) -> Path:
    """The safetensors checkpoint folder ``transformers`` makes of ``file`` (see the module
    docstring), built on first use. Raises :class:`ForensicsInputError` for a file that cannot be
    read or an architecture the audit does not support."""
    from forensics.inputs.families import SUPPORTED_ARCHITECTURES

    description = describe(file)
    sha = file_sha256(file)
    folder = cache_root() / sha[:32]
    marker = folder / SOURCE_FILE
    if marker.is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm")  # noqa: B009 - not exported; patched for the load only
    setattr(gguf_utils, "tqdm", functools.partial(bar, disable=True))  # noqa: B010  # transformers' own bar over the tensors
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(file.parent), gguf_file=file.name, local_files_only=True, dtype=torch.float32
        )
    except Exception as err:  # noqa: BLE001 - an unsupported architecture or type, a damaged file
        raise ForensicsInputError(
            f"transformers cannot read {file} ({description['architecture']}, {description['quantization']}): "
            f"{_first_line(err)}"
        ) from None
    finally:
        setattr(gguf_utils, "tqdm", bar)  # noqa: B010
    architecture = type(model).__name__
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ForensicsInputError(f"{file}: architecture {architecture} is not supported by the audit")
    model.config.architectures = [architecture]
    # the weights are dequantized floats now: save them as a plain checkpoint
    setattr(model, "hf_quantizer", None)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(description | {"sha256": sha}, indent=2) + "\n")
        if not marker.is_file():  # another process may have finished the same conversion meanwhile
            if folder.exists():  # a half-made folder of an earlier, interrupted conversion
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
