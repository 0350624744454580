"""Loading and validating an audit's inputs (shared by ``forensics audit`` and ``forensics check``).

Everything is loaded and checked before any work starts, data files first (they fail
fastest): any problem is a one-line :class:`ForensicsInputError`. What the audit refuses:
an empty or malformed set, duplicate fact ids within a set, a holdout set sharing a prompt
with the forget set, an item longer than the model's context window, a model pair that
does not match (:func:`forensics.inputs.loading.check_pair`). What it only warns about
(:attr:`AuditInputs.warnings`): duplicate facts, answers that tokenise to nothing, facts
scored across an unusual token boundary (:func:`forensics.inputs.data.boundary_problem`), prompts
whose BOS would be doubled (:func:`forensics.compute.scoring.doubled_bos`: one is used), and
forget / holdout sets below the lines' default minimum sample for a vote
(:class:`forensics.core.minimum.VoteMinimum`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensics.compute.scoring import doubled_bos
from forensics.core.errors import ForensicsInputError
from forensics.core.keys import model_identity
from forensics.core.minimum import VoteMinimum, shortfall
from forensics.inputs.chat import template_of, template_record, templated
from forensics.inputs.data import Fact, Sequence, content_hash, load_facts, load_sequences
from forensics.inputs.loading import LoadedModel, check_pair, load_model

FACT_SETS = ("forget", "retain", "holdout")


@dataclass
class AuditInputs:
    """Loaded and validated inputs; ``None`` where not given.

    ``records``: role -> what ``results.json`` says of each input (path, hashes, sizes);
    ``hashes``: role -> model identity (:func:`forensics.core.keys.model_identity`) or data content
    hash (the line cache's input key);
    ``warnings``: data-validation warnings, one line each;
    ``chat_template``: the chat template the fact prompts were rendered with
    (:func:`forensics.inputs.chat.template_record`), or None when they are fed as written.
    """

    original: LoadedModel
    unlearned: LoadedModel | None = None
    reference: LoadedModel | None = None
    forget: list[Fact] | None = None
    retain: list[Fact] | None = None
    holdout: list[Fact] | None = None
    sequences: list[Sequence] | None = None
    records: dict[str, Any] = field(default_factory=dict)
    hashes: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    chat_template: dict[str, Any] | None = None


def load_inputs(
    original,
    unlearned=None,
    forget=None,
    retain=None,
    holdout=None,
    reference=None,
    sequences=None,
    device: str = "cpu",
    dtype: str = "float32",
    chat_template: bool = False,
    unlearned_device: str | None = None,
    n_devices: int = 1,
) -> AuditInputs:
    """Load and validate every input given. Models: checkpoint folders or loaded
    :class:`LoadedModel`; fact and sequence sets: JSONL paths or lists of
    :class:`forensics.inputs.data.Fact` / :class:`forensics.inputs.data.Sequence`. ``chat_template``: render
    every fact prompt with the original checkpoint's chat template (:mod:`forensics.inputs.chat`).
    ``device`` holds the original and the reference, ``unlearned_device`` (default ``device``)
    the unlearned model; ``n_devices``: GPUs each model is spread over
    (:func:`forensics.inputs.loading.resolve_device`).

    Raises :class:`ForensicsInputError` on any problem (see the module docstring).
    """
    given = {"forget": forget, "retain": retain, "holdout": holdout}
    data_log = logging.getLogger("forensics.inputs.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # warnings are collected on the second, full read below
    try:
        early = {name: load_facts(value)[0] for name, value in given.items() if isinstance(value, (str, Path))}
        check_fact_sets(early)
        if isinstance(sequences, (str, Path)):
            load_sequences(sequences)
    finally:
        data_log.setLevel(level)
    out = AuditInputs(original=_load_model(original, device, dtype, n_devices))
    if unlearned is not None:
        out.unlearned = _load_model(unlearned, unlearned_device or device, dtype, n_devices)
        check_pair(out.original, out.unlearned)
    if reference is not None:
        out.reference = _load_model(reference, device, dtype, n_devices)
        check_pair(out.original, out.reference)
    for role in ("original", "unlearned", "reference"):
        model = getattr(out, role)
        if model is not None and model.rounding is not None:
            r = model.rounding
            out.warnings.append(
                f"the {role} model's {model.dtype} logits differ from transformers' float32 ones by {r['gap']:.2g} "
                f"of the logit scale, above the {r['tolerance']:g} the load check expects of {model.dtype}; the same "
                f"weights in float32 agree to {r['float32_gap']:.1g}, so the difference is this machine's "
                "half-precision rounding (--dtype float32 removes it)"
            )
    if chat_template:
        out.chat_template = template_record(out.original)
        for role in ("unlearned", "reference"):
            other = getattr(out, role)
            if other is not None and template_of(other.tokenizer) not in (None, template_of(out.original.tokenizer)):
                out.warnings.append(
                    f"the {role} model's chat template differs from the original's; the original's is used for both"
                )
    paths: dict[str, Path | None] = {}
    for name, value in given.items():
        if value is not None:
            facts, paths[name] = _load_facts(value, name, out.original.tokenizer, out.warnings)
            setattr(out, name, templated(facts, out.original.tokenizer) if chat_template else facts)
    if sequences is not None:
        out.sequences, paths["sequences"] = _load_sequences(sequences, out.warnings)
    sets = {name: getattr(out, name) or [] for name in FACT_SETS}
    check_fact_sets(sets)
    check_lengths(out.original, sets, out.sequences)
    for name in FACT_SETS:
        doubled = sum(
            doubled_bos(out.original.tokenizer, out.original.tokenizer(f.prompt)["input_ids"])
            for f in getattr(out, name) or []
        )
        if doubled:
            out.warnings.append(
                f"{name} set: {doubled} prompts start with the BOS text "
                f"{out.original.tokenizer.bos_token!r} and the tokenizer adds BOS too; "
                f"one BOS is used, not two"
            )
        facts = getattr(out, name) or []
        if name in ("forget", "holdout") and facts and not any(f.subject for f in facts):
            out.warnings.append(
                f"{name} set: no fact names a subject; each fact is its own group (folds, "
                f"bootstraps and permutations resample single facts, and the attribute probes "
                f"do not run)"
            )
    short = shortfall({name: getattr(out, name) for name in FACT_SETS}, VoteMinimum())
    if short:
        out.warnings.append(
            f"sets too small to vote on: {short} (the evidence lines' default minimum; "
            f"they report numbers without a vote)"
        )
    for role in ("original", "unlearned", "reference"):
        model = getattr(out, role)
        out.records[role] = _model_record(model) if model is not None else None
        out.hashes[role] = model_identity(model) if model is not None else None
    for name in FACT_SETS + ("sequences",):
        items = getattr(out, name)
        if items is None:
            out.records[name] = None
            continue
        digest = content_hash(items)
        out.hashes[name] = digest
        path = paths.get(name)
        out.records[name] = {
            "path": str(path) if path else None,
            "n": len(items),
            "content_sha256": digest,
            "file_sha256": _file_sha256(path),
        }
    return out


def _load_model(value, device: str, dtype: str, n_devices: int) -> LoadedModel:
    if isinstance(value, LoadedModel):
        return value
    return load_model(value, device, dtype, n_devices)


def _load_facts(value, name: str, tokenizer, warnings: list[str]) -> tuple[list[Fact], Path | None]:
    if isinstance(value, (str, Path)):
        facts, found = load_facts(value, tokenizer)
        warnings.extend(found)
        return facts, Path(value)
    facts = list(value)
    if not facts:
        raise ForensicsInputError(f"the {name} set is empty")
    if not all(isinstance(f, Fact) for f in facts):
        raise ForensicsInputError(f"the {name} set must be a JSONL path or a list of forensics.inputs.data.Fact")
    return facts, None


def check_fact_sets(sets: Mapping[str, list[Fact]]) -> None:
    """Refuse duplicate ids within a set (ids name facts in reports and redaction) and a holdout
    set that shares a prompt with the forget set (the control would not be a control)."""
    for name, facts in sets.items():
        seen: set[str] = set()
        for fact in facts:
            if fact.id is not None:
                if fact.id in seen:
                    raise ForensicsInputError(f"the {name} set has a duplicate id {fact.id!r}; ids must be unique")
                seen.add(fact.id)
    if sets.get("holdout") and sets.get("forget"):
        shared = {f.prompt for f in sets["forget"]} & {f.prompt for f in sets["holdout"]}
        if shared:
            raise ForensicsInputError(
                f"the holdout set overlaps the forget set ({len(shared)} shared prompts, e.g. "
                f"{sorted(shared)[0][:80]!r}); the holdout must hold facts no model saw"
            )


def check_lengths(model: LoadedModel, sets: Mapping[str, list[Fact]], sequences: list[Sequence] | None) -> None:
    """Refuse a fact (prompt + answer) or sequence longer than the model's context window."""
    n_ctx = model.model.cfg.n_ctx
    tok = model.tokenizer
    items = [(name, i, f.prompt, f.answer) for name, facts in sets.items() for i, f in enumerate(facts)]
    items += [("sequence", i, s.text, "") for i, s in enumerate(sequences or [])]
    for name, i, prompt, answer in items:
        if len((prompt + answer).encode()) < n_ctx - 2:  # a token spans at least one byte: cannot be too long
            continue
        n = len(tok(prompt)["input_ids"]) + (len(tok(answer, add_special_tokens=False)["input_ids"]) if answer else 0)
        if n > n_ctx:
            raise ForensicsInputError(
                f"{name} item {i + 1} is {n} tokens long, more than the model's context window of {n_ctx} tokens"
            )


def _load_sequences(value, warnings: list[str]) -> tuple[list[Sequence], Path | None]:
    if isinstance(value, (str, Path)):
        sequences, found = load_sequences(value)
        warnings.extend(found)
        return sequences, Path(value)
    return list(value), None


def _file_sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model_record(m: LoadedModel) -> dict[str, Any]:
    record = {
        "path": str(m.origin or m.path),
        "name": m.name,
        "architecture": m.architecture,
        "n_layers": m.n_layers,
        "weights_sha256": m.weights_hash,
        "dtype": m.dtype,
    }
    if m.source is not None:
        record["source"] = m.source | {"converted_folder": str(m.path)}
    return record
