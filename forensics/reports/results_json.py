"""``results.json``: the machine-readable audit result, with a versioned schema.

Schema ``unlearning-forensics/results``, version 1 (top-level keys; see README for each field):

- ``schema``, ``schema_version``
- ``verdict``: ``label`` (DELETED / SUPPRESSED / NOT_FORGOTTEN / INCONCLUSIVE),
  ``confidence`` (high / medium / low / n/a), ``step`` (which step of the rule decided),
  ``reason``, ``deciding_lines`` and ``lines_against`` (line, vote, metric, effect, control,
  ci, p_value, reason), ``held_back`` (suppressed votes that did not survive the
  multiplicity control, with ``p_adjusted``), ``multiplicity`` (``method`` "holm", ``alpha``,
  ``family``: per line ``line, vote, p_one_sided, p_adjusted, counted``), ``bound`` (for
  DELETED, the tightest recovery bound among the lines that voted deleted: ``line, share, upper,
  signal, margin, signal_is, kind``; else null), ``rule_version``,
  ``rule`` (the rule's text, one step a string)
- ``behaviour``: role (original / unlearned) -> set (forget / retain / holdout) ->
  ``{accuracy, mean_logprob, n}``, or null when the behaviour gate did not run
- ``evidence``: one object a line: ``line, question, status (ok / descriptive / not_run),
  metric, effect, control, difference, ci [low, high] of effect - control, p_value, vote,
  reason, details, figures`` (names; the PNGs are in ``figures/``), ``seconds`` (wall time)
  and ``cached`` (true when read back from the resume cache)
- ``examples``: a few forget facts with O's and U's greedy next token
- ``inputs``: per role, models ``{path, name, architecture, n_layers, weights_sha256,
  dtype}`` and data sets ``{path, n, content_sha256, file_sha256}`` (null when not given)
- ``run``: ``command, seed, profile, device, dtype, redact, all_lines, chat_template, started, seconds``
- ``versions``: Python, platform and package versions
- ``skipped_modules``: evidence-line modules that exist but failed to import
- ``warnings``: data-validation warnings

The file is plain JSON, except that ``<``, ``>`` and ``&`` inside strings are written as
``\\u003c``, ``\\u003e`` and ``\\u0026`` (the same strings once parsed), so user text such as
``<script>`` never appears raw, even if the file is pasted into a web page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REQUIRED = {
    "": (
        "schema",
        "schema_version",
        "verdict",
        "behaviour",
        "evidence",
        "examples",
        "inputs",
        "run",
        "versions",
        "skipped_modules",
        "warnings",
    ),
    "verdict": (
        "label",
        "confidence",
        "step",
        "reason",
        "deciding_lines",
        "lines_against",
        "held_back",
        "multiplicity",
        "bound",
        "rule_version",
        "rule",
    ),
    "evidence": (
        "line",
        "question",
        "status",
        "metric",
        "effect",
        "control",
        "difference",
        "ci",
        "p_value",
        "vote",
        "reason",
        "details",
        "figures",
        "seconds",
        "cached",
    ),
    "run": (
        "command",
        "seed",
        "profile",
        "device",
        "dtype",
        "redact",
        "all_lines",
        "chat_template",
        "started",
        "seconds",
    ),
    "inputs": ("original", "unlearned", "reference", "forget", "retain", "holdout", "sequences"),
}


def dumps(obj: Any) -> str:
    """JSON text with ``<``, ``>`` and ``&`` escaped (still valid JSON, same values); non-JSON
    objects are written as ``str()``. Raises ``ValueError`` for NaN or infinite floats."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_results_json(result, path: str | Path) -> None:
    """Write ``result.to_json()`` (an :class:`~forensics.reports.results.AuditResult`) to ``path`` as
    :func:`dumps` text plus a final newline (UTF-8)."""
    Path(path).write_text(dumps(result.to_json()) + "\n", encoding="utf-8")


def check_results(obj: dict[str, Any]) -> list[str]:
    """Missing fields of a results.json object, as ``section.field`` strings (empty: valid)."""
    problems = [k for k in REQUIRED[""] if k not in obj]
    for section in ("verdict", "run", "inputs"):
        problems += [f"{section}.{k}" for k in REQUIRED[section] if k not in obj.get(section, {})]
    for i, entry in enumerate(obj.get("evidence", [])):
        problems += [f"evidence[{i}].{k}" for k in REQUIRED["evidence"] if k not in entry]
    return problems
