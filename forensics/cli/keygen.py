"""``forensics keygen``: make an Ed25519 key pair for signing audits (:mod:`forensics.reports.attestation`)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    """Add the ``keygen`` sub-command to ``sub``."""
    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair for `forensics audit --sign`")
    keygen.add_argument("--out", required=True, type=Path, help="folder for the private and the public key")


def run(args) -> int:
    """Write the key pair and print the public key's fingerprint."""
    from forensics.reports.attestation import fingerprint, keygen

    private, public = keygen(args.out)
    print(f"private key {private} (keep it secret; sign with `forensics audit --sign {private}`)")
    print(f"public key  {public} (hand it to whoever verifies; fingerprint {fingerprint(public.read_bytes())})")
    return 0
