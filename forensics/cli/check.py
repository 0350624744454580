"""``forensics check``: load and validate models and data exactly as an audit does, without auditing."""

from __future__ import annotations

from pathlib import Path

from forensics.cli.common import chat_args, device_args


def add_parser(sub) -> None:
    """Add the ``check`` sub-command to ``sub``."""
    check = sub.add_parser("check", help="validate models and data sets without auditing")
    check.add_argument("--original", required=True, type=Path)
    check.add_argument("--unlearned", type=Path)
    for name in ("forget", "retain", "holdout", "sequences"):
        check.add_argument(f"--{name}", type=Path)
    device_args(check)
    chat_args(check)


def run(args) -> int:
    """Load and validate exactly as an audit does (:func:`forensics.inputs.prepare.load_inputs`), then report."""
    from forensics.inputs.prepare import load_inputs

    inputs = load_inputs(
        args.original,
        args.unlearned,
        args.forget,
        args.retain,
        args.holdout,
        sequences=args.sequences,
        device=args.device,
        dtype=args.dtype,
        chat_template=args.chat_template,
    )
    original = inputs.original
    prompts = [f.prompt for f in (inputs.forget or inputs.retain or inputs.holdout or [])[:4]]
    agree = {}
    if prompts:  # the check a careful auditor runs by hand: our logits against transformers' on their prompts
        from forensics.inputs.agreement import prompt_agreement

        agree = {
            role: prompt_agreement(m, prompts)
            for role, m in (("original", original), ("unlearned", inputs.unlearned))
            if m
        }
    tail = (
        f"; logits equal transformers' on {len(prompts)} of your prompts (max difference "
        f"{agree['original']:.1g} of the logit scale)"
        if prompts
        else ""
    )
    print(f"original   {_where(original)}: {original.architecture}, {original.n_layers} layers, ok{tail}")
    if inputs.unlearned is not None:
        tail = f"; logits equal transformers' (max difference {agree['unlearned']:.1g})" if prompts else ""
        print(
            f"unlearned  {_where(inputs.unlearned)}: matches the original's architecture, shapes and vocabulary{tail}"
        )
    if inputs.chat_template:
        print(f"chat template of {inputs.chat_template['source']}: prompts become {inputs.chat_template['example']!r}")
    for name in ("forget", "retain", "holdout"):
        if inputs.records.get(name):
            print(f"{name:<10} {getattr(args, name)}: {inputs.records[name]['n']} facts")
    if inputs.records.get("sequences"):
        print(f"sequences  {args.sequences}: {inputs.records['sequences']['n']} sequences")
    for warning in inputs.warnings:
        print(f"  warning: {warning}")
    return 0


def _where(m) -> str:
    """The model's path as given, and for a GGUF file what it was read as."""
    if m.source is None:
        return str(m.path)
    return f"{m.origin} ({m.source['format']}, {m.source['quantization']}, {m.source['loaded_as']})"
