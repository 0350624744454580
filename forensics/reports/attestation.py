"""Signed audits a third party can verify: an in-toto Statement in a DSSE envelope, signed with
Ed25519.

An audit run with ``--sign KEY`` writes ``attestation.dsse.json`` into its output folder, last.
The envelope (DSSE v1: ``payloadType``, base64 ``payload``, ``signatures: [{keyid, sig}]``) carries
an in-toto Statement v1 whose ``subject`` lists every other file of the folder by relative path
and SHA-256, and whose ``predicate`` records what was audited: each model's weights SHA-256 (over
the safetensors files ``transformers`` loads, :func:`forensics.inputs.loading.weights_hash`), each
fact file's SHA-256, the code version (:func:`forensics.core.keys.code_version`), the verdict and
the signer's public key. The signature is Ed25519 over DSSE's pre-authentication encoding
``"DSSEv1" SP len(type) SP type SP len(payload) SP payload`` (lengths in decimal ASCII).

:func:`verify` checks, in order: the envelope parses; the key (``--key``, else the one the
predicate names, which only proves integrity) matches the signature's key id and verifies the
signature; every subject file exists with its digest and no other file is present; the
checkpoints and fact files given are the ones audited. Any failure raises
:class:`~forensics.core.errors.ForensicsInputError` with one line naming what differs.
Keys are PEM files (PKCS#8 private key, unencrypted; SubjectPublicKeyInfo public key), made by
:func:`keygen` (``forensics keygen``). Specifications: DSSE v1 (secure-systems-lab/dsse,
``protocol.md``) and the in-toto Attestation Framework's Statement v1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError

#: The envelope's file name inside an audit's output folder.
ENVELOPE = "attestation.dsse.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/unlearning-forensics/audit/v1"
PRIVATE_KEY, PUBLIC_KEY = "forensics-signing.key", "forensics-signing.pub"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of ``payload`` (what is signed)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def fingerprint(public_pem: bytes) -> str:
    """``"SHA256:<hex>"`` of the raw 32-byte Ed25519 public key: the key id in envelopes and reports."""
    raw = _public_key(public_pem, "public key").public_bytes_raw()
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def keygen(out: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into folder ``out`` (created if missing): the private key
    (mode 0600) and the public key; returns their paths. Refuses to overwrite either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ForensicsInputError(f"{out} is a file; give a folder for the key pair")
    private, public = out / PRIVATE_KEY, out / PUBLIC_KEY
    for path in (private, public):
        if path.exists():
            raise ForensicsInputError(f"{path} exists; refusing to overwrite a key")
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def read_private_key(path: str | Path):
    """The Ed25519 private key in PEM file ``path``; one-line errors for a missing or wrong file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise ForensicsInputError(f"signing key {path} is not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ForensicsInputError(f"signing key {path} is not an Ed25519 key (make one with `forensics keygen`)")
    return key


def public_pem_of(private_key) -> bytes:
    """The PEM public key of an Ed25519 private key."""
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def statement(folder: Path, inputs: dict[str, Any], code_version: str, verdict: str, public_pem: bytes) -> dict:
    """The in-toto Statement for the files now in ``folder`` (every file but the envelope)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in _digests(folder).items()],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "inputs": inputs,
            "code_version": code_version,
            "verdict": verdict,
            "public_key": public_pem.decode(),
        },
    }


def sign_folder(folder: Path, private_key, inputs: dict[str, Any], code_version: str, verdict: str) -> Path:
    """Write the signed envelope over ``folder``'s files into ``folder``; returns its path."""
    public_pem = public_pem_of(private_key)
    payload = json.dumps(statement(folder, inputs, code_version, verdict, public_pem), sort_keys=True).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {
                "keyid": fingerprint(public_pem),
                "sig": base64.b64encode(private_key.sign(pae(PAYLOAD_TYPE, payload))).decode(),
            }
        ],
    }
    path = folder / ENVELOPE
    path.write_text(json.dumps(envelope, indent=2) + "\n", encoding="utf-8")
    return path


def audit_inputs(records: dict[str, Any]) -> dict[str, Any]:
    """What the predicate records of each input, from an audit's input records
    (:class:`forensics.inputs.prepare.AuditInputs` ``records``): models by weights SHA-256, fact
    and sequence files by file SHA-256 (None where not given)."""
    out: dict[str, Any] = {}
    for role, record in records.items():
        if not record:
            out[role] = None
        elif "weights_sha256" in record:
            out[role] = {"weights_sha256": record["weights_sha256"]}
        else:
            out[role] = {"file_sha256": record.get("file_sha256"), "content_sha256": record.get("content_sha256")}
    return out


def verify(
    folder: str | Path,
    key: str | Path | None = None,
    checkpoints: dict[str, Path] | None = None,
    files: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Check a signed audit folder (see the module docstring); returns ``{"key": fingerprint,
    "files": n, "verdict": label, "key_given": bool}``. ``checkpoints``: role ("original",
    "unlearned", "reference") -> checkpoint folder; ``files``: set name ("forget", ...) -> fact
    file. Raises :class:`ForensicsInputError` (one line, naming what differs) on any mismatch."""
    from cryptography.exceptions import InvalidSignature

    folder = Path(folder)
    if not folder.is_dir():
        raise ForensicsInputError(f"{folder} is not a folder")
    envelope_path = folder / ENVELOPE
    envelope = _json(_read(envelope_path, "attestation"), envelope_path)
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        (signature,) = envelope["signatures"]
        sig = base64.b64decode(signature["sig"], validate=True)
        keyid = signature["keyid"]
        if envelope["payloadType"] != PAYLOAD_TYPE:
            raise ValueError(f"payload type {envelope['payloadType']!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise ForensicsInputError(f"{envelope_path} is not a DSSE envelope of this suite ({err})") from None
    body = _json(payload, envelope_path)
    predicate = body.get("predicate") if isinstance(body, dict) else None
    if not isinstance(predicate, dict) or body.get("_type") != STATEMENT_TYPE:
        raise ForensicsInputError(f"{envelope_path} does not hold an in-toto Statement")
    public_pem = _read(key, "public key") if key is not None else str(predicate.get("public_key", "")).encode()
    public = _public_key(public_pem, str(key) if key is not None else "the attestation's public key")
    if fingerprint(public_pem) != keyid:
        raise ForensicsInputError(f"{envelope_path} was signed by key {keyid}, not by {fingerprint(public_pem)}")
    try:
        public.verify(sig, pae(envelope["payloadType"], payload))
    except InvalidSignature:
        raise ForensicsInputError(
            f"{envelope_path}: the signature does not verify (the attestation was altered)"
        ) from None
    expected = {s["name"]: s["digest"]["sha256"] for s in body["subject"]}
    present = _digests(folder)
    for name, digest in expected.items():
        if name not in present:
            raise ForensicsInputError(f"{folder / name} is missing (it was signed)")
        if present[name] != digest:
            raise ForensicsInputError(f"{folder / name} changed after it was signed")
    extra = sorted(set(present) - set(expected))
    if extra:
        raise ForensicsInputError(f"{folder / extra[0]} was not in the signed audit")
    _check_inputs(predicate.get("inputs") or {}, checkpoints or {}, files or {})
    return {"key": keyid, "files": len(expected), "verdict": predicate.get("verdict"), "key_given": key is not None}


def _check_inputs(recorded: dict[str, Any], checkpoints: dict[str, Path], files: dict[str, Path]) -> None:
    from forensics.inputs.loading import weights_hash

    for role, path in checkpoints.items():
        entry = recorded.get(role)
        if not entry:
            raise ForensicsInputError(f"the signed audit had no {role} model; --{role} {path} cannot be checked")
        if weights_hash(path) != entry["weights_sha256"]:
            raise ForensicsInputError(f"--{role} {path} is not the audited {role} model (weights SHA-256 differs)")
    for name, path in files.items():
        entry = recorded.get(name)
        if not entry:
            raise ForensicsInputError(f"the signed audit had no {name} set; --{name} {path} cannot be checked")
        digest = hashlib.sha256(_read(path, f"{name} file")).hexdigest()
        if digest != entry.get("file_sha256"):
            raise ForensicsInputError(f"--{name} {path} is not the audited {name} file (SHA-256 differs)")


def _digests(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` except the envelope, sorted."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name != ENVELOPE:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ForensicsInputError(f"{what} {path} does not exist") from None
    except OSError as err:
        raise ForensicsInputError(f"cannot read {what} {path}: {err.strerror}") from None


def _json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ForensicsInputError(f"{path} is not valid JSON") from None


def _public_key(pem: bytes, what: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ForensicsInputError(f"{what} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ForensicsInputError(f"{what} is not an Ed25519 public key")
    return key
