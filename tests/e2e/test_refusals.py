"""A line that the data rules out says so before any forward pass: on TOFU-shaped data
(sentence answers without a key, perturbed or paraphrased answers), every line that ends
"not run" for a reason in the data ran no forward pass of any model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import forensics.core.runner as runner
from forensics.core.pipeline import audit
from forensics.inputs.loading import load_model

#: Fields a TOFU forget file (forget10.json) does not have.
NOT_IN_TOFU = ("key", "paraphrased_answer", "perturbed_answers", "attribute")


def _tofu_shaped(src: Path, dst: Path) -> Path:
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    dst.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in NOT_IN_TOFU}) + "\n" for r in rows))
    return dst


@pytest.mark.slow
def test_lines_the_data_rules_out_refuse_before_any_forward_pass(bio_zoo: Path, tmp_path, monkeypatch):
    data = {
        s: _tofu_shaped(bio_zoo / "data" / f"{s}.jsonl", tmp_path / f"{s}.jsonl")
        for s in ("forget", "retain", "holdout")
    }
    original, unlearned = load_model(bio_zoo / "models" / "original"), load_model(bio_zoo / "models" / "npo")
    passes = {"n": 0}

    def count(module, args):
        passes["n"] += 1

    for loaded in (original, unlearned):
        loaded.model.register_forward_pre_hook(count)
    seen: dict[str, tuple[str, int, str]] = {}
    real = runner.run_line

    def counted(line, ctx, config):
        before = passes["n"]
        evidence = real(line, ctx, config)
        seen[line.name] = (evidence.status, passes["n"] - before, evidence.reason)
        return evidence

    monkeypatch.setattr(runner, "run_line", counted)
    audit(
        original,
        unlearned,
        data["forget"],
        data["retain"],
        data["holdout"],
        profile="quick",
        all_lines=True,
        progress=False,
    )
    refused = {name: s for name, s in seen.items() if s[0] == "not_run" and not s[2].startswith("error:")}
    assert "answer_probe" in refused  # sentence answers without perturbed ones or a key
    for name, (_, n, reason) in refused.items():
        assert n == 0, f"{name} ran {n} forward passes before refusing: {reason}"
    assert any(n > 0 for status, n, _ in seen.values() if status == "ok")  # the counter counts
