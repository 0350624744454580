"""Running evidence lines: needs check, configuration, the resume cache, error capture.

Each finished line's result is stored in ``cache_dir/lines/<line>-<key>.json``, where the
key is a SHA-256 over the line's module source, its configuration and the inputs' hashes,
so re-running an interrupted audit reads finished lines back instead of recomputing them.
A line that raises is recorded as "not run" with the error's one-line message (and a
short traceback in ``details``); the audit goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from forensics.compute.atomic import read_json, write_json_atomic
from forensics.core.config import line_config
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence
from forensics.core.keys import code_version, stable_key
from forensics.core.minimum import VoteMinimum, shortfall, subjects_needed
from forensics.core.profiles import Profile
from forensics.core.registry import LineSpec, gate_of, one_line
from forensics.core.verdict import CONTROLLED_VOTES


def line_key(line: LineSpec, config: Any, input_hashes: Mapping[str, Any]) -> str:
    """Cache key of a line's result (32 hex characters): its module's source and the whole
    package's (:func:`forensics.core.keys.code_version`, dependency versions included), its
    configuration and its inputs (models by :func:`forensics.core.keys.model_identity`: weights,
    config, dtype, device, tokenizer; data sets by content hash)."""
    module = sys.modules.get(line.module)
    try:
        source = inspect.getsource(module) if module else inspect.getsource(line.run)
    except (OSError, TypeError):  # defined interactively: its compiled code stands in for the source
        code = inspect.unwrap(line.run).__code__
        source = repr((code.co_code, code.co_consts, code.co_names))
    cfg = dataclasses.asdict(cast(Any, config)) if config is not None and dataclasses.is_dataclass(config) else {}
    return stable_key(
        {
            "line": line.name,
            "source": hashlib.sha256(source.encode()).hexdigest(),
            "code": code_version(),
            "config": cfg,
            "inputs": dict(input_hashes),
            "needs": list(line.needs),
        }
    )[:32]


def run_line(line: LineSpec, ctx: AuditContext, config: Any) -> Evidence:
    """Run one line; an unexpected error becomes a ``not_run`` Evidence with its one-line message.

    A controlled vote (deleted / suppressed / not_forgotten) is withheld when the forget or
    holdout set is below the line's :class:`forensics.core.minimum.VoteMinimum`; the reason then
    starts with ``"no vote: ..."`` and ``details["vote_withheld"]`` keeps what it would have been.
    A vote on a valid subject-permutation test (:func:`forensics.core.minimum.subjects_needed`:
    ``suppressed`` on a subject-permutation p, the gate's ``not_forgotten`` with its subject p
    below 0.05) is checked for its fact count only.
    """
    try:
        evidence = line.run(ctx, config)
        if not isinstance(evidence, Evidence):
            raise TypeError(f"the line returned {type(evidence).__name__}, not Evidence")
        if evidence.line != line.name:
            raise ValueError(f"the line returned evidence named {evidence.line!r}")
        if evidence.vote is not None and evidence.vote not in line.votes:
            raise ValueError(f"the line voted {evidence.vote!r} but declares votes {line.votes}")
        if evidence.vote in CONTROLLED_VOTES and isinstance(config, VoteMinimum):
            # a vote on a valid subject-permutation test needs enough facts, not enough subjects
            subjects = subjects_needed(evidence.vote, evidence.p_value, evidence.details)
            short = shortfall({"forget": ctx.forget, "holdout": ctx.holdout}, config, subjects=subjects)
            if short:
                evidence.details = {**evidence.details, "vote_withheld": {"vote": evidence.vote, "why": short}}
                evidence.reason = f"no vote: {short} (would have voted {evidence.vote}: {evidence.reason})"
                evidence.vote = None
        return evidence
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - one line failing must not end the audit
        evidence = Evidence.not_run(line.name, line.question, f"error: {one_line(err)}")
        evidence.details = {"traceback": traceback.format_exc(limit=8).splitlines()[-12:]}
        return evidence


#: The reason recorded for a line skipped after the gate decided.
SKIPPED_AFTER_GATE = (
    "skipped: the behaviour gate decided NOT_FORGOTTEN (U still answers F), so no other line "
    "can change the verdict; --all-lines runs them for description"
)


def run_lines(
    ctx: AuditContext,
    lines: Mapping[str, LineSpec],
    profile: Profile,
    seed: int,
    overrides: Mapping[str, Mapping[str, Any]],
    input_hashes: Mapping[str, Any],
    cache_dir: Path | None,
    say: Callable[[str], None],
    all_lines: bool = False,
) -> tuple[list[Evidence], dict[str, dict]]:
    """Run ``lines`` in order on ``ctx``; returns the evidence and ``{line: {seconds, cached,
    config}}`` (``config``: the configuration the line ran with, as a dict).

    A line whose needs the inputs do not meet is recorded as "not run". Once the behaviour
    gate (the line with the ``"gate"`` role, :func:`forensics.core.registry.gate_of`) votes ``not_forgotten``, the remaining lines are recorded as "not run"
    with :data:`SKIPPED_AFTER_GATE`, unless ``all_lines``. With ``cache_dir`` finished results
    are read from and written to ``cache_dir/lines`` (see the module docstring). ``say``
    receives one progress message per line.
    """
    available = ctx.available()
    evidence: list[Evidence] = []
    timings: dict[str, dict[str, Any]] = {}
    if cache_dir is not None:
        (cache_dir / "lines").mkdir(parents=True, exist_ok=True)
    decided = False
    gate = gate_of(lines)
    for i, (name, line) in enumerate(lines.items(), start=1):
        step = f"[{i}/{len(lines)}] {name}"
        if decided:
            evidence.append(Evidence.not_run(name, line.question, SKIPPED_AFTER_GATE))
            timings[name] = {"seconds": 0.0, "cached": False, "config": None}
            say(f"{step}: skipped (NOT_FORGOTTEN)")
            continue
        missing = line.missing(available)
        if missing:
            evidence.append(Evidence.not_run(name, line.question, f"needs {', '.join(missing)}, not given"))
            timings[name] = {"seconds": 0.0, "cached": False}
            say(f"{step}: not run (needs {', '.join(missing)})")
            continue
        config = line_config(line, profile, seed, overrides.get(name))
        stored = cache_dir / "lines" / f"{name}-{line_key(line, config, input_hashes)}.json" if cache_dir else None
        start = time.time()
        saved = _read_stored(stored)
        if saved is not None:
            result = Evidence.from_json(saved["evidence"])
            timings[name] = {"seconds": saved["seconds"], "cached": True}
        else:
            say(f"{step} ...")
            result = run_line(line, ctx, config)
            timings[name] = {"seconds": round(time.time() - start, 2), "cached": False}
            if stored is not None and not result.reason.startswith("error:"):
                write_json_atomic(
                    stored, {"seconds": timings[name]["seconds"], "evidence": result.to_json(include_figures=True)}
                )
        timings[name]["config"] = (
            json.loads(json.dumps(dataclasses.asdict(config), default=str)) if config is not None else None
        )
        evidence.append(result)
        decided = name == gate and result.status == "ok" and result.vote == "not_forgotten" and not all_lines
        vote = result.vote or ("not run" if result.status == "not_run" else "no vote")
        say(f"{step}: {vote} ({timings[name]['seconds']:.1f} s{', cached' if timings[name]['cached'] else ''})")
    return evidence, timings


def _read_stored(path: Path | None) -> dict | None:
    """A finished line's stored result, or None (absent, unreadable or corrupt: a cache miss)."""
    saved = read_json(path) if path is not None else None
    if saved is None:
        return None
    try:
        Evidence.from_json(saved["evidence"])
        float(saved["seconds"])
        return saved
    except (ValueError, KeyError, TypeError):
        return None
