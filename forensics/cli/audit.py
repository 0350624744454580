"""``forensics audit``: audit an unlearned model against its original (:func:`forensics.core.pipeline.audit`)."""

from __future__ import annotations

from pathlib import Path

from forensics.cli.common import chat_args, command_line, device_args, placement_args, print_result


def add_parser(sub) -> None:
    """Add the ``audit`` sub-command to ``sub``."""
    audit = sub.add_parser("audit", help="audit an unlearned model against its original: verdict and reports")
    audit.add_argument("--original", required=True, type=Path, help="the model before unlearning")
    audit.add_argument("--unlearned", required=True, type=Path, help="the model after unlearning")
    audit.add_argument("--forget", required=True, type=Path, help="F: facts that were to be forgotten (JSONL)")
    audit.add_argument("--retain", required=True, type=Path, help="R: facts that were to be kept (JSONL)")
    audit.add_argument(
        "--holdout", type=Path, help="H: facts of the same form no model saw, the control (without it: INCONCLUSIVE)"
    )
    audit.add_argument("--reference", type=Path, help="a model retrained without F (a second control)")
    audit.add_argument("--sequences", type=Path, help="sequence set (JSONL): extra text for training the SAE on O")
    audit.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--profile", choices=("quick", "standard", "thorough"), default="standard")
    audit.add_argument("--redact", action="store_true", help="replace fact text by ids in the reports")
    audit.add_argument(
        "--lines",
        help="comma-separated evidence lines to run (default: every line the inputs allow; behaviour always runs)",
    )
    audit.add_argument(
        "--all-lines",
        action="store_true",
        help="run every line even when the behaviour gate already decided NOT_FORGOTTEN "
        "(by default the others are skipped: they cannot change that verdict)",
    )
    audit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="LINE.FIELD=VALUE",
        dest="settings",
        help="override one field of a line's configuration (repeatable; after the profile; "
        "`forensics lines` lists the fields)",
    )
    audit.add_argument(
        "--cache",
        type=Path,
        help="activation / resume cache to keep and share (default: .OUT.cache beside --out, "
        "deleted after a successful run)",
    )
    audit.add_argument(
        "--sign",
        type=Path,
        metavar="KEY",
        help="sign the output folder with this Ed25519 private key (PEM; `forensics keygen` makes one): "
        "attestation.dsse.json, checked by `forensics verify`",
    )
    device_args(audit)
    placement_args(audit)
    chat_args(audit)


def run(args) -> int:
    """Audit U against O (:func:`forensics.core.pipeline.audit`), print the verdict and the line summary."""
    from forensics.core.config import parse_overrides
    from forensics.core.pipeline import audit
    from forensics.core.registry import discover_lines

    settings = parse_overrides(args.settings, discover_lines()[0]) if args.settings else None
    result = audit(
        original=args.original,
        unlearned=args.unlearned,
        forget=args.forget,
        retain=args.retain,
        holdout=args.holdout,
        reference=args.reference,
        sequences=args.sequences,
        out=args.out,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        profile=args.profile,
        redact=args.redact,
        cache_dir=args.cache,
        command=command_line(),
        settings=settings,
        all_lines=args.all_lines,
        chat_template=args.chat_template,
        sign=args.sign,
        unlearned_device=args.unlearned_device,
        n_devices=args.n_devices,
        lines=[n.strip() for n in args.lines.split(",") if n.strip()] if args.lines else None,
    )
    print_result(result)
    return 0
