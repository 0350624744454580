"""The audit's result (:class:`AuditResult`) and the ``results.json`` schema.

``results.json`` (schema :data:`SCHEMA`, version :data:`SCHEMA_VERSION`) is
:meth:`AuditResult.to_json`; the README lists its keys and
:func:`forensics.reports.results_json.check_results` checks them.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensics.core.evidence import Evidence, jsonable
from forensics.core.verdict import Verdict
from forensics.reports.redaction import Redactor

SCHEMA = "unlearning-forensics/results"
SCHEMA_VERSION = 1


@dataclass
class AuditResult:
    """Everything an audit found; :meth:`to_json` is ``results.json``."""

    verdict: Verdict
    evidence: list[Evidence]
    behaviour: dict[str, Any] | None  # role -> set -> {accuracy, mean_logprob, n}
    inputs: dict[str, Any]  # role -> path and content hash
    versions: dict[str, str]
    seed: int
    profile: str
    command: str
    device: str = "cpu"
    dtype: str = "float32"
    redact: bool = False
    lines: list[str] | None = None  # the lines asked for (None: every line)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-line config overrides
    all_lines: bool = False  # every line ran even after the behaviour gate decided NOT_FORGOTTEN
    chat_template: dict[str, Any] | None = None  # the template prompts were rendered with (forensics.inputs.chat)
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)  # line -> {seconds, cached, config}
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few forget facts, O's and U's answers
    skipped_modules: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    out: Path | None = None
    signing_key: str | None = None  # fingerprint of the key that signs the folder (--sign), else None
    #: {"original", "unlearned", "n_devices"} when the models ran on other devices than ``device``
    placement: dict[str, Any] | None = None
    _redactor: Redactor | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The verdict's label (DELETED, SUPPRESSED, NOT_FORGOTTEN or INCONCLUSIVE)."""
        return self.verdict.label

    def line(self, name: str) -> Evidence | None:
        """The evidence of line ``name``, or None when the audit has none."""
        return next((e for e in self.evidence if e.line == name), None)

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` object (schema :data:`SCHEMA`), redacted when the audit ran with
        ``--redact``; each evidence entry carries its line's ``seconds``, ``cached`` and ``config``."""
        evidence = []
        for e in self.evidence:
            entry = e.to_json()
            entry.update(self.timings.get(e.line, {}))
            evidence.append(entry)
        out = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict.to_json(),
            "behaviour": jsonable(self.behaviour),
            "evidence": evidence,
            "examples": jsonable(self.examples),
            "inputs": jsonable(self.inputs),
            "run": {
                "command": self.command,
                "seed": self.seed,
                "profile": self.profile,
                "device": self.device,
                "dtype": self.dtype,
                "redact": self.redact,
                "lines": self.lines,
                "settings": jsonable(self.settings),
                "all_lines": self.all_lines,
                "chat_template": jsonable(self.chat_template),
                "started": self.started,
                "seconds": round(self.seconds, 2),
            },
            "versions": self.versions,
            "skipped_modules": self.skipped_modules,
            "warnings": self.warnings,
        }
        if self.signing_key is not None:
            out["run"]["signing_key"] = self.signing_key
        if self.placement is not None:
            out["run"]["placement"] = self.placement
        if self._redactor is not None:
            out = self._redactor.result(out)
        return out

    def html(self) -> str:
        """The self-contained HTML report (:func:`forensics.reports.html.render_html`)."""
        from forensics.reports.html import render_html

        return render_html(self)

    def write(self, folder: str | Path, pdf: bool = True) -> dict[str, Path]:
        """Write report.html, report.pdf (with ``pdf``), results.json and figures/ into an existing
        folder; returns ``{"results", "html"[, "pdf"]: path}``. Raises :class:`ForensicsInputError`
        when the PDF is asked for and WeasyPrint is not usable."""
        from forensics.reports.results_json import write_results_json

        folder = Path(folder)
        written = {"results": folder / "results.json", "html": folder / "report.html"}
        figures = folder / "figures"
        figures.mkdir(exist_ok=True)
        for e in self.evidence:
            for name, png in e.figures.items():
                (figures / f"{_safe(e.line)}__{_safe(name)}.png").write_bytes(png)
        html_text = self.html()
        written["html"].write_text(html_text, encoding="utf-8")
        if pdf:
            from forensics.reports.pdf import write_pdf

            written["pdf"] = folder / "report.pdf"
            write_pdf(html_text, written["pdf"])
        write_results_json(self, written["results"])
        return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def package_versions() -> dict[str, str]:
    """Python, platform, this package and its main dependencies' versions ("not installed" for
    a missing one), for ``results.json``'s ``versions``."""
    from importlib import metadata

    import forensics

    versions = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "unlearning-forensics": forensics.__version__,
    }
    for package in (
        "torch",
        "transformer-lens",
        "sae-lens",
        "transformers",
        "scikit-learn",
        "numpy",
        "matplotlib",
        "weasyprint",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
