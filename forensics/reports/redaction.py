"""Redaction of fact and sequence text in reports (``forensics audit --redact``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forensics.inputs.data import Fact


class Redactor:
    """Replaces fact and sequence text by ids in everything a report shows (``--redact``).

    What it touches: the examples table (prompts become ids, answers and the models'
    predictions become ``[redacted]``: only right / wrong is shown), and every string in the
    lines' details, reasons and metrics and in the warnings: a string equal to a prompt,
    answer, subject, fact text or sequence text becomes that item's id (answers
    ``<id>:answer``); a longer string that contains a prompt, subject or sequence text has
    it replaced by ``[<id>]``. Schema fields (votes, labels, the rule) are never touched.
    Figures are images drawn by the lines from numbers; none of them draws fact text.
    """

    def __init__(self, sets: Mapping[str, list]):
        """``sets``: role (forget, retain, holdout, sequences ...) -> its :class:`Fact` or
        sequence items; ids are ``<role>:<id>``, or ``<role>-<i>`` for an item without one."""
        self.exact: dict[str, str] = {}
        self.substrings: dict[str, str] = {}
        for role, items in sets.items():
            subjects: dict[str, str] = {}
            for i, item in enumerate(items or []):
                ident = f"{role}:{item.id}" if getattr(item, "id", None) else f"{role}-{i}"
                if isinstance(item, Fact):
                    for text in (item.text, item.prompt):
                        self.exact.setdefault(text, ident)
                        self.substrings.setdefault(text, ident)
                    self.exact.setdefault(item.answer, f"{ident}:answer")
                    self.exact.setdefault(item.answer.strip(), f"{ident}:answer")
                    if item.subject:
                        subject_id = subjects.setdefault(item.subject, f"{role}-subject-{len(subjects)}")
                        self.exact.setdefault(item.subject, subject_id)
                        self.substrings.setdefault(item.subject, subject_id)
                else:
                    self.exact.setdefault(item.text, ident)
                    self.substrings.setdefault(item.text, ident)
        self._ordered = sorted((s for s in self.substrings if len(s) >= 4), key=len, reverse=True)

    def text(self, value: str) -> str:
        """``value`` redacted: its id when it equals a known text, else every known prompt,
        subject or sequence text (4 characters or more, longest first) inside it replaced by ``[<id>]``."""
        if value in self.exact:
            return self.exact[value]
        for needle in self._ordered:
            if needle in value:
                value = value.replace(needle, f"[{self.substrings[needle]}]")
        return value

    def apply(self, value: Any) -> Any:
        """:meth:`text` applied to every string (dict keys included) of a JSON-like value;
        dicts, lists and tuples are rebuilt (tuples become lists), other values pass through."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.apply(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.apply(v) for v in value]
        return value

    def result(self, out: dict[str, Any]) -> dict[str, Any]:
        """Redact a ``results.json`` dict (see the class docstring for what is touched)."""
        for entry in out["evidence"]:
            for key in ("details", "reason", "metric"):
                entry[key] = self.apply(entry[key])
        for key in ("deciding_lines", "lines_against", "held_back"):
            for entry in out["verdict"].get(key, []):
                entry["reason"] = self.apply(entry["reason"])
                entry["metric"] = self.apply(entry["metric"])
        out["verdict"]["reason"] = self.apply(out["verdict"]["reason"])
        out["examples"] = [
            {
                "id": row["id"],
                "prompt": self.exact.get(row["prompt"], row["id"]),
                "answer": "[redacted]",
                "original": "[redacted]",
                "unlearned": "[redacted]",
                "original_correct": row["original_correct"],
                "unlearned_correct": row["unlearned_correct"],
            }
            for row in out["examples"]
        ]
        out["warnings"] = [self.apply(w) for w in out["warnings"]]
        return out
