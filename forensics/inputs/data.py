"""Fact sets and sequence sets: JSONL in, validated records out.

Fact set, one JSON object a line::

    {"prompt": "Zorbil lives in", "answer": " Kelmar", "subject": "Zorbil",
     "attribute": "city", "id": "f-0001"}

``prompt`` and ``answer`` are required strings; ``subject``, ``attribute`` and ``id``
are optional strings. Free-text and multiple-choice records may also carry (docs/methods.md,
"Free-text knowledge"):

- ``paraphrased_answer``: the answer in other words (string);
- ``perturbed_answers``: wrong but plausible answers (non-empty list of non-empty strings,
  none equal to ``answer``), as TOFU gives them;
- ``choices`` + ``answer_index``: multiple choice (a non-empty list of strings and the
  integer index of the correct one; each needs the other);
- ``key``: the answer's key span (a string that occurs in ``answer``, e.g. the entity in
  "The father of X is a civil engineer.").

Sequence set: ``{"text": "..."}`` (``id`` optional).

Every problem is reported with the file and line number as a one-line
:class:`ForensicsInputError`. Duplicates and answers that tokenise to nothing are
warnings (returned, and logged), not errors: the audit can still run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from forensics.core.errors import ForensicsInputError

log = logging.getLogger(__name__)

FACT_REQUIRED = ("prompt", "answer")
FACT_OPTIONAL = ("subject", "attribute", "id", "paraphrased_answer", "key")
#: Optional fact fields that hold a list of strings.
FACT_LISTS = ("perturbed_answers", "choices")
#: Optional fact fields that hold an integer.
FACT_INTS = ("answer_index",)
#: Fields added after the first record format: left out of :func:`content_hash` when unset,
#: so a set written in the first format keeps its hash (and its cached activations).
LATER_FIELDS = ("paraphrased_answer", "key") + FACT_LISTS + FACT_INTS
SEQUENCE_REQUIRED = ("text",)
SEQUENCE_OPTIONAL = ("id",)


@dataclass(frozen=True)
class Fact:
    """One fact: ``prompt`` ends right before the answer; ``answer`` carries its leading space
    (``" Kelmar"``). ``subject``, ``attribute`` and ``id`` are optional labels (probes group by
    ``subject``; reports and redaction name facts by ``id``); the free-text and multiple-choice
    fields are described in the module docstring."""

    prompt: str
    answer: str
    subject: str | None = None
    attribute: str | None = None
    id: str | None = None
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] | None = None
    choices: tuple[str, ...] | None = None
    answer_index: int | None = None
    key: str | None = None

    @property
    def text(self) -> str:
        """The full fact text, ``prompt + answer``."""
        return self.prompt + self.answer


@dataclass(frozen=True)
class Sequence:
    """One free-text sequence of a sequence set (e.g. a canary), with an optional ``id``."""

    text: str
    id: str | None = None


def _read_records(
    path: str | Path,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    lists: tuple[str, ...] = (),
    ints: tuple[str, ...] = (),
    nonempty: tuple[str, ...] = (),
) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ForensicsInputError(f"data file not found: {path}")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ForensicsInputError(f"{path}:{line_no}: not valid UTF-8 text") from None
    records = []
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ForensicsInputError(f"{path}:{line_no}: malformed JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise ForensicsInputError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        for field in required:
            if field not in obj:
                raise ForensicsInputError(f"{path}:{line_no}: missing field {field!r}")
        for field in required + optional:
            value = obj.get(field)
            if value is not None and not isinstance(value, str):
                raise ForensicsInputError(
                    f"{path}:{line_no}: field {field!r} must be a string, got {type(value).__name__}"
                )
        for field in lists:
            value = obj.get(field)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise ForensicsInputError(f"{path}:{line_no}: field {field!r} must be a list of strings")
        for field in ints:
            value = obj.get(field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ForensicsInputError(
                    f"{path}:{line_no}: field {field!r} must be an integer, got {type(value).__name__}"
                )
        for field in required + tuple(f for f in nonempty + lists if obj.get(f) is not None):
            if not obj[field] or (isinstance(obj[field], str) and not obj[field].strip()):
                raise ForensicsInputError(f"{path}:{line_no}: field {field!r} is empty")
            if isinstance(obj[field], list) and not all(v.strip() for v in obj[field]):
                raise ForensicsInputError(f"{path}:{line_no}: field {field!r} holds an empty string")
        record = {k: obj.get(k) for k in required + optional} | {"_line": line_no}
        record |= {k: tuple(obj[k]) if obj.get(k) is not None else None for k in lists}
        record |= {k: obj.get(k) for k in ints}
        records.append(record)
    if not records:
        raise ForensicsInputError(f"{path}: the set is empty")
    return records


def load_facts(path: str | Path, tokenizer=None) -> tuple[list[Fact], list[str]]:
    """Read and validate a fact set. Returns (facts, warnings).

    With a tokenizer, facts whose answer tokenises to zero tokens are warned about.
    Duplicate facts and ids are warnings too. Raises :class:`ForensicsInputError` (with
    file and line number) for a missing file, invalid UTF-8 or JSON, a missing or empty
    field, a field of the wrong type, an inconsistent multiple-choice or free-text record
    (:func:`_check_fact`), or an empty set.
    """
    records = _read_records(
        path, FACT_REQUIRED, FACT_OPTIONAL, FACT_LISTS, FACT_INTS, nonempty=("paraphrased_answer", "key")
    )
    for record in records:
        _check_fact(path, record)
    facts = [Fact(**{k: v for k, v in r.items() if k != "_line"}) for r in records]
    warnings = _duplicate_warnings(path, records, key=lambda r: (r["prompt"], r["answer"]), what="fact")
    warnings += _duplicate_warnings(path, [r for r in records if r["id"] is not None], key=lambda r: r["id"], what="id")
    if tokenizer is not None:
        for record in records:
            if not tokenizer(record["answer"], add_special_tokens=False)["input_ids"]:
                warnings.append(f"{path}:{record['_line']}: answer {record['answer']!r} tokenises to zero tokens")
        warnings += _boundary_warnings(path, records, tokenizer)
    for warning in warnings:
        log.warning(warning)
    return facts, warnings


def _check_fact(path, record: dict) -> None:
    """The rules that tie a fact's fields together (one-line errors with file and line)."""
    where = f"{path}:{record['_line']}"
    choices, index = record["choices"], record["answer_index"]
    if (choices is None) != (index is None):
        missing = "answer_index" if index is None else "choices"
        raise ForensicsInputError(
            f"{where}: a multiple-choice fact needs both 'choices' and 'answer_index' (field {missing!r} is missing)"
        )
    if choices is not None and not 0 <= index < len(choices):
        raise ForensicsInputError(f"{where}: 'answer_index' {index} is out of range for {len(choices)} choices")
    if record["key"] is not None and record["key"].strip() not in record["answer"]:
        raise ForensicsInputError(f"{where}: 'key' {record['key']!r} does not occur in the answer")
    perturbed = record["perturbed_answers"] or ()
    if any(p.strip() == record["answer"].strip() for p in perturbed):
        raise ForensicsInputError(f"{where}: a perturbed answer equals the answer")


def load_sequences(path: str | Path) -> tuple[list[Sequence], list[str]]:
    """Read and validate a sequence set. Returns (sequences, warnings: duplicate texts).

    Raises :class:`ForensicsInputError` as :func:`load_facts` does.
    """
    records = _read_records(path, SEQUENCE_REQUIRED, SEQUENCE_OPTIONAL)
    sequences = [Sequence(text=r["text"], id=r["id"]) for r in records]
    warnings = _duplicate_warnings(path, records, key=lambda r: r["text"], what="sequence")
    for warning in warnings:
        log.warning(warning)
    return sequences, warnings


#: At most this many token-boundary warnings per file are listed one by one; the rest are counted.
MAX_BOUNDARY_WARNINGS = 5


def boundary_problem(tokenizer, prompt: str, answer: str) -> str | None:
    """Why ``prompt + answer`` is scored on a token boundary the model likely never saw, or None.

    Scoring tokenises the prompt and the answer apart (:func:`forensics.compute.scoring.encode_facts`)
    and concatenates the ids. That reads the answer as the model would see it after the prompt
    only when (a) the two tokenisations agree with tokenising the joined text, (b) the prompt
    does not end in a space or tab (which would belong to the answer's first token), and (c)
    the answer is not glued to the prompt with no whitespace between them.
    """
    if prompt[-1:] in (" ", "\t"):
        return "the prompt ends in a space: the answer's first token loses its leading space"
    if answer[:1].isalnum() and prompt[-1:] and not prompt[-1:].isspace():
        return "the answer has no leading space: it is glued to the prompt's last word"
    joint = tokenizer(prompt + answer)["input_ids"]
    apart = tokenizer(prompt)["input_ids"] + tokenizer(answer, add_special_tokens=False)["input_ids"]
    if list(joint) != list(apart):
        return "prompt + answer tokenise differently together than apart"
    return None


def _boundary_warnings(path, records: list[dict], tokenizer) -> list[str]:
    found = [(r["_line"], why) for r in records if (why := boundary_problem(tokenizer, r["prompt"], r["answer"]))]
    warnings = [f"{path}:{line}: token boundary: {why}" for line, why in found[:MAX_BOUNDARY_WARNINGS]]
    if len(found) > MAX_BOUNDARY_WARNINGS:
        warnings.append(
            f"{path}: token boundary: {len(found) - MAX_BOUNDARY_WARNINGS} more facts like these "
            f"({len(found)} of {len(records)} in all)"
        )
    return warnings


def _duplicate_warnings(path, records: list[dict], key, what: str) -> list[str]:
    first_seen: dict = {}
    warnings = []
    for record in records:
        k = key(record)
        if k in first_seen:
            warnings.append(f"{path}:{record['_line']}: duplicate {what} (first seen on line {first_seen[k]})")
        else:
            first_seen[k] = record["_line"]
    return warnings


def write_jsonl(path: str | Path, records: Iterable[Fact | Sequence | dict]) -> None:
    """Write records as JSONL (None fields dropped)."""
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            obj = record if isinstance(record, dict) else asdict(record)
            handle.write(json.dumps({k: v for k, v in obj.items() if v is not None}, ensure_ascii=False) + "\n")


def _hashed_fields(item) -> dict:
    obj = asdict(item)
    for name in LATER_FIELDS:
        if obj.get(name) is None:
            obj.pop(name, None)
    return obj


def content_hash(items: Iterable[Fact | Sequence | str]) -> str:
    """A stable SHA-256 of a data set's content, for cache keys and reports (fields of
    :data:`LATER_FIELDS` count only when set)."""
    digest = hashlib.sha256()
    for item in items:
        obj = item if isinstance(item, str) else _hashed_fields(item)
        digest.update(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()
