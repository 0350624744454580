"""The audit: run every evidence line the inputs allow, decide the verdict, write the reports.

``forensics.audit(original, unlearned, forget, retain, holdout=..., out=...)`` (and the
``forensics audit`` command, which calls it) does, in order:

1. **Load and validate** every input (models, fact and sequence sets). Any problem is a
   :class:`ForensicsInputError` that ends the audit before anything is written.
2. **Discover the evidence lines**: the modules in :data:`LINE_MODULES` are imported
   (each registers its line in :data:`forensics.evidence.EVIDENCE_LINES`); a module that
   does not exist is skipped, so lines plug in as they are written.
3. **Run each line** whose needs the inputs meet, with the profile's configuration. A
   line that raises is recorded as ``not_run`` with the error's one-line message; the
   audit goes on. Per-line wall time is recorded.
4. **Decide the verdict** (:mod:`forensics.verdict`) and **write** ``report.html``,
   ``report.pdf``, ``results.json`` and ``figures/*.png`` into ``out``, atomically: the
   folder appears whole or not at all.

Profiles (:data:`PROFILES`): ``quick`` (few bootstrap / permutation draws, linear probes
at the final token only: a smoke test, minutes on a laptop), ``standard`` (the default)
and ``thorough`` (each line's own defaults, more draws). A profile sets ``n_boot`` and
``n_perm`` on every line config that has those fields, plus per-line overrides.

Cache and resume. With ``out=DIR`` the audit keeps a cache in the hidden sibling folder
``.DIR.cache`` (or in ``cache_dir`` when given): captured activations
(``activations/``, keyed by weights, tokenizer, data and hooks) and each finished line's
result (``lines/``, keyed by the line's code, its configuration and the inputs' hashes).
The cache survives a failed or interrupted run, so re-running the same command resumes
without recomputing; after a successful run the default sibling cache is deleted (a
``cache_dir`` you chose is kept, so several audits of one original share its activations).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import importlib
import inspect
import json
import logging
import os
import platform
import shutil
import sys
import time
import traceback
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from forensics.data import Fact, Sequence, content_hash, load_facts, load_sequences
from forensics.errors import ForensicsInputError
from forensics.evidence import EVIDENCE_LINES, AuditInputs, Evidence, EvidenceLine, jsonable
from forensics.loading import LoadedModel, check_pair, load_model
from forensics.verdict import Verdict, decide

SCHEMA = "unlearning-forensics/results"
SCHEMA_VERSION = 1

#: Modules that hold evidence lines; a module that does not exist (yet) is skipped.
LINE_MODULES: tuple[str, ...] = (
    "forensics.behaviour",
    "probes.attribute",
    "probes.logit_lens",
    "probes.trace",
    "probes.memorisation",
    "saes.features",
    "saes.steering",
    "forensics.remind",
    "forensics.relearning",
    "forensics.quantization",
    "forensics.membership",
    "forensics.cka",
)

#: Report order; lines not named here follow in alphabetical order.
LINE_ORDER: tuple[str, ...] = (
    "behaviour", "attribute_probes", "logit_lens", "sae_features", "steering_restoration", "remind",
    "relearning_attack", "quantization_attack", "membership_inference", "memorisation_probe", "cka", "trace_detector",
)


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How hard each line works. ``n_boot`` / ``n_perm`` go to every line config that has
    those fields; ``lines`` holds per-line field overrides (unknown fields are ignored, so
    a profile can name a line before it exists)."""

    name: str
    description: str
    n_boot: int | None
    n_perm: int | None
    lines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick", "smoke test: few resamples, one linear probe curve, a small SAE, one relearning seed",
        n_boot=200, n_perm=50,
        lines={
            "attribute_probes": {"curves": ("final/linear",), "n_perm": 10, "probe.linear_c_grid": (0.1,)},
            "behaviour": {"n_boot": 500, "n_perm": 500},
            "trace_detector": {"n_perm": 500},
            "sae_features": {"sae.training_tokens": 100_000},
            "steering_restoration": {"alphas": (1.0, 4.0), "features.sae.training_tokens": 100_000,
                                     "n_retain": 120},
            "relearning_attack": {"seeds": (0,), "eval_steps": (0, 10, 30)},
            "quantization_attack": {"bits": (4,)},
        },
    ),
    "standard": Profile(
        "standard", "the default: every line's own measurement sizes, fewer resamples (1000 bootstrap draws), "
        "three steering scales, two relearning seeds",
        n_boot=1000, n_perm=200,
        lines={
            "attribute_probes": {"n_perm": 100},
            "behaviour": {"n_boot": 2000, "n_perm": 2000},
            "logit_lens": {"n_perm": 1000},
            "trace_detector": {"n_perm": 2000},
            "steering_restoration": {"alphas": (1.0, 2.0, 4.0)},
            "relearning_attack": {"seeds": (0, 1)},
            "cka": {"n_boot": 200},  # descriptive; each draw recomputes every depth's CKA (12 s at 1000)
        },
    ),
    "thorough": Profile(
        "thorough", "every line's own defaults (linear and MLP probes, strength chosen by cross-validation), "
        "2000 resamples: hours on a CPU for the small zoo",
        n_boot=2000, n_perm=None,
        lines={"attribute_probes": {"n_perm": 200}},
    ),
}


def _config_class(run) -> type | None:
    """The dataclass a line's ``config`` parameter is annotated with, if any."""
    try:
        hints = typing.get_type_hints(run)
    except Exception:  # an annotation that cannot be resolved: use the line's defaults
        return None
    hint = hints.get("config")
    candidates = typing.get_args(hint) or (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def line_config(line: EvidenceLine, profile: Profile, seed: int, cache_dir: Path | None):
    """The configuration object a line runs with under ``profile`` (None: the line's defaults).

    ``seed`` and ``cache_dir`` go to the config and to every nested config dataclass that
    has such a field (an SAE's training config ...); ``n_boot`` / ``n_perm`` to the top
    level; the profile's per-line overrides may name nested fields as ``"sae.training_tokens"``.
    Fields a config does not have are ignored.
    """
    cls = _config_class(line.run)
    if cls is None:
        return None
    common: dict[str, Any] = {"seed": seed}
    if cache_dir is not None:
        common["cache_dir"] = cache_dir
    config = _with_fields(cls(), common, nested=True)
    top = {knob: getattr(profile, knob) for knob in ("n_boot", "n_perm") if getattr(profile, knob) is not None}
    config = _with_fields(config, top, nested=False)
    for key, value in profile.lines.get(line.name, {}).items():
        config = _set_path(config, key.split("."), value)
    return config


def profile_problems() -> list[str]:
    """Per-line overrides in :data:`PROFILES` that name a field the line's config lacks
    (a profile that went stale when a line changed). Lines not registered are not checked."""
    registry, _ = discover_lines()
    problems = []
    for profile in PROFILES.values():
        for name, overrides in profile.lines.items():
            cls = _config_class(registry[name].run) if name in registry else None
            if cls is None:
                continue
            for key in overrides:
                config = cls()
                for part in key.split("."):
                    if not (dataclasses.is_dataclass(config) and hasattr(config, part)):
                        problems.append(f"{profile.name}: {name}.{key}")
                        break
                    config = getattr(config, part)
    return problems


def _with_fields(config, values: Mapping[str, Any], nested: bool):
    names = {f.name for f in dataclasses.fields(config) if f.init}
    changes = {k: v for k, v in values.items() if k in names}
    if nested:
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.init and f.name not in changes and dataclasses.is_dataclass(value) and not isinstance(value, type):
                changes[f.name] = _with_fields(value, values, nested=True)
    return dataclasses.replace(config, **changes) if changes else config


def _set_path(config, path: list[str], value: Any):
    names = {f.name for f in dataclasses.fields(config) if f.init}
    if path[0] not in names:
        return config
    if len(path) > 1:
        inner = getattr(config, path[0])
        if not dataclasses.is_dataclass(inner):
            return config
        value = _set_path(inner, path[1:], value)
    return dataclasses.replace(config, **{path[0]: value})


# --------------------------------------------------------------------------- discovery


def discover_lines() -> tuple[dict[str, EvidenceLine], dict[str, str]]:
    """Import the line modules; return the registered lines in report order and the modules
    that exist but failed to import (module -> one-line error)."""
    broken: dict[str, str] = {}
    for module in LINE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # the module exists but one of its imports is missing
                broken[module] = _one_line(err)
        except Exception as err:  # noqa: BLE001 - a broken line must not stop the audit
            broken[module] = _one_line(err)
    rank = {name: i for i, name in enumerate(LINE_ORDER)}
    ordered = sorted(EVIDENCE_LINES, key=lambda n: (rank.get(n, len(rank)), n))
    return {name: EVIDENCE_LINES[name] for name in ordered}, broken


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


# --------------------------------------------------------------------------- the result


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
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)  # line -> {seconds, cached}
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few forget facts, O's and U's answers
    skipped_modules: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    out: Path | None = None
    _redactor: "Redactor | None" = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.verdict.label

    def line(self, name: str) -> Evidence | None:
        return next((e for e in self.evidence if e.line == name), None)

    def to_json(self) -> dict[str, Any]:
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
                "command": self.command, "seed": self.seed, "profile": self.profile, "device": self.device,
                "dtype": self.dtype, "redact": self.redact, "started": self.started,
                "seconds": round(self.seconds, 2),
            },
            "versions": self.versions,
            "skipped_modules": self.skipped_modules,
            "warnings": self.warnings,
        }
        if self._redactor is not None:
            out = self._redactor.result(out)
        return out

    def html(self) -> str:
        from reports.html import render_html

        return render_html(self)

    def write(self, folder: str | Path, pdf: bool = True) -> dict[str, Path]:
        """Write report.html, report.pdf, results.json and figures/ into an existing folder."""
        from reports.results_json import write_results_json

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
            from reports.pdf import write_pdf

            written["pdf"] = folder / "report.pdf"
            write_pdf(html_text, written["pdf"])
        write_results_json(self, written["results"])
        return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


# --------------------------------------------------------------------------- redaction


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
        if value in self.exact:
            return self.exact[value]
        for needle in self._ordered:
            if needle in value:
                value = value.replace(needle, f"[{self.substrings[needle]}]")
        return value

    def apply(self, value: Any) -> Any:
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
        for key in ("deciding_lines", "lines_against"):
            for entry in out["verdict"][key]:
                entry["reason"] = self.apply(entry["reason"])
                entry["metric"] = self.apply(entry["metric"])
        out["verdict"]["reason"] = self.apply(out["verdict"]["reason"])
        out["examples"] = [
            {"id": row["id"], "prompt": self.exact.get(row["prompt"], row["id"]), "answer": "[redacted]",
             "original": "[redacted]", "unlearned": "[redacted]",
             "original_correct": row["original_correct"], "unlearned_correct": row["unlearned_correct"]}
            for row in out["examples"]
        ]
        out["warnings"] = [self.apply(w) for w in out["warnings"]]
        return out


# --------------------------------------------------------------------------- loading


def _load_model(value, device: str, dtype: str) -> LoadedModel:
    if isinstance(value, LoadedModel):
        return value
    return load_model(value, device, dtype)


def _load_facts(value, name: str, tokenizer, warnings: list[str]) -> tuple[list[Fact], Path | None]:
    if isinstance(value, (str, Path)):
        facts, found = load_facts(value, tokenizer)
        warnings.extend(found)
        return facts, Path(value)
    facts = list(value)
    if not facts:
        raise ForensicsInputError(f"the {name} set is empty")
    if not all(isinstance(f, Fact) for f in facts):
        raise ForensicsInputError(f"the {name} set must be a JSONL path or a list of forensics.data.Fact")
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
            raise ForensicsInputError(f"the holdout set overlaps the forget set ({len(shared)} shared prompts, e.g. "
                                      f"{sorted(shared)[0][:80]!r}); the holdout must hold facts no model saw")


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
            raise ForensicsInputError(f"{name} item {i + 1} is {n} tokens long, more than the model's context "
                                      f"window of {n_ctx} tokens")


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
    return {"path": str(m.path), "name": m.name, "architecture": m.architecture, "n_layers": m.n_layers,
            "weights_sha256": m.weights_hash, "dtype": m.dtype}


def package_versions() -> dict[str, str]:
    from importlib import metadata

    import forensics

    versions = {"python": platform.python_version(), "platform": platform.platform(),
                "unlearning-forensics": forensics.__version__}
    for package in ("torch", "transformer-lens", "sae-lens", "transformers", "scikit-learn", "numpy",
                    "matplotlib", "weasyprint"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


# --------------------------------------------------------------------------- running lines


def _line_key(line: EvidenceLine, config, input_hashes: dict[str, str]) -> str:
    """Cache key of a line's result: its code, its configuration and its inputs."""
    module = sys.modules.get(line.run.__module__)
    try:
        source = inspect.getsource(module) if module else line.name
    except (OSError, TypeError):
        source = line.name
    cfg = {}
    if config is not None and dataclasses.is_dataclass(config):
        cfg = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "cache_dir"}
    blob = json.dumps({"line": line.name, "source": hashlib.sha256(source.encode()).hexdigest(),
                       "config": cfg, "inputs": input_hashes, "needs": list(line.needs)},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _evidence_from_json(obj: dict[str, Any]) -> Evidence:
    return Evidence(
        line=obj["line"], question=obj["question"], status=obj["status"], effect=obj["effect"],
        control=obj["control"], ci=tuple(obj["ci"]) if obj["ci"] else None, p_value=obj["p_value"],
        vote=obj["vote"], reason=obj["reason"], metric=obj["metric"], details=obj["details"],
        figures={k: base64.b64decode(v) for k, v in obj.get("figure_data", {}).items()},
    )


def _run_line(line: EvidenceLine, inputs: AuditInputs, config) -> Evidence:
    """Run one line; an unexpected error becomes a not_run Evidence with its one-line message."""
    try:
        evidence = line.run(inputs, config)
        if not isinstance(evidence, Evidence):
            raise TypeError(f"the line returned {type(evidence).__name__}, not Evidence")
        return evidence
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - one line failing must not end the audit
        evidence = Evidence.not_run(line.name, line.question, f"error: {_one_line(err)}")
        evidence.details = {"traceback": traceback.format_exc(limit=8).splitlines()[-12:]}
        return evidence


def _progress(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def _examples(inputs: AuditInputs, k: int = 5) -> list[dict[str, Any]]:
    """A few forget facts with O's and U's greedy first answer token (shown in the report)."""
    import torch

    rows = []
    for i, fact in enumerate(inputs.forget[:k]):
        row = {"id": fact.id or f"forget-{i}", "prompt": fact.prompt, "answer": fact.answer}
        for role, loaded in (("original", inputs.original), ("unlearned", inputs.unlearned)):
            ids = loaded.tokenizer(fact.prompt)["input_ids"]
            with torch.no_grad():
                logits = loaded.model(torch.tensor([ids], device=loaded.device))[0, -1]
            predicted = int(logits.argmax())
            row[role] = loaded.tokenizer.decode([predicted])
            answer_ids = loaded.tokenizer(fact.answer, add_special_tokens=False)["input_ids"]
            row[f"{role}_correct"] = bool(answer_ids) and predicted == answer_ids[0]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the audit


def audit(
    original,
    unlearned,
    forget,
    retain,
    holdout=None,
    reference=None,
    sequences=None,
    out: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int = 0,
    profile: str = "standard",
    redact: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    lines: list[str] | None = None,
    pdf: bool = True,
    command: str | None = None,
) -> AuditResult:
    """Audit ``unlearned`` against ``original`` and return an :class:`AuditResult`.

    Models are checkpoint folders or already-loaded :class:`LoadedModel`; data sets are
    JSONL paths or lists of :class:`Fact` / :class:`Sequence`. With ``out``, the reports
    are written there (the folder must not exist or be empty; it appears only when the
    audit succeeded). ``lines`` restricts the audit to the named lines (behaviour always
    runs). Bad input raises :class:`ForensicsInputError` before anything is written.
    """
    from forensics.output import atomic_output_dir, check_output_dir

    started = time.time()
    if profile not in PROFILES:
        raise ForensicsInputError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    if out is not None:
        out = check_output_dir(out)
    if command is None:
        command = f"forensics.audit(original={str(getattr(original, 'path', original))!r}, " \
                  f"unlearned={str(getattr(unlearned, 'path', unlearned))!r}, profile={profile!r}, seed={seed})"

    # 1. Inputs: everything is loaded and validated before any work or any file (data files
    #    first: they fail fastest), and nothing is printed until they are, so bad input ends
    #    with the one-line error alone.
    warnings: list[str] = []
    data_log = logging.getLogger("forensics.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # warnings are collected on the second, full read below
    try:
        early = {name: load_facts(value)[0] for name, value in (("forget", forget), ("retain", retain),
                                                                ("holdout", holdout)) if isinstance(value, (str, Path))}
        check_fact_sets(early)
        if isinstance(sequences, (str, Path)):
            load_sequences(sequences)
    finally:
        data_log.setLevel(level)
    registry, broken = discover_lines()
    unknown = sorted(set(lines or ()) - set(registry))
    if unknown:
        raise ForensicsInputError(f"unknown evidence line(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    original_m = _load_model(original, device, dtype)
    unlearned_m = _load_model(unlearned, device, dtype)
    check_pair(original_m, unlearned_m)
    reference_m = None
    if reference is not None:
        reference_m = _load_model(reference, device, dtype)
        check_pair(original_m, reference_m)
    tok = original_m.tokenizer
    forget_f, forget_p = _load_facts(forget, "forget", tok, warnings)
    retain_f, retain_p = _load_facts(retain, "retain", tok, warnings)
    holdout_f, holdout_p = _load_facts(holdout, "holdout", tok, warnings) if holdout is not None else (None, None)
    seq, seq_p = _load_sequences(sequences, warnings) if sequences is not None else (None, None)
    check_fact_sets({"forget": forget_f, "retain": retain_f, "holdout": holdout_f or []})
    check_lengths(original_m, {"forget": forget_f, "retain": retain_f, "holdout": holdout_f or []}, seq)
    _progress(f"auditing {unlearned_m.name} against {original_m.name}: {len(forget_f)} forget, "
              f"{len(retain_f)} retain, {len(holdout_f or [])} holdout facts; profile {profile}", progress)
    inputs = AuditInputs(original=original_m, unlearned=unlearned_m, forget=forget_f, retain=retain_f,
                         holdout=holdout_f, reference=reference_m, sequences=seq)
    records: dict[str, Any] = {"original": _model_record(original_m), "unlearned": _model_record(unlearned_m),
                               "reference": _model_record(reference_m) if reference_m else None}
    input_hashes = {"original": original_m.weights_hash, "unlearned": unlearned_m.weights_hash,
                    "reference": reference_m.weights_hash if reference_m else None}
    for name, items, path in (("forget", forget_f, forget_p), ("retain", retain_f, retain_p),
                              ("holdout", holdout_f, holdout_p), ("sequences", seq, seq_p)):
        if items is None:
            records[name] = None
            continue
        digest = content_hash(items)
        input_hashes[name] = digest
        records[name] = {"path": str(path) if path else None, "n": len(items), "content_sha256": digest,
                         "file_sha256": _file_sha256(path)}

    # 2. The cache (survives a failed run; see the module docstring).
    own_cache = cache_dir is None and out is not None
    if cache_dir is None and out is not None:
        cache_dir = out.parent / f".{out.name}.cache"
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    if cache_dir is not None:
        (cache_dir / "lines").mkdir(parents=True, exist_ok=True)
    activations = cache_dir / "activations" if cache_dir is not None else None

    # 3. The lines.
    available = inputs.available()
    evidence: list[Evidence] = []
    timings: dict[str, dict[str, Any]] = {}
    chosen = [n for n in registry if lines is None or n in lines or n == "behaviour"]
    for i, name in enumerate(chosen, start=1):
        line = registry[name]
        missing = line.missing(available)
        if missing:
            evidence.append(Evidence.not_run(name, line.question, f"needs {', '.join(missing)}, not given"))
            timings[name] = {"seconds": 0.0, "cached": False}
            _progress(f"[{i}/{len(chosen)}] {name}: not run (needs {', '.join(missing)})", progress)
            continue
        config = line_config(line, prof, seed, activations)
        key = _line_key(line, config, input_hashes)
        cached = cache_dir / "lines" / f"{name}-{key}.json" if cache_dir is not None else None
        t0 = time.time()
        if cached is not None and cached.is_file():
            stored = json.loads(cached.read_text())
            result = _evidence_from_json(stored["evidence"])
            timings[name] = {"seconds": stored["seconds"], "cached": True}
        else:
            _progress(f"[{i}/{len(chosen)}] {name} ...", progress)
            result = _run_line(line, inputs, config)
            timings[name] = {"seconds": round(time.time() - t0, 2), "cached": False}
            if cached is not None and not result.reason.startswith("error:"):
                tmp = cached.with_suffix(".tmp")
                tmp.write_text(json.dumps({"seconds": timings[name]["seconds"],
                                           "evidence": result.to_json(include_figures=True)}))
                tmp.replace(cached)
        evidence.append(result)
        vote = result.vote or ("not run" if result.status == "not_run" else "no vote")
        _progress(f"[{i}/{len(chosen)}] {name}: {vote} ({timings[name]['seconds']:.1f} s"
                  f"{', cached' if timings[name]['cached'] else ''})", progress)

    # 4. Verdict, result, reports.
    verdict = decide(evidence, has_holdout=bool(holdout_f))
    behaviour = next((e for e in evidence if e.line == "behaviour" and e.status == "ok"), None)
    redactor = Redactor({"forget": forget_f, "retain": retain_f, "holdout": holdout_f or [],
                         "sequences": seq or []}) if redact else None
    result = AuditResult(
        verdict=verdict, evidence=evidence, behaviour=behaviour.details.get("table") if behaviour else None,
        inputs=records, versions=package_versions(), seed=seed, profile=profile, command=command,
        device=device, dtype=dtype, redact=redact, timings=timings, examples=_examples(inputs),
        skipped_modules=broken, warnings=warnings,
        started=_dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        _redactor=redactor,
    )
    result.seconds = time.time() - started
    if out is not None:
        _progress("writing the reports ...", progress)
        with atomic_output_dir(out) as tmp:
            result.write(tmp, pdf=pdf)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report folder is an ordinary one
        result.out = out
        if own_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)
        _progress(f"verdict: {verdict.label} ({verdict.confidence}); report: {out / 'report.html'}", progress)
    return result


class _CallableModule(type(sys)):
    """``forensics.audit(...)`` calls :func:`audit` even where ``forensics.audit`` is this module."""

    def __call__(self, *args, **kwargs) -> AuditResult:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
