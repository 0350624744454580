"""An audit signed with `forensics audit --sign` verifies end to end from the command line, and
fails after a byte changes, with a swapped checkpoint, or with the wrong key."""

from __future__ import annotations

import json

import pytest

from forensics.cli import main

# the module's audits (fixture `signed_audit`) run once: under pytest-xdist every test here runs in one worker
pytestmark = pytest.mark.xdist_group("test_signed_audit")


@pytest.fixture(scope="module")
def signed_audit(tiny_zoo, tmp_path_factory):
    root = tmp_path_factory.mktemp("signed")
    assert main(["keygen", "--out", str(root / "keys")]) == 0
    d = tiny_zoo / "data"
    args = [
        "audit",
        "--original",
        str(tiny_zoo / "models" / "original"),
        "--unlearned",
        str(tiny_zoo / "models" / "npo"),
    ]
    args += [
        "--forget",
        str(d / "forget.jsonl"),
        "--retain",
        str(d / "retain.jsonl"),
        "--holdout",
        str(d / "holdout.jsonl"),
    ]
    args += ["--profile", "quick", "--lines", "behaviour", "--out", str(root / "report")]
    assert main([*args, "--sign", str(root / "keys" / "forensics-signing.key")]) == 0
    return root


def test_a_signed_audit_verifies_and_shows_its_key(signed_audit, tiny_zoo, capsys):
    report, public = signed_audit / "report", signed_audit / "keys" / "forensics-signing.pub"
    from forensics.reports.attestation import fingerprint

    key = fingerprint(public.read_bytes())
    assert json.loads((report / "results.json").read_text())["run"]["signing_key"] == key
    assert key in (report / "report.html").read_text()
    capsys.readouterr()
    d = tiny_zoo / "data"
    code = main(
        ["verify", str(report), "--key", str(public), "--original", str(tiny_zoo / "models" / "original")]
        + ["--unlearned", str(tiny_zoo / "models" / "npo"), "--forget", str(d / "forget.jsonl")]
    )
    assert code == 0 and capsys.readouterr().out.startswith("ok: ")


def test_tampering_swapping_or_the_wrong_key_fails_with_one_line(signed_audit, tiny_zoo, tmp_path, capsys):
    import shutil

    report = shutil.copytree(signed_audit / "report", tmp_path / "report")
    public = signed_audit / "keys" / "forensics-signing.pub"
    capsys.readouterr()
    assert main(["verify", str(report), "--key", str(public), "--unlearned", str(tiny_zoo / "models" / "retrain")]) == 2
    assert "not the audited unlearned model" in capsys.readouterr().err
    assert main(["keygen", "--out", str(tmp_path / "other")]) == 0
    assert main(["verify", str(report), "--key", str(tmp_path / "other" / "forensics-signing.pub")]) == 2
    assert "was signed by key" in capsys.readouterr().err
    results = report / "results.json"
    results.write_text(results.read_text().replace('"seed": 0', '"seed": 1'))
    assert main(["verify", str(report), "--key", str(public)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json changed after it was signed" in err
