"""``forensics data import``: public benchmark formats into the suite's fact sets.

Formats (one JSON array or JSONL of objects in; one fact set, JSONL, out):

- ``tofu`` (TOFU, 2024): ``question``, ``answer``, optional ``paraphrased_answer`` and
  ``perturbed_answer`` (a string or a list of strings). The prompt is ``--prompt-template``
  filled with the question; the answer gets one leading space.
- ``wmdp`` (WMDP, 2024): ``question``, ``choices`` (list of strings), ``answer`` (the index of
  the correct choice). The prompt lists the choices as ``A. ...`` lines after the question, then
  ``Answer:``; the answer is the correct letter (`` B``); ``choices`` holds the letters and
  ``answer_index`` the correct one, so the choice letters are the closed vocabulary.
- ``jsonl``: records already in the suite's fields (``prompt``, ``answer`` and the optional
  ones of :mod:`forensics.inputs.data`), or with ``question`` instead of ``prompt`` (then filled into
  the template); other fields are dropped.

Subjects come from ``subject_field`` when given (every record must have it); without one the
facts carry no subject and each is its own group (the probes' folds and the bootstraps then
resample single facts, and the audit's minimum-subject rule counts facts). With a chat
tokenizer the prompt is rendered in its template (:func:`forensics.inputs.chat.render_prompt`); an
audit of such a set must not add ``--chat-template`` again.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import FACT_INTS, FACT_LISTS, FACT_OPTIONAL, Fact, load_facts, write_jsonl

FORMATS = ("tofu", "wmdp", "jsonl")
DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"


def read_records(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON array or JSONL file; one-line errors with the file (and line)."""
    if not path.is_file():
        raise ForensicsInputError(f"input file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ForensicsInputError(f"{path}: not valid UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ForensicsInputError(f"{path}: malformed JSON ({err.msg}, line {err.lineno})") from None
        numbered = list(enumerate(records, start=1))
        where = "record"
    else:
        numbered, where = [], "line"
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    numbered.append((line_no, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ForensicsInputError(f"{path}:{line_no}: malformed JSON ({err.msg})") from None
    for n, obj in numbered:
        if not isinstance(obj, dict):
            raise ForensicsInputError(f"{path}: {where} {n}: expected a JSON object, got {type(obj).__name__}")
    if not numbered:
        raise ForensicsInputError(f"{path}: no records")
    return [obj | {"_where": f"{path}: {where} {n}"} for n, obj in numbered]


def _text(record: dict, field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ForensicsInputError(f"{record['_where']}: field {field!r} must be a non-empty string")
    return value


def _spaced(answer: str) -> str:
    return " " + answer.strip()


def _prompt(question: str, template: str) -> str:
    return template.replace("{question}", question.strip())


def _tofu(record: dict, template: str) -> dict:
    out: dict[str, Any] = {
        "prompt": _prompt(_text(record, "question"), template),
        "answer": _spaced(_text(record, "answer")),
    }
    if record.get("paraphrased_answer") is not None:
        out["paraphrased_answer"] = _spaced(_text(record, "paraphrased_answer"))
    perturbed = record.get("perturbed_answer", record.get("perturbed_answers"))
    if perturbed is not None:
        perturbed = [perturbed] if isinstance(perturbed, str) else perturbed
        if not isinstance(perturbed, list) or not all(isinstance(p, str) and p.strip() for p in perturbed):
            raise ForensicsInputError(f"{record['_where']}: 'perturbed_answer' must be a string or a list of strings")
        kept = [_spaced(p) for p in perturbed if p.strip() != record["answer"].strip()]
        if kept:
            out["perturbed_answers"] = kept
    return out


def _wmdp(record: dict, template: str) -> dict:
    question, choices, answer = _text(record, "question"), record.get("choices"), record.get("answer")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise ForensicsInputError(f"{record['_where']}: 'choices' must be a non-empty list of strings")
    if len(choices) > len(string.ascii_uppercase):
        raise ForensicsInputError(f"{record['_where']}: {len(choices)} choices; at most 26 can be lettered")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise ForensicsInputError(
            f"{record['_where']}: 'answer' must be the index of the correct choice "
            f"(0 to {len(choices) - 1}), got {answer!r}"
        )
    letters = string.ascii_uppercase[: len(choices)]
    listed = "\n".join(f"{letter}. {choice.strip()}" for letter, choice in zip(letters, choices))
    stem = template.replace("{question}", f"{question.strip()}\n{listed}")
    return {
        "prompt": stem,
        "answer": f" {letters[answer]}",
        "choices": [f" {x}" for x in letters],
        "answer_index": answer,
    }


def _jsonl(record: dict, template: str) -> dict:
    if "prompt" not in record and "question" in record:
        record = record | {"prompt": _prompt(_text(record, "question"), template)}
    keep = ("prompt", "answer") + FACT_OPTIONAL + FACT_LISTS + FACT_INTS
    return {k: record[k] for k in keep if k in record}


CONVERTERS = {"tofu": _tofu, "wmdp": _wmdp, "jsonl": _jsonl}


def import_facts(
    source: str | Path,
    out_dir: str | Path,
    fmt: str,
    prompt_template: str = DEFAULT_TEMPLATE,
    subject_field: str | None = None,
    chat_tokenizer=None,
) -> tuple[Path, list[Fact]]:
    """Convert ``source`` (format ``fmt``) into ``out_dir/<source stem>.jsonl`` and read it back
    through :func:`forensics.inputs.data.load_facts` (the suite's own validation). Returns the written
    path and the facts. Raises :class:`ForensicsInputError` for an unknown format, a template
    without ``{question}``, a bad record, or an output file that already exists (nothing is
    written then)."""
    if fmt not in CONVERTERS:
        raise ForensicsInputError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if "{question}" not in prompt_template:
        raise ForensicsInputError("--prompt-template must contain {question}")
    source, out_dir = Path(source), Path(out_dir)
    target = out_dir / f"{source.stem}.jsonl"
    if target.exists():
        raise ForensicsInputError(f"{target} exists; choose another --out folder")
    rows = []
    for i, record in enumerate(read_records(source)):
        row = CONVERTERS[fmt](record, prompt_template)
        if subject_field is not None:
            row["subject"] = _text(record, subject_field).strip()
        if chat_tokenizer is not None:
            from forensics.inputs.chat import render_prompt

            row["prompt"] = render_prompt(chat_tokenizer, row["prompt"])
        row.setdefault("id", f"{source.stem}-{i:05d}")
        rows.append(row)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{target.name}.partial-{os.getpid()}"
    try:
        write_jsonl(partial, rows)
        facts, _ = load_facts(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return target, facts
