"""``forensics data import``: convert a TOFU-, WMDP- or JSONL-shaped file into a fact set (:mod:`forensics.inputs.importers`)."""

from __future__ import annotations

from pathlib import Path

from forensics.cli.common import Parser


def add_parser(sub) -> None:
    """Add the ``data`` sub-command to ``sub``."""
    data = sub.add_parser("data", help="fact sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    imp = data_sub.add_parser("import", help="convert a TOFU-, WMDP- or JSONL-shaped file into a fact set")
    imp.add_argument("source", type=Path, help="JSON array or JSONL of records")
    imp.add_argument("--format", required=True, choices=("tofu", "wmdp", "jsonl"))
    imp.add_argument("--out", required=True, type=Path, help="folder for <source name>.jsonl")
    imp.add_argument(
        "--prompt-template",
        default="Question: {question}\nAnswer:",
        help="the prompt around each question ({question} is replaced)",
    )
    imp.add_argument("--subject-field", help="record field naming each fact's subject (default: none)")
    imp.add_argument(
        "--chat-template",
        type=Path,
        metavar="CHECKPOINT",
        help="render prompts in this checkpoint's chat template (then do not pass --chat-template to audit)",
    )


def run(args) -> int:
    """Convert a public-format file into a fact set (:mod:`forensics.inputs.importers`)."""
    from forensics.inputs.importers import import_facts
    from forensics.inputs.loading import load_tokenizer

    tokenizer = load_tokenizer(args.chat_template) if args.chat_template else None
    target, facts = import_facts(
        args.source, args.out, args.format, args.prompt_template, args.subject_field, tokenizer
    )
    subjects = len({f.subject for f in facts if f.subject})
    print(
        f"{len(facts)} facts written to {target}"
        + (f" ({subjects} subjects)" if subjects else " (no subjects: each fact is its own group)")
    )
    return 0
