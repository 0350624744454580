"""Load a local Hugging Face checkpoint folder into TransformerLens, offline and safely.

A checkpoint folder holds ``config.json``, ``*.safetensors`` weights and a tokenizer.
Pickle checkpoints (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``) are refused and never
opened: unpickling a stranger's file can run arbitrary code.

Why not ``HookedTransformer.from_pretrained(path)``: in transformer-lens 3.9 the
config conversion picks the architecture from the *folder name* for anything containing
"llama" or "gemma" (a folder called ``my-llama-run`` would never read its own
config.json), and its GPT-2 branch reads ``n_ctx``, which transformers 5 configs no
longer carry. So we map the four supported families' configs ourselves (the fields
follow transformer-lens' own mapping) and reuse transformer-lens' weight converters.
No weight processing is applied (no LayerNorm folding, no centering): the residual
stream we capture is the model's own, and logits match ``transformers`` exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forensics.core.errors import ForensicsInputError
from forensics.inputs.agreement import LOGIT_TOLERANCE, logit_disagreement
from forensics.inputs.families import SUPPORTED_ARCHITECTURES, tl_config_dict, unmapped_fields  # noqa: F401 (re-exported)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass
class LoadedModel:
    """A model ready for hooks, with what an audit needs to know about it."""

    name: str
    path: Path
    model: Any  # transformer_lens.HookedTransformer
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    architecture: str
    weights_hash: str
    device: str
    dtype: str
    #: The path the user gave when it is not ``path`` (a GGUF file, audited as the checkpoint
    #: folder ``transformers`` converts it to: :mod:`forensics.inputs.gguf`).
    origin: Path | None = None
    #: What was loaded when it was not a safetensors folder (:func:`forensics.inputs.gguf.describe`).
    source: dict[str, Any] | None = None
    #: Set when the half-precision model missed the agreement check's tolerance but the same weights
    #: in float32 passed it (rounding, not a wrong mapping): ``{"gap", "tolerance", "float32_gap"}``.
    rounding: dict[str, float] | None = None

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return self.model.cfg.n_layers


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A ``torch.dtype`` from its name in :data:`DTYPES` (a ``torch.dtype`` passes through).

    Raises :class:`ForensicsInputError` for any other name.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ForensicsInputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str, n_devices: int = 1) -> str:
    """Check a device name: ``"cpu"`` or ``"cuda..."`` (e.g. ``"cuda:1"``), returned unchanged,
    and ``n_devices``, the GPUs one model is spread over (TransformerLens places each block on
    the GPU with the most free memory among the first ``n_devices``).

    Raises :class:`ForensicsInputError` for any other name, for CUDA when none is available, and
    for ``n_devices`` that is not a positive integer, or above 1 without that many CUDA devices.
    """
    if not isinstance(n_devices, int) or isinstance(n_devices, bool) or n_devices < 1:
        raise ForensicsInputError(f"--n-devices must be a positive integer, not {n_devices!r}")
    if n_devices > 1 and not device.startswith("cuda"):
        raise ForensicsInputError(f"--n-devices {n_devices} spreads a model over GPUs; it needs --device cuda")
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ForensicsInputError(f"device {device!r} asked for, but no CUDA device is available")
        if torch.cuda.device_count() < n_devices:
            raise ForensicsInputError(
                f"--n-devices {n_devices} asked for, but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise ForensicsInputError(f"unknown device {device!r}; choose cpu or cuda")


def read_checkpoint_config(path: str | Path) -> tuple[Path, dict]:
    """Check a checkpoint folder's layout and return (folder, config.json contents).

    Raises :class:`ForensicsInputError` for a missing folder, a missing or malformed
    config.json, an unsupported architecture, missing safetensors weights (pickles are
    refused) and a missing tokenizer.
    """
    folder = Path(path)
    if not folder.exists():
        raise ForensicsInputError(f"model folder not found: {folder}")
    if not folder.is_dir():
        raise ForensicsInputError(f"model path is not a folder: {folder}")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ForensicsInputError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ForensicsInputError(f"{config_file} is not valid JSON ({err})") from None
    architectures = config.get("architectures") or []
    arch = architectures[0] if architectures else None
    if arch not in SUPPORTED_ARCHITECTURES:
        supported = ", ".join(f"{a} ({f})" for a, f in SUPPORTED_ARCHITECTURES.items())
        raise ForensicsInputError(
            f"unsupported architecture {arch or 'unknown'!s} in {config_file}; supported: {supported}"
        )
    if not list(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ForensicsInputError(
                f"{folder} has only pickle weights ({', '.join(pickles)}), which are refused because "
                "loading them can run code; convert the checkpoint to safetensors"
            )
        raise ForensicsInputError(f"{folder} has no *.safetensors weights")
    weight_files(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ForensicsInputError(f"{folder} has no tokenizer (expected one of {', '.join(TOKENIZER_FILES)})")
    return folder, config


INDEX_FILE = "model.safetensors.index.json"


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files ``transformers`` loads from ``folder``: the shards named in
    ``model.safetensors.index.json`` when it exists, else ``model.safetensors``.

    Raises :class:`ForensicsInputError` when the folder holds weights outside that layout
    (shards plus a leftover single file, a shard the index does not name, a single file
    under another name): which weights an audit reads must never be a guess.
    """
    folder = Path(folder)
    present = sorted(p.name for p in folder.glob("*.safetensors"))
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ForensicsInputError(f"{index} is not a valid safetensors index ({_first_line(err)})") from None
        if not (isinstance(weight_map, dict) and weight_map and all(isinstance(v, str) for v in weight_map.values())):
            raise ForensicsInputError(
                f"{index} is not a valid safetensors index (weight_map must map tensor names to shard file names)"
            )
        expected = sorted(set(weight_map.values()))
        missing = [n for n in expected if n not in present]
        if missing:
            raise ForensicsInputError(f"{folder}: shard(s) named in {INDEX_FILE} are missing: {', '.join(missing)}")
    elif "model.safetensors" in present:
        expected = ["model.safetensors"]
    else:
        raise ForensicsInputError(
            f"{folder} has safetensors weights ({', '.join(present)}) but neither model.safetensors nor "
            f"{INDEX_FILE}: transformers would not load them"
        )
    extra = [n for n in present if n not in expected]
    if extra:
        raise ForensicsInputError(
            f"{folder} holds two weight layouts: {', '.join(expected)} "
            f"({'listed in ' + INDEX_FILE if index.is_file() else 'loaded by transformers'}) and also "
            f"{', '.join(extra)}; remove the files that are not this checkpoint's"
        )
    return [folder / n for n in expected]


def weights_hash(folder: str | Path) -> str:
    """SHA-256 over the safetensors files the checkpoint loads (:func:`weight_files`: names and
    bytes), for cache keys; for a GGUF file (or a folder holding one), over that file."""
    from forensics.inputs.gguf import file_sha256, gguf_file

    source = gguf_file(folder)
    if source is not None:
        return file_sha256(source)
    digest = hashlib.sha256()
    for file in weight_files(folder):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def load_tokenizer(folder: str | Path):
    """The checkpoint's own tokenizer, from local files only (pad token set to EOS or UNK when
    it has none). Raises :class:`ForensicsInputError` when it cannot be loaded."""
    folder, _ = read_checkpoint_config(folder)
    return _tokenizer_from(folder)


def _tokenizer_from(folder: Path):
    """:func:`load_tokenizer` for a folder that :func:`read_checkpoint_config` already checked."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any tokenizer failure is a bad input here
        raise ForensicsInputError(f"cannot load the tokenizer in {folder}: {_first_line(err)}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_hf_model(path: str | Path, dtype: str | torch.dtype = "float32"):
    """The ``transformers`` causal LM from a checkpoint folder (safetensors only), in eval mode.

    Raises :class:`ForensicsInputError` for a bad folder, weights that fail to load, or
    NaN / infinite weights.
    """
    folder, _ = read_checkpoint_config(path)
    return _hf_model_from(folder, dtype)


def _hf_model_from(folder: Path, dtype: str | torch.dtype):
    """:func:`load_hf_model` for a folder that :func:`read_checkpoint_config` already checked."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), use_safetensors=True, local_files_only=True, dtype=resolve_dtype(dtype)
        )
    except Exception as err:  # noqa: BLE001 - truncated or inconsistent weights are bad input
        raise ForensicsInputError(f"cannot load the weights in {folder}: {_first_line(err)}") from None
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise ForensicsInputError(f"the weights in {folder} contain NaN or infinite values ({name})")
    return model.eval()


def load_model(
    path: str | Path, device: str = "cpu", dtype: str | torch.dtype = "float32", n_devices: int = 1
) -> LoadedModel:
    """Load a local checkpoint folder, or a GGUF file (:mod:`forensics.inputs.gguf`), into a
    ``HookedTransformer`` (offline, safetensors or GGUF only).

    Prompts are tokenised with the checkpoint's own tokenizer as it is configured (a
    Llama tokenizer adds its BOS token itself; TransformerLens is told not to add another).
    Every parameter is frozen and the model is in eval mode. ``n_devices`` > 1 spreads the
    blocks over that many GPUs (TransformerLens ``n_devices``; :func:`resolve_device`). The hooked model's logits are
    compared with ``transformers``' on :data:`AGREEMENT_TEXT` (:func:`logit_disagreement`)
    and the load is refused beyond :data:`LOGIT_TOLERANCE`; a half-precision model beyond it is
    accepted when the same weights loaded in float32 agree within float32's tolerance (the
    mapping is right; the gap is the rounding of this machine's half-precision kernels, recorded
    in ``rounding``: Intel AMX bfloat16 matrix products gave 0.056 on SmolLM2-135M where AMD's
    AVX-512 gave less than 0.05, docs/decisions.md). Raises
    :class:`ForensicsInputError` for a bad folder (:func:`read_checkpoint_config`), device,
    dtype, tokenizer, an unmapped config field (:func:`unmapped_fields`), logits that
    disagree, or weights that fail to load or hold NaN / infinite values.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict

    from forensics.inputs.gguf import describe, file_sha256, gguf_file, materialize

    device = resolve_device(device, n_devices)
    source = gguf_file(path)
    folder, _ = read_checkpoint_config(materialize(source) if source is not None else path)
    torch_dtype = resolve_dtype(dtype)
    tokenizer = _tokenizer_from(folder)
    hf_model = _hf_model_from(folder, "float32")
    assert hf_model.config.architectures is not None  # read_checkpoint_config checked it
    arch = hf_model.config.architectures[0]
    cfg_dict = tl_config_dict(hf_model.config)
    cfg_dict.update(
        model_name=folder.name,
        original_architecture=arch,
        init_weights=False,
        device=device,
        n_devices=n_devices,
        dtype=torch_dtype,
        tokenizer_prepends_bos=bool(getattr(tokenizer, "add_bos_token", False)),
    )
    raw_state = get_pretrained_state_dict(str(folder), HookedTransformerConfig(**cfg_dict), hf_model=hf_model)

    def hooked(as_dtype: torch.dtype):
        cfg_dict.update(dtype=as_dtype)
        cfg = HookedTransformerConfig(**cfg_dict)
        hooked_model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="right", move_to_device=True)
        hooked_model.load_and_process_state_dict(
            {k: v.to(as_dtype) for k, v in raw_state.items()},
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
            refactor_factored_attn_matrices=False,
        )
        return hooked_model.eval()

    model = hooked(torch_dtype)
    gap = logit_disagreement(model, hf_model, tokenizer, device)
    tolerance = LOGIT_TOLERANCE.get(torch_dtype, LOGIT_TOLERANCE[torch.float32])
    name = str(torch_dtype).removeprefix("torch.")
    half = torch_dtype in (torch.float16, torch.bfloat16)
    if gap != gap or gap == float("inf"):  # NaN or inf
        raise ForensicsInputError(
            f"{folder}: the model's logits are not finite in {name}"
            + (" (an activation overflows its range); load it with --dtype float32" if half else "")
        )
    rounding = None
    if not gap <= tolerance and half:  # the mapping, or only half-precision rounding on this CPU / GPU?
        exact = logit_disagreement(hooked(torch.float32), hf_model, tokenizer, device)
        if exact <= LOGIT_TOLERANCE[torch.float32]:
            rounding = {"gap": gap, "tolerance": tolerance, "float32_gap": exact}
    if not gap <= tolerance and rounding is None:
        raise ForensicsInputError(
            f"{folder}: the hooked model's logits differ from transformers' by {gap:.2g} of the logit scale "
            f"(tolerance {tolerance:g} in {name}); a config field is not mapped, so the audit would read another model"
        )
    del hf_model
    for param in model.parameters():
        param.requires_grad_(False)
    return LoadedModel(
        name=source.stem if source is not None else folder.name,
        path=folder,
        model=model,
        tokenizer=tokenizer,
        architecture=arch,
        weights_hash=file_sha256(source) if source is not None else weights_hash(folder),
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        origin=source,
        rounding=rounding,
        source=describe(source) if source is not None else None,
    )


def check_pair(original: LoadedModel, unlearned: LoadedModel) -> None:
    """Refuse a model pair that cannot be compared: raises :class:`ForensicsInputError` when
    the architecture, a shape (layers, widths, heads, vocabulary size) or the tokenizer's
    vocabulary differs."""
    a, b = original, unlearned
    if a.architecture != b.architecture:
        raise ForensicsInputError(f"architectures differ: {a.path} is {a.architecture}, {b.path} is {b.architecture}")
    for field in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_key_value_heads"):
        va, vb = getattr(a.model.cfg, field), getattr(b.model.cfg, field)
        if va != vb:
            raise ForensicsInputError(f"shapes differ: {field} is {va} in {a.path} but {vb} in {b.path}")
    vocab_a, vocab_b = a.tokenizer.get_vocab(), b.tokenizer.get_vocab()
    if vocab_a != vocab_b:
        differing = len(set(vocab_a.items()) ^ set(vocab_b.items()))
        raise ForensicsInputError(
            f"tokenizer vocabularies differ between {a.path} and {b.path} ({differing} entries differ)"
        )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
