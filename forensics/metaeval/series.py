"""A checkpoint series: audit every checkpoint of one unlearning run (or every release of a
vendor's model) against one original, and gate on the verdicts.

``forensics series --original O --checkpoints C1 C2 ... | --checkpoints-dir DIR --forget F
--retain R --holdout H --out OUT [--fail-on SUPPRESSED,NOT_FORGOTTEN] [--gate any|last]``
(and :func:`run_series`) audits each checkpoint in order with the same data, profile and seed,
sharing one activation / SAE / line cache for O, and writes, atomically:

- ``OUT/checkpoints/<name>/``: each checkpoint's full audit (report.html, results.json, figures);
- ``OUT/series.json``: per checkpoint its verdict, confidence and, for every line that can vote,
  its ``effect - control``, CI and vote; the first checkpoint whose verdict differs from the one
  before it; the gate's outcome;
- ``OUT/series.html`` and ``OUT/series.png``: the table and each voting line's
  ``effect - control`` over the checkpoints, with the verdicts.

Order: the order given, or for ``--checkpoints-dir`` its sub-folders that hold a
``config.json``, ``checkpoint-<step>`` folders by step (as ``transformers``' Trainer writes them),
then any others by name. The gate fails (exit code 1 from the command) when any checkpoint
(``--gate any``, the default) or the last one (``--gate last``) gets a verdict in ``--fail-on``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError
from forensics.metaeval.executor import ExecutorConfig, run_jobs

VERDICTS = ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "INCONCLUSIVE")


@dataclass
class SeriesConfig:
    """How the series is audited and gated."""

    #: Audit profile (quick, standard, thorough).
    profile: str = "standard"
    #: The audits' seed.
    seed: int = 0
    #: Only these lines (None: every line the inputs allow).
    lines: tuple[str, ...] | None = None
    #: Verdicts that fail the gate.
    fail_on: tuple[str, ...] = ("SUPPRESSED", "NOT_FORGOTTEN")
    #: "any": the gate fails when any checkpoint's verdict is in ``fail_on``; "last": only the last's.
    gate: str = "any"
    #: Device of the original (and the reference).
    device: str = "cpu"
    dtype: str = "float32"
    #: Device of the checkpoints (None: ``device``).
    unlearned_device: str | None = None
    #: GPUs each model is spread over.
    n_devices: int = 1
    #: Write each checkpoint's report.pdf too.
    pdf: bool = False


def checkpoint_order(folder: str | Path) -> list[Path]:
    """The checkpoints in ``folder``: sub-folders with a ``config.json``, ``checkpoint-<step>``
    ones by step first, then the others by name. Raises when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ForensicsInputError(f"checkpoint folder {folder} does not exist or is not a folder")
    found = [p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    if not found:
        raise ForensicsInputError(f"{folder} holds no checkpoint (no sub-folder with a config.json)")

    def key(path: Path):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        return (0, int(m.group(1)), "") if m else (1, 0, path.name)

    return sorted(found, key=key)


def gate(verdicts: Sequence[str], fail_on: Sequence[str], mode: str) -> tuple[bool, str]:
    """``(passed, reason)`` of the gate over the verdicts in checkpoint order."""
    if mode not in ("any", "last"):
        raise ForensicsInputError(f"--gate must be any or last, not {mode!r}")
    unknown = sorted(set(fail_on) - set(VERDICTS))
    if unknown:
        raise ForensicsInputError(
            f"--fail-on: unknown verdict(s) {', '.join(unknown)}; choose from {', '.join(VERDICTS)}"
        )
    considered = list(enumerate(verdicts))[-1:] if mode == "last" else list(enumerate(verdicts))
    failing = [(i, v) for i, v in considered if v in fail_on]
    if failing:
        i, v = failing[0]
        return False, f"checkpoint {i + 1} of {len(verdicts)} is {v} (--fail-on {','.join(fail_on)}, --gate {mode})"
    return True, f"no {'' if mode == 'any' else 'last '}checkpoint is {' or '.join(fail_on)}"


def first_change(verdicts: Sequence[str]) -> int | None:
    """Index of the first checkpoint whose verdict differs from the one before it (None: none)."""
    return next((i for i in range(1, len(verdicts)) if verdicts[i] != verdicts[i - 1]), None)


def summarise(name: str, results: dict[str, Any]) -> dict[str, Any]:
    """One checkpoint's row of ``series.json`` from its ``results.json``."""
    lines = {}
    for e in results["evidence"]:
        if e["status"] == "ok" and e["difference"] is not None:
            lines[e["line"]] = {"difference": e["difference"], "ci": e["ci"], "vote": e["vote"]}
    v = results["verdict"]
    return {"checkpoint": name, "verdict": v["label"], "confidence": v["confidence"], "lines": lines}


def run_series(
    original: str | Path,
    checkpoints: Sequence[str | Path],
    forget,
    retain,
    holdout,
    out: str | Path,
    config: SeriesConfig | None = None,
    reference=None,
    progress: bool = True,
    executor: ExecutorConfig | None = None,
) -> dict[str, Any]:
    """Audit every checkpoint (see the module docstring); returns what ``series.json`` holds.
    ``executor``: where the audits run (:mod:`forensics.metaeval.executor`). Bad input raises
    :class:`ForensicsInputError` before any audit runs."""
    from forensics.compute.atomic import atomic_output_dir, check_output_dir
    from forensics.inputs.loading import load_model

    config = config or SeriesConfig()
    out = check_output_dir(out)
    gate([], config.fail_on, config.gate)  # refuse a bad gate before any work
    paths = [Path(c) for c in checkpoints]
    if len(paths) < 2:
        raise ForensicsInputError("a series needs at least two checkpoints")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ForensicsInputError("two checkpoints share a folder name; give them distinct names")
    cache = out.parent / f".{out.name}.cache"
    executor = executor or ExecutorConfig()
    # in this process O is loaded once; a Ray task loads it from its folder
    o = (
        load_model(original, config.device, config.dtype, config.n_devices)
        if executor.executor == "local"
        else original
    )
    with atomic_output_dir(out) as tmp:
        jobs = [
            (o, path, forget, retain, holdout, reference, tmp / "checkpoints" / path.name, cache, config, progress)
            for path in paths
        ]
        done = run_jobs(series_job, jobs, executor)
        rows = [summarise(path.name, results) for path, results in zip(paths, done)]
        verdicts = [r["verdict"] for r in rows]
        passed, why = gate(verdicts, config.fail_on, config.gate)
        change = first_change(verdicts)
        series = {
            "original": str(original),
            "checkpoints": rows,
            "first_change": None
            if change is None
            else {
                "index": change,
                "checkpoint": rows[change]["checkpoint"],
                "from": verdicts[change - 1],
                "to": verdicts[change],
            },
            "gate": {"passed": passed, "reason": why, "fail_on": list(config.fail_on), "mode": config.gate},
            "profile": config.profile,
            "seed": config.seed,
        }
        png = series_figure(rows)
        (tmp / "series.png").write_bytes(png)
        (tmp / "series.json").write_text(json.dumps(series, indent=2) + "\n", encoding="utf-8")
        (tmp / "series.html").write_text(series_html(series, png), encoding="utf-8")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    return series


def series_job(
    original,
    checkpoint: Path,
    forget,
    retain,
    holdout,
    reference,
    out: Path,
    cache: Path,
    config: SeriesConfig,
    progress: bool,
) -> dict[str, Any]:
    """One checkpoint's audit (its report written to ``out``); returns its ``results.json``."""
    from forensics.core.pipeline import audit

    if progress:
        print(f"== checkpoint {checkpoint.name}", flush=True)
    result = audit(
        original=original,
        unlearned=checkpoint,
        forget=forget,
        retain=retain,
        holdout=holdout,
        reference=reference,
        out=out,
        device=config.device,
        dtype=config.dtype,
        unlearned_device=config.unlearned_device,
        n_devices=config.n_devices,
        seed=config.seed,
        profile=config.profile,
        progress=progress,
        cache_dir=cache,
        pdf=config.pdf,
        lines=list(config.lines) if config.lines else None,
        command=f"forensics series  # checkpoint {checkpoint.name}",
    )
    return result.to_json()


def series_figure(rows: list[dict[str, Any]]) -> bytes:
    """Each line's ``effect - control`` over the checkpoints (filled marker: the line voted)."""
    from forensics.compute.plotting import figure_png, plt

    names = sorted({line for r in rows for line in r["lines"]})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    xs = list(range(len(rows)))
    for line in names:
        ys = [r["lines"].get(line, {}).get("difference") for r in rows]
        (handle,) = ax.plot(xs, [y if y is not None else float("nan") for y in ys], "-", label=line, lw=1)
        voted = [(x, y) for x, y, r in zip(xs, ys, rows) if y is not None and r["lines"][line]["vote"]]
        if voted:
            ax.plot(*zip(*voted), "o", color=handle.get_color())
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(xs, [f"{r['checkpoint']}\n{r['verdict']}" for r in rows], fontsize=6)
    ax.set_ylabel("effect - control")
    ax.legend(fontsize=6, frameon=False, ncol=2)
    return figure_png(fig)


def series_html(series: dict[str, Any], png: bytes) -> str:
    """``series.html``: the gate, the first change, the plot and the table (self-contained)."""
    e = html.escape
    rows = series["checkpoints"]
    lines = sorted({line for r in rows for line in r["lines"]})
    head = "".join(f"<th>{e(line)}</th>" for line in lines)
    body = []
    for r in rows:
        cells = []
        for line in lines:
            cell = r["lines"].get(line)
            text = (
                "-" if cell is None else f"{cell['difference']:+.3f}" + (f" ({cell['vote']})" if cell["vote"] else "")
            )
            cells.append(f"<td>{e(text)}</td>")
        link = f"checkpoints/{r['checkpoint']}/report.html"
        body.append(
            f"<tr><td><a href='{e(link)}'>{e(r['checkpoint'])}</a></td><td><b>{e(r['verdict'])}</b> "
            f"({e(r['confidence'])})</td>{''.join(cells)}</tr>"
        )
    change = series["first_change"]
    change_text = (
        f"The verdict first changes at <b>{e(change['checkpoint'])}</b>: {e(change['from'])} to {e(change['to'])}."
        if change
        else "The verdict is the same at every checkpoint."
    )
    gate = series["gate"]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Checkpoint series</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px}</style>"
        f"</head><body><h1>Checkpoint series against {e(series['original'])}</h1>"
        f"<p>Gate: <b>{'passed' if gate['passed'] else 'FAILED'}</b>: {e(gate['reason'])}.</p><p>{change_text}</p>"
        f"<img alt='effect minus control per line over the checkpoints' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}' style='max-width:100%'>"
        "<p>Each cell: the line's effect minus its control (F minus H), with its vote when it voted. "
        "Each checkpoint's full report is linked.</p>"
        f"<table><tr><th>checkpoint</th><th>verdict</th>{head}</tr>{''.join(body)}</table></body></html>\n"
    )
