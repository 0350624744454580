"""``forensics series``: audit a series of checkpoints against one original and gate on the
verdicts (:mod:`forensics.metaeval.series`)."""

from __future__ import annotations

from pathlib import Path

from forensics.cli.common import device_args, executor_args, executor_config, placement_args
from forensics.core.errors import ForensicsInputError


def add_parser(sub) -> None:
    """Add the ``series`` sub-command to ``sub``."""
    series = sub.add_parser(
        "series", help="audit many checkpoints of one run against one original; a plot, a table and a CI gate"
    )
    series.add_argument("--original", required=True, type=Path, help="the model before unlearning")
    which = series.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoints", nargs="+", type=Path, help="checkpoint folders, in order")
    which.add_argument(
        "--checkpoints-dir", type=Path, help="a folder of checkpoints (checkpoint-<step>/ ordered by step)"
    )
    for name in ("forget", "retain"):
        series.add_argument(f"--{name}", required=True, type=Path)
    series.add_argument("--holdout", type=Path)
    series.add_argument("--reference", type=Path)
    series.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    series.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    series.add_argument("--seed", type=int, default=0)
    series.add_argument("--lines", help="comma-separated evidence lines (default: every line the inputs allow)")
    series.add_argument(
        "--fail-on", default="SUPPRESSED,NOT_FORGOTTEN", help="verdicts that fail the gate (exit code 1)"
    )
    series.add_argument("--gate", choices=("any", "last"), default="any", help="gate on every checkpoint or the last")
    device_args(series)
    placement_args(series)
    executor_args(series)


def run(args) -> int:
    """Audit the series, print one line per checkpoint and the gate; exit 1 when the gate fails."""
    from forensics.metaeval.series import SeriesConfig, checkpoint_order, run_series

    checkpoints = args.checkpoints or checkpoint_order(args.checkpoints_dir)
    fail_on = tuple(v.strip().upper() for v in args.fail_on.split(",") if v.strip())
    if not fail_on:
        raise ForensicsInputError("--fail-on needs at least one verdict")
    lines = tuple(n.strip() for n in args.lines.split(",") if n.strip()) if args.lines else None
    config = SeriesConfig(
        profile=args.profile,
        seed=args.seed,
        lines=lines,
        fail_on=fail_on,
        gate=args.gate,
        device=args.device,
        dtype=args.dtype,
        unlearned_device=args.unlearned_device,
        n_devices=args.n_devices,
    )
    series = run_series(
        args.original,
        checkpoints,
        args.forget,
        args.retain,
        args.holdout,
        args.out,
        config,
        reference=args.reference,
        executor=executor_config(args),
    )
    for row in series["checkpoints"]:
        print(f"  {row['checkpoint']:<24} {row['verdict']:<14} ({row['confidence']})")
    if series["first_change"]:
        c = series["first_change"]
        print(f"first change: {c['checkpoint']} ({c['from']} -> {c['to']})")
    print(f"gate {'passed' if series['gate']['passed'] else 'FAILED'}: {series['gate']['reason']}")
    print(f"written to {args.out}")
    return 0 if series["gate"]["passed"] else 1
