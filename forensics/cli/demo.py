"""``forensics demo``: build (or reuse) the zoo and audit two of its models."""

from __future__ import annotations

import json
from pathlib import Path

from forensics.cli.common import DEFAULT_DEMO_OUT, DEFAULT_ZOO, command_line, device_args, print_result
from forensics.core.errors import ForensicsInputError


def add_parser(sub) -> None:
    """Add the ``demo`` sub-command to ``sub``."""
    demo = sub.add_parser("demo", help="build the small zoo (cached) and audit two of its models")
    demo.add_argument("--zoo", type=Path, default=DEFAULT_ZOO, help="zoo folder (built if missing)")
    demo.add_argument("--size", choices=("tiny", "small"), default="small")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", type=Path, default=DEFAULT_DEMO_OUT, help="where the demo's reports go")
    demo.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    demo.add_argument("--models", default="rmu,retrain", help="comma-separated zoo models to audit")
    device_args(demo)


def run(args) -> int:
    """Build (or reuse) the zoo, then audit a suppressed model and the retrained one against `original`.

    Reports go to ``--out``/<model>/; a previous demo report there is replaced. Activations
    and the SAE of `original` are cached in ``--out``/.cache and shared by both audits.
    """
    import shutil
    import time

    from forensics.core.pipeline import audit
    from forensics.inputs.loading import load_model
    from forensics.zoo import build_zoo
    from forensics.zoo.jobs import MODEL_ORDER

    started = time.time()
    known = [n for n in MODEL_ORDER if n not in ("original", "llama_original")]
    unknown = [n.strip() for n in args.models.split(",") if n.strip() and n.strip() not in known]
    if unknown:  # refused before the zoo is built
        raise ForensicsInputError(f"unknown zoo model {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    build_zoo(args.zoo, size=args.size, seed=args.seed, progress=True)
    labels = json.loads((args.zoo / "labels.json").read_text())
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        if name not in labels or name == "original":
            raise ForensicsInputError(f"unknown zoo model {name!r}; choose from {', '.join(sorted(labels))}")
    for name in names:
        previous = args.out / name
        if previous.exists():
            if not (previous / "results.json").is_file():
                raise ForensicsInputError(f"{previous} exists and is not a demo report; choose another --out")
            shutil.rmtree(previous)
    original = load_model(args.zoo / "models" / "original", args.device, args.dtype)
    data = args.zoo / "data"
    results = {}
    for name in names:
        print(f"\n== auditing `{name}` against `original` (profile {args.profile})", flush=True)
        results[name] = audit(
            original=original,
            unlearned=args.zoo / "models" / name,
            forget=data / "forget.jsonl",
            retain=data / "retain.jsonl",
            holdout=data / "holdout.jsonl",
            out=args.out / name,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
            profile=args.profile,
            cache_dir=args.out / ".cache",
            command=command_line() + f"  # model {name}",
        )
        print_result(results[name], indent="  ")
    print(f"\nDemo summary ({time.time() - started:.0f} s):")
    for name, result in results.items():
        truth = labels[name].get("ground_truth", "?")
        print(
            f"  {name:<10} verdict {result.verdict.label:<14} ({result.verdict.confidence:<6})  "
            f"ground truth {truth:<14} report {result.out / 'report.html'}"
        )
    return 0
