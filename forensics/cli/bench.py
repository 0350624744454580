"""``forensics bench``: the meta-evaluation bench (:mod:`forensics.metaeval.bench`)."""

from __future__ import annotations

from pathlib import Path

from forensics.cli.common import device_args, executor_args, executor_config
from forensics.core.errors import ForensicsInputError


def add_parser(sub) -> None:
    """Add the ``bench`` sub-command to ``sub``."""
    bench = sub.add_parser(
        "bench",
        help="meta-evaluation: audit every zoo model per seed; verdict accuracy, "
        "faithfulness and robustness of each line",
    )
    bench.add_argument("--zoo", required=True, type=Path, help="folder of per-seed zoos (seed<N>/, built if missing)")
    bench.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    bench.add_argument("--seeds", default="0,1,2", help="comma-separated zoo seeds")
    bench.add_argument(
        "--size",
        choices=("tiny", "small", "base"),
        default="small",
        help="zoo size; base: real-base zoos already built by `forensics zoo build --base` (with --world bio)",
    )
    bench.add_argument(
        "--world",
        choices=("attributes", "bio"),
        default="attributes",
        help="zoo world: attributes (closed vocabulary) or bio (free-text questions)",
    )
    bench.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    bench.add_argument("--models", help="comma-separated zoo models to audit (default: all with a ground truth)")
    bench.add_argument("--lines", help="comma-separated evidence lines (default: all)")
    bench.add_argument("--no-perturb", action="store_true", help="skip the quantized / relearned deleted models")
    bench.add_argument(
        "--data-view",
        choices=("full", "keyless"),
        default="full",
        help="what the audits are given: the zoo's data as built, or keyless (TOFU-shaped: no key, no "
        "paraphrased or perturbed answers, 7 holdout subjects)",
    )
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="LINE.FIELD=VALUE",
        dest="settings",
        help="override one field of a line's configuration in every audit (repeatable; as `forensics audit --set`)",
    )
    device_args(bench)
    executor_args(bench)


def run(args) -> int:
    """Run the meta-evaluation bench (:func:`forensics.metaeval.bench.run_bench`) and print its tables."""
    from forensics.core.config import parse_overrides
    from forensics.core.registry import discover_lines
    from forensics.metaeval.bench import BenchConfig, run_bench
    from forensics.reports.bench import text_tables

    def names(text):
        return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        raise ForensicsInputError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    settings = parse_overrides(args.settings, discover_lines()[0]) if args.settings else None
    config = BenchConfig(
        seeds=seeds,
        size=args.size,
        world=args.world,
        profile=args.profile,
        device=args.device,
        dtype=args.dtype,
        models=names(args.models),
        lines=names(args.lines),
        perturb=not args.no_perturb,
        data_view=args.data_view,
        settings=settings,
    )
    bench = run_bench(args.zoo, args.out, config, executor=executor_config(args))
    print(text_tables(bench))
    print(f"written to {args.out}")
    return 0
