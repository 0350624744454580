"""``forensics zoo build``: train (or reuse) the model-organism zoo (:mod:`forensics.zoo`)."""

from __future__ import annotations

from pathlib import Path

from forensics.cli.common import Parser


def add_parser(sub) -> None:
    """Add the ``zoo`` sub-command to ``sub``."""
    zoo = sub.add_parser("zoo", help="the model-organism zoo")
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True, parser_class=Parser)
    build = zoo_sub.add_parser("build", help="train the zoo of small models with ground truth")
    build.add_argument("--out", required=True, type=Path, help="output folder")
    build.add_argument("--size", choices=("tiny", "small"), default="small")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--world",
        choices=("attributes", "bio"),
        help="attributes: closed-vocabulary facts (the default, except with --base); bio: free-text "
        "questions about authors (the default with --base)",
    )
    build.add_argument(
        "--base",
        type=Path,
        help="build on this pretrained checkpoint (a folder or a .gguf file) instead: TOFU's recipe "
        "(docs/zoos.md, real-base zoo); --size does not apply",
    )
    build.add_argument(
        "--models", help="with --base: comma-separated models to build (default: all; their starting models too)"
    )
    build.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="with --base: bfloat16 runs the fine-tunes under bfloat16 autocast on float32 weights",
    )
    real = zoo_sub.add_parser(
        "real",
        help="unlearn a pretrained base's own knowledge of real-world facts (no retrained model exists)",
    )
    real.add_argument("--base", required=True, type=Path, help="the base: a checkpoint folder or a .gguf file")
    real.add_argument("--out", required=True, type=Path, help="output folder")
    real.add_argument("--seed", type=int, default=0)
    real.add_argument("--methods", default="npo,rmu", help="comma-separated unlearning methods (default: npo,rmu)")


def run(args) -> int:
    """Build (or reuse) the model-organism zoo in ``--out``."""
    if args.zoo_command == "real":
        return _run_real(args)
    if args.base is not None:
        return _run_base(args)
    from forensics.zoo import build_zoo

    build_zoo(args.out, size=args.size, seed=args.seed, progress=True, world=args.world or "attributes")
    print(f"zoo written to {args.out}")
    return 0


def _run_real(args) -> int:
    from forensics.core.errors import ForensicsInputError
    from forensics.zoo.real import RealConfig, build_real
    from forensics.zoo.unlearning import METHODS

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS or m == "relearn"]
    if not methods or unknown:
        raise ForensicsInputError(
            f"--methods: unknown unlearning method(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(m for m in METHODS if m != 'relearn')}"
        )
    try:
        labels = build_real(args.base, args.out, RealConfig(seed=args.seed, methods=methods), progress=True)
    except ValueError as err:
        raise ForensicsInputError(f"{args.base}: {err}") from None
    for name, entry in labels["models"].items():
        print(f"{name}: {entry['ground_truth']} ({entry['why']})")
    print(f"real-knowledge zoo written to {args.out}")
    return 0


def _run_base(args) -> int:
    from forensics.zoo.base import BASE_MODELS, BaseZooConfig, build_base_zoo

    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else tuple(BASE_MODELS)
    config = BaseZooConfig(seed=args.seed, models=models, bfloat16=args.dtype == "bfloat16", world=args.world or "bio")
    manifest = build_base_zoo(args.base, args.out, config, progress=True)
    for name, entry in manifest["labels"].items():
        print(f"{name}: {entry['ground_truth']}")
    print(f"real-base zoo written to {args.out} in {manifest['build_seconds']:.0f} s")
    return 0
