"""``forensics lines``: list the registered evidence lines and their configuration fields."""

from __future__ import annotations

from forensics.core.errors import ForensicsInputError


def add_parser(sub) -> None:
    """Add the ``lines`` sub-command to ``sub``."""
    lines = sub.add_parser("lines", help="list the evidence lines: question, needs, votes and configuration fields")
    lines.add_argument("names", nargs="*", help="only these lines")
    lines.add_argument(
        "--profile",
        choices=("quick", "standard", "thorough"),
        help="show the values this profile runs each line with (default: the config defaults)",
    )


def run(args) -> int:
    """Print each evidence line: question, needs, votes, side of the control, method, model-pass
    budget per profile and config fields."""
    from forensics.core.config import describe_config, line_config
    from forensics.core.profiles import PROFILES
    from forensics.core.registry import discover_lines

    registry, broken = discover_lines()
    unknown = sorted(set(args.names) - set(registry))
    if unknown:
        raise ForensicsInputError(f"unknown evidence line(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    for name, spec in registry.items():
        if args.names and name not in args.names:
            continue
        print(f"{name}  ({spec.module})")
        print(f"  question: {spec.question}")
        print(f"  needs:    {', '.join(spec.needs)}")
        print(f"  votes:    {', '.join(spec.votes) or 'none (descriptive)'}; control side: {spec.side}")
        print(f"  method:   {spec.method}")
        if spec.budget is not None:
            for profile in (args.profile,) if args.profile else tuple(PROFILES):
                print(f"  budget ({profile}): {spec.budget(line_config(spec, PROFILES[profile], seed=0))}")
        if spec.config is not None:
            shown = f"profile {args.profile}" if args.profile else "defaults"
            print(f"  config ({spec.config.__name__}, {shown}; set with --set {name}.FIELD=VALUE):")
            values = line_config(spec, PROFILES[args.profile], seed=0) if args.profile else None
            for path, kind, default, doc in describe_config(spec.config, values=values):
                print(f"    {path:<28} {kind:<18} {default:<14} {doc}")
        print()
    for module, error in broken.items():
        print(f"not loaded: {module}: {error}")
    return 0
