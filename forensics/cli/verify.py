"""``forensics verify``: check a signed audit folder (:func:`forensics.reports.attestation.verify`)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = ("original", "unlearned", "reference")
FILES = ("forget", "retain", "holdout", "sequences")


def add_parser(sub) -> None:
    """Add the ``verify`` sub-command to ``sub``."""
    verify = sub.add_parser(
        "verify", help="check a signed audit: the signature, every file, and optionally the checkpoints and data"
    )
    verify.add_argument("folder", type=Path, help="the audit's output folder (with attestation.dsse.json)")
    verify.add_argument(
        "--key", type=Path, help="the signer's public key (PEM); without it only the folder's integrity is checked"
    )
    for role in CHECKPOINTS:
        verify.add_argument(f"--{role}", type=Path, help=f"check that this checkpoint is the audited {role} model")
    for name in FILES:
        verify.add_argument(f"--{name}", type=Path, help=f"check that this file is the audited {name} set")


def run(args) -> int:
    """Verify; print what was checked, or fail with one line naming what differs."""
    from forensics.reports.attestation import verify

    checkpoints = {r: getattr(args, r) for r in CHECKPOINTS if getattr(args, r) is not None}
    files = {n: getattr(args, n) for n in FILES if getattr(args, n) is not None}
    info = verify(args.folder, args.key, checkpoints, files)
    checked = ", ".join([*checkpoints, *files]) or "no inputs given"
    trust = (
        "signature verified with the given key"
        if info["key_given"]
        else ("signature consistent with the key the attestation names (give --key to check who signed)")
    )
    print(
        f"ok: {info['files']} files unchanged; {trust} ({info['key']}); inputs checked: {checked}; "
        f"verdict {info['verdict']}"
    )
    return 0
