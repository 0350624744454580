"""The audit pipeline: inputs -> context -> lines -> verdict -> reports.

``forensics.audit(...)`` (and the ``forensics audit`` command) loads and validates every
input (:mod:`forensics.inputs.prepare`), builds the audit context that shares intermediate results
between lines (:mod:`forensics.core.context`), runs every registered line the inputs allow
(:mod:`forensics.core.runner`, lines from :mod:`forensics.core.registry`), decides the verdict
(:mod:`forensics.core.verdict`) and writes ``report.html``, ``report.pdf``, ``results.json``
and ``figures/`` into ``out``, atomically: the folder appears whole or not at all.

Cache and resume. With ``out=DIR`` the audit keeps a cache in the hidden sibling folder
``.DIR.cache`` (or in ``cache_dir`` when given): captured activations and SAEs, and each
finished line's result. It survives a failed or interrupted run, so re-running the same
command resumes; after a successful run the default sibling cache is deleted (a
``cache_dir`` you chose is kept, so several audits of one original share it).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError
from forensics.core.profiles import PROFILES


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
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    pdf: bool = True,
    command: str | None = None,
    all_lines: bool = False,
    chat_template: bool = False,
    sign: str | Path | None = None,
    unlearned_device: str | None = None,
    n_devices: int = 1,
):
    """Audit ``unlearned`` against ``original``; returns a :class:`forensics.reports.results.AuditResult`.

    Models are checkpoint folders or loaded :class:`forensics.inputs.loading.LoadedModel`; data
    sets are JSONL paths or lists of :class:`forensics.inputs.data.Fact` / ``Sequence``. ``out``:
    write the reports there (the folder must not exist or be empty). ``lines``: run only
    these lines (behaviour always runs). ``settings``: per-line config overrides,
    ``{line: {"field.sub": value}}``, applied after the profile. ``all_lines``: run every line
    even when the behaviour gate already decided NOT_FORGOTTEN (by default the others are
    then recorded as skipped: none of them can change that verdict). ``chat_template``: render
    every fact prompt with the original checkpoint's chat template (:mod:`forensics.inputs.chat`;
    recorded in the report). ``sign``: an Ed25519 private key (PEM) that signs the output folder
    (:mod:`forensics.reports.attestation`; needs ``out``). ``unlearned_device``: put the
    unlearned model on another device than ``device`` (O, the reference); ``n_devices``: spread
    each model over that many GPUs (recorded in the report when not the default). Bad input raises
    :class:`ForensicsInputError` before anything is written.
    """
    from forensics.compute.atomic import check_cache_dir, check_output_dir
    from forensics.core.context import AuditContext
    from forensics.core.registry import discover_lines, gate_of
    from forensics.core.runner import run_lines
    from forensics.core.verdict import decide
    from forensics.inputs.prepare import load_inputs

    started = time.time()
    _check_arguments(profile, seed, lines, settings)
    signing_key = None
    if sign is not None:
        from forensics.reports.attestation import read_private_key

        if out is None:
            raise ForensicsInputError("signing needs an output folder (--out) to sign")
        signing_key = read_private_key(sign)
    out = check_output_dir(out) if out is not None else None
    own_cache = cache_dir is None and out is not None
    cache = (
        check_cache_dir(cache_dir, out)
        if cache_dir is not None
        else out.parent / f".{out.name}.cache"
        if out is not None
        else None
    )
    registry, broken = discover_lines()
    chosen = _chosen_lines(registry, lines, settings, PROFILES[profile], seed)
    inputs = load_inputs(
        original,
        unlearned,
        forget,
        retain,
        holdout,
        reference,
        sequences,
        device,
        dtype,
        chat_template=chat_template,
        unlearned_device=unlearned_device,
        n_devices=n_devices,
    )
    say = (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
    assert inputs.unlearned is not None and inputs.forget is not None and inputs.retain is not None
    say(
        f"auditing {inputs.unlearned.name} against {inputs.original.name}: {len(inputs.forget)} forget, "
        f"{len(inputs.retain)} retain, {len(inputs.holdout or [])} holdout facts; profile {profile}"
    )
    ctx = AuditContext(
        original=inputs.original,
        unlearned=inputs.unlearned,
        forget=inputs.forget,
        retain=inputs.retain,
        holdout=inputs.holdout,
        reference=inputs.reference,
        sequences=inputs.sequences,
        cache_dir=cache,
    )
    evidence, timings = run_lines(
        ctx, chosen, PROFILES[profile], seed, settings or {}, inputs.hashes, cache, say, all_lines=all_lines
    )
    result = _result(
        inputs,
        ctx,
        evidence,
        timings,
        decide(
            evidence,
            has_holdout=bool(inputs.holdout),
            gate=gate_of(registry),
            suppressing={name for name, spec in registry.items() if "suppressed" in spec.votes},
        ),
        broken,
        seed=seed,
        profile=profile,
        device=device,
        dtype=dtype,
        redact=redact,
        started=started,
        lines=list(lines) if lines is not None else None,
        settings=dict(settings or {}),
        all_lines=all_lines,
        chat_template=inputs.chat_template,
        command=command or _api_command(original, unlearned, profile, seed),
        placement=_placement(device, unlearned_device, n_devices),
    )
    if out is not None:
        say("writing the reports ...")
        _write(result, out, pdf, signing_key)
        if own_cache:
            assert cache is not None
            shutil.rmtree(cache, ignore_errors=True)
        say(f"verdict: {result.verdict.label} ({result.verdict.confidence}); report: {out / 'report.html'}")
    return result


def _placement(device: str, unlearned_device: str | None, n_devices: int) -> dict[str, Any] | None:
    """Where the models ran, when not all on ``device`` (None: the default placement)."""
    if (unlearned_device in (None, device)) and n_devices == 1:
        return None
    return {"original": device, "unlearned": unlearned_device or device, "n_devices": n_devices}


def _check_arguments(profile: str, seed, lines, settings) -> None:
    """The plain arguments' types and values (one-line errors)."""
    if profile not in PROFILES:
        raise ForensicsInputError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ForensicsInputError(f"seed must be an integer, got {seed!r}")
    if lines is not None and (isinstance(lines, str) or not all(isinstance(n, str) for n in lines)):
        raise ForensicsInputError(f"lines must be a list of line names, got {lines!r}")
    if settings is not None and not (
        isinstance(settings, dict) and all(isinstance(v, dict) for v in settings.values())
    ):
        raise ForensicsInputError("settings must be a dict of line name -> {field: value}")


def _chosen_lines(registry: dict, lines: list[str] | None, settings: Mapping | None, profile, seed: int) -> dict:
    """The lines to run in report order (behaviour always). Unknown line names and settings
    that do not fit a line's config are bad input, refused before any work."""
    from forensics.core.config import line_config

    unknown = sorted(set(lines or ()) - set(registry)) + sorted(set(settings or ()) - set(registry))
    if unknown:
        raise ForensicsInputError(f"unknown evidence line(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    for name, overrides in (settings or {}).items():
        line_config(registry[name], profile, seed, overrides)
    return {name: spec for name, spec in registry.items() if lines is None or name in lines or spec.role == "gate"}


def _result(inputs, ctx, evidence, timings, verdict, broken, started: float, **run: Any):
    from forensics.core.registry import discover_lines, gate_of
    from forensics.reports.redaction import Redactor
    from forensics.reports.results import AuditResult, package_versions

    gate = gate_of(discover_lines()[0])
    behaviour = next((e for e in evidence if e.line == gate and e.status == "ok"), None)
    redactor = (
        Redactor(
            {
                "forget": inputs.forget,
                "retain": inputs.retain,
                "holdout": inputs.holdout or [],
                "sequences": inputs.sequences or [],
            }
        )
        if run["redact"]
        else None
    )
    result = AuditResult(
        verdict=verdict,
        evidence=evidence,
        behaviour=behaviour.details.get("table") if behaviour else None,
        inputs=inputs.records,
        versions=package_versions(),
        timings=timings,
        examples=examples(ctx),
        skipped_modules=broken,
        warnings=inputs.warnings,
        _redactor=redactor,
        started=_dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(timespec="seconds"),
        **run,
    )
    result.seconds = time.time() - started
    return result


def _write(result, out: Path, pdf: bool, signing_key=None) -> None:
    """Write the reports into ``out`` atomically; with ``signing_key`` (an Ed25519 private key)
    the folder is signed last, inside the same atomic step."""
    from forensics.compute.atomic import atomic_output_dir

    if signing_key is not None:
        from forensics.reports.attestation import fingerprint, public_pem_of

        result.signing_key = fingerprint(public_pem_of(signing_key))
    with atomic_output_dir(out) as tmp:
        result.write(tmp, pdf=pdf)
        if signing_key is not None:
            from forensics.core.keys import code_version
            from forensics.reports.attestation import audit_inputs, sign_folder

            sign_folder(tmp, signing_key, audit_inputs(result.inputs), code_version(), result.verdict.label)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report folder is an ordinary one
    result.out = out


def examples(ctx, k: int = 5) -> list[dict[str, Any]]:
    """The first ``k`` forget facts with O's and U's greedy next token after the prompt and
    whether it is the answer's first token (the report's examples table)."""
    rows = []
    scores = {role: ctx.fact_scores(getattr(ctx, role), ctx.forget) for role in ("original", "unlearned")}
    for i, fact in enumerate(ctx.forget[:k]):
        row = {"id": fact.id or f"forget-{i}", "prompt": fact.prompt, "answer": fact.answer}
        for role, loaded in (("original", ctx.original), ("unlearned", ctx.unlearned)):
            predicted = int(scores[role].predicted[i])
            answer_ids = loaded.tokenizer(fact.answer, add_special_tokens=False)["input_ids"]
            row[role] = loaded.tokenizer.decode([predicted])
            row[f"{role}_correct"] = bool(answer_ids) and predicted == answer_ids[0]
        rows.append(row)
    return rows


def _api_command(original, unlearned, profile: str, seed: int) -> str:
    return (
        f"forensics.audit(original={str(getattr(original, 'path', original))!r}, "
        f"unlearned={str(getattr(unlearned, 'path', unlearned))!r}, profile={profile!r}, seed={seed})"
    )
