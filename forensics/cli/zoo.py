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
        default="attributes",
        help="attributes: closed-vocabulary facts (default); bio: free-text questions about authors",
    )


def run(args) -> int:
    """Build (or reuse) the model-organism zoo in ``--out``."""
    from forensics.zoo import build_zoo

    build_zoo(args.out, size=args.size, seed=args.seed, progress=True, world=args.world)
    print(f"zoo written to {args.out}")
    return 0
