"""A finished ``forensics bench`` output folder read back: its rows and each audit's ``results.json``.

The bench (:mod:`forensics.metaeval.bench`) writes ``bench.json`` (``models``: one row per zoo
model and seed; ``perturbed``: one row per perturbed copy of a deleted model, with its
``perturbation``) and ``audits/seed<s>/<tag>.json``, ``<tag>`` from
:func:`forensics.metaeval.bench.audit_tag`. The scripts that re-decide stored audits
(``benchmarks/rule_change.py``, ``benchmarks/line_swap.py``) read a bench through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forensics.metaeval.bench import audit_tag


class NotABench(ValueError):
    """A folder that is not a finished bench's output, or one of its audits that cannot be read."""


def audit_path(bench_dir: Path, row: dict[str, Any]) -> Path:
    """Where the bench kept the ``results.json`` of ``row`` (a ``models`` or ``perturbed`` row)."""
    return (
        Path(bench_dir) / "audits" / f"seed{row['seed']}" / f"{audit_tag(row['model'], row.get('perturbation'))}.json"
    )


def read_bench(bench_dir: Path) -> dict[str, Any]:
    """``bench.json`` of ``bench_dir``. Raises :class:`NotABench` (one line) when it is missing or not JSON."""
    path = Path(bench_dir) / "bench.json"
    try:
        bench = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise NotABench(f"{bench_dir} is not a finished bench's output ({path.name}: {type(e).__name__})") from None
    if not isinstance(bench, dict) or not {"models", "perturbed"} <= bench.keys():
        raise NotABench(f"{bench_dir}/bench.json has no 'models' and 'perturbed' rows")
    return bench


def stored_audits(bench_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every audit of a finished bench as ``(row, results)``: the ``models`` rows in order, then the
    ``perturbed`` rows. ``results`` is the audit's ``results.json`` as a dict. Raises
    :class:`NotABench` naming the first audit file that is missing or not JSON."""
    bench = read_bench(bench_dir)
    out = []
    for row in bench["models"] + bench["perturbed"]:
        path = audit_path(bench_dir, row)
        try:
            out.append((row, json.loads(path.read_text())))
        except (OSError, ValueError) as e:
            raise NotABench(f"{path}: cannot read this bench audit ({type(e).__name__})") from None
    return out
