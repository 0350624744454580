"""Signed audits: keygen, sign, verify, and every way a verification must fail (one line naming
what differs, exit code 2 through the command line)."""

from __future__ import annotations

import base64
import json

import pytest

from forensics.cli import main
from forensics.core.errors import ForensicsInputError
from forensics.reports.attestation import (
    ENVELOPE,
    audit_inputs,
    fingerprint,
    keygen,
    pae,
    read_private_key,
    sign_folder,
    verify,
)


def _checkpoint(folder, content: bytes):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(content)
    return folder


@pytest.fixture
def signed(tmp_path):
    """A report folder signed with a fresh key: (folder, public key, original, unlearned, forget file)."""
    private, public = keygen(tmp_path / "keys")
    original = _checkpoint(tmp_path / "O", b"original weights")
    unlearned = _checkpoint(tmp_path / "U", b"unlearned weights")
    forget = tmp_path / "forget.jsonl"
    forget.write_text('{"prompt": "p", "answer": " a"}\n')
    import hashlib

    from forensics.inputs.loading import weights_hash

    records = {
        "original": {"weights_sha256": weights_hash(original)},
        "unlearned": {"weights_sha256": weights_hash(unlearned)},
        "reference": None,
        "forget": {"file_sha256": hashlib.sha256(forget.read_bytes()).hexdigest(), "content_sha256": "c"},
    }
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    (report / "results.json").write_text('{"verdict": "x"}')
    (report / "report.html").write_text("<html>verdict</html>")
    (report / "figures" / "a.png").write_bytes(b"\x89PNG")
    sign_folder(report, read_private_key(private), audit_inputs(records), "code-1", "DELETED")
    return report, public, original, unlearned, forget


def test_an_untouched_signed_folder_verifies(signed):
    report, public, original, unlearned, forget = signed
    info = verify(report, public, {"original": original, "unlearned": unlearned}, {"forget": forget})
    assert info == {"key": fingerprint(public.read_bytes()), "files": 3, "verdict": "DELETED", "key_given": True}
    envelope = json.loads((report / ENVELOPE).read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert {s["name"] for s in statement["subject"]} == {"results.json", "report.html", "figures/a.png"}
    assert main(["verify", str(report), "--key", str(public), "--unlearned", str(unlearned)]) == 0


@pytest.mark.parametrize("name", ["results.json", "report.html", "figures/a.png"])
def test_any_changed_byte_of_any_file_fails_naming_the_file(signed, name, capsys):
    report, public, *_ = signed
    path = report / name
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    assert main(["verify", str(report), "--key", str(public)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and name in err and "changed after it was signed" in err


def test_a_missing_or_added_file_fails(signed):
    report, public, *_ = signed
    (report / "extra.txt").write_text("x")
    with pytest.raises(ForensicsInputError, match="extra.txt was not in the signed audit"):
        verify(report, public)
    (report / "extra.txt").unlink()
    (report / "report.html").unlink()
    with pytest.raises(ForensicsInputError, match="report.html is missing"):
        verify(report, public)


def test_a_swapped_checkpoint_or_data_file_fails(signed, tmp_path):
    report, public, original, unlearned, forget = signed
    other = _checkpoint(tmp_path / "U2", b"other weights")
    with pytest.raises(ForensicsInputError, match="is not the audited unlearned model"):
        verify(report, public, {"unlearned": other})
    with pytest.raises(ForensicsInputError, match="is not the audited original model"):
        verify(report, public, {"original": unlearned})
    forget.write_text('{"prompt": "p", "answer": " b"}\n')
    with pytest.raises(ForensicsInputError, match="is not the audited forget file"):
        verify(report, public, files={"forget": forget})
    with pytest.raises(ForensicsInputError, match="had no reference model"):
        verify(report, public, {"reference": original})


def test_the_wrong_key_or_an_edited_envelope_fails(signed, tmp_path):
    report, public, *_ = signed
    _, other_public = keygen(tmp_path / "other")
    with pytest.raises(ForensicsInputError, match="was signed by key"):
        verify(report, other_public)
    # an attacker who re-points the key id at their own key still cannot make the signature verify
    envelope = json.loads((report / ENVELOPE).read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["verdict"] = "SUPPRESSED"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (report / ENVELOPE).write_text(json.dumps(envelope))
    with pytest.raises(ForensicsInputError, match="signature does not verify"):
        verify(report, public)


def test_key_files_are_refused_with_one_line(tmp_path, capsys):
    private, public = keygen(tmp_path / "k")
    assert private.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ForensicsInputError, match="refusing to overwrite"):
        keygen(tmp_path / "k")
    with pytest.raises(ForensicsInputError, match="not an unencrypted PEM private key"):
        read_private_key(public)
    with pytest.raises(ForensicsInputError, match="does not exist"):
        read_private_key(tmp_path / "nope.key")
    assert main(["verify", str(tmp_path / "k")]) == 2  # a folder with no attestation
    assert "attestation" in capsys.readouterr().err


def test_pae_matches_the_dsse_specification():
    # DSSE v1 protocol.md: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
