"""Every supported family audits end to end (quick profile) on tiny random-init checkpoints."""

from __future__ import annotations

import pytest
from conftest import ARCHS, WORDS, make_checkpoint

from forensics.inputs.data import Fact


def _facts(offset: int) -> list[Fact]:
    """24 facts over 8 subjects, in the test tokenizer's words (answers with their space)."""
    out = []
    for k in range(24):
        subject = f"{WORDS[(offset + k // 3) % len(WORDS)]} {WORDS[(offset + k // 3 + 5) % len(WORDS)]}"
        out.append(
            Fact(f"{subject} saw the {WORDS[k % 7]}", " " + WORDS[(k * 5 + offset) % len(WORDS)], subject=subject)
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_quick_audit_end_to_end(arch, tiny_checkpoints, test_tokenizer, tmp_path):
    from forensics.core.pipeline import audit

    unlearned = make_checkpoint(tmp_path / "u", arch, seed=1, tokenizer=test_tokenizer)
    result = audit(
        tiny_checkpoints[arch],
        unlearned,
        _facts(0),
        _facts(3),
        _facts(6),
        profile="quick",
        progress=False,
        out=tmp_path / "report",
        pdf=False,
    )
    assert result.verdict.label in ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "INCONCLUSIVE")
    assert (tmp_path / "report" / "results.json").is_file() and (tmp_path / "report" / "report.html").is_file()
    ran = {e.line for e in result.evidence if e.status != "not_run"}
    # random models know nothing, so lines that need O to know F say so; the rest run on every family
    assert {"behaviour", "remind", "relearning_attack", "membership_inference", "cka"} <= ran, {
        e.line: e.reason for e in result.evidence
    }
    errors = [e.line for e in result.evidence if e.reason.startswith("error:")]
    assert not errors, {e.line: e.reason for e in result.evidence if e.line in errors}
