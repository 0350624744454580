"""The audit: CLI end to end on the tiny zoo, failures, resume (the verdict rule: tests/unit/core/test_verdict.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forensics.core.registry import LINES, register
from forensics.core.verdict import RULE
from forensics.reports.results_json import check_results

# the module's audits (fixture `zoo_audits`) run once: under pytest-xdist every test here runs in one worker
pytestmark = pytest.mark.xdist_group("test_audit")

FORENSICS = str(Path(sys.executable).parent / "forensics")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FORENSICS, *args], capture_output=True, text=True, timeout=900)


def zoo_args(zoo: Path, model: str) -> list[str]:
    d = zoo / "data"
    return [
        "--original",
        str(zoo / "models" / "original"),
        "--unlearned",
        str(zoo / "models" / model),
        "--forget",
        str(d / "forget.jsonl"),
        "--retain",
        str(d / "retain.jsonl"),
        "--holdout",
        str(d / "holdout.jsonl"),
    ]


# --------------------------------------------------------------------------- end to end through the CLI


@pytest.fixture(scope="module")
def zoo_audits(tiny_zoo, tmp_path_factory):
    """`forensics audit --profile quick` of npo and retrain, sharing one cache (O's activations, SAE)."""
    root = tmp_path_factory.mktemp("audits")
    runs = {}
    for model in ("npo", "retrain"):
        out = root / model
        result = run(
            "audit", *zoo_args(tiny_zoo, model), "--out", str(out), "--profile", "quick", "--cache", str(root / "cache")
        )
        runs[model] = (result, out)
    return runs


@pytest.mark.slow
def test_cli_audit_writes_reports_and_the_expected_verdicts(zoo_audits):
    verdicts = {}
    for model, (result, out) in zoo_audits.items():
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stdout
        for name in ("report.html", "report.pdf", "results.json"):
            assert (out / name).is_file() and (out / name).stat().st_size > 0
        assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
        data = json.loads((out / "results.json").read_text())
        assert check_results(data) == []
        assert data["schema"] == "unlearning-forensics/results" and data["schema_version"] == 1
        assert data["run"]["profile"] == "quick" and data["run"]["command"].startswith("forensics audit")
        assert data["inputs"]["unlearned"]["weights_sha256"] != data["inputs"]["original"]["weights_sha256"]
        assert len(data["inputs"]["forget"]["content_sha256"]) == 64
        lines = {e["line"]: e for e in data["evidence"]}
        assert {"behaviour", "attribute_probes", "logit_lens", "trace_detector"} <= set(lines)
        assert all(isinstance(e["seconds"], float) for e in data["evidence"])
        assert all(not e["reason"].startswith("error:") for e in data["evidence"]), [
            (e["line"], e["reason"]) for e in data["evidence"] if e["reason"].startswith("error:")
        ]
        assert data["behaviour"]["unlearned"]["forget"]["accuracy"] < 0.5
        assert data["verdict"]["rule"] == list(RULE)
        assert f"verdict: {data['verdict']['label']}" in result.stdout
        verdicts[model] = data["verdict"]["label"]
    assert verdicts["npo"] == "SUPPRESSED"
    assert verdicts["retrain"] != "SUPPRESSED"


@pytest.mark.slow
def test_shared_cache_is_kept_and_reused(zoo_audits):
    out = zoo_audits["retrain"][1]
    cache = out.parent / "cache"
    assert (cache / "activations").is_dir() and any((cache / "lines").iterdir())
    data = json.loads((out / "results.json").read_text())
    assert data["run"]["seconds"] > 0


def test_bad_input_exits_2_and_leaves_nothing(tiny_zoo, tmp_path):
    out = tmp_path / "report"
    args = zoo_args(tiny_zoo, "npo")
    args[args.index("--holdout") + 1] = str(tmp_path / "missing.jsonl")
    result = run("audit", *args, "--out", str(out))
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.jsonl" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its cache

    result = run("audit", *zoo_args(tiny_zoo, "npo"), "--out", str(out), "--lines", "behaviour,nonsense")
    assert result.returncode == 2 and "unknown evidence line" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_failing_line_is_recorded_and_resume_uses_the_cache(tiny_zoo, tmp_path):
    from forensics import audit

    @register("test_boom", question="Does a broken line stop the audit?", needs=("original",))
    def boom(ctx, config=None):
        raise RuntimeError("boom\nsecond line")

    d = tiny_zoo / "data"
    args = (
        tiny_zoo / "models" / "original",
        tiny_zoo / "models" / "npo",
        d / "forget.jsonl",
        d / "retain.jsonl",
        d / "holdout.jsonl",
    )
    try:
        first = audit(
            *args,
            cache_dir=tmp_path / "cache",
            profile="quick",
            progress=False,
            lines=["behaviour", "logit_lens", "test_boom"],
        )
        again = audit(
            *args,
            cache_dir=tmp_path / "cache",
            profile="quick",
            progress=False,
            lines=["behaviour", "logit_lens", "test_boom"],
        )
    finally:
        LINES.pop("test_boom", None)
    failed = first.line("test_boom")
    assert failed.status == "not_run" and failed.reason == "error: RuntimeError: boom"
    assert first.line("logit_lens").status == "descriptive"
    assert again.timings["logit_lens"]["cached"] and again.timings["behaviour"]["cached"]
    assert not again.timings["test_boom"]["cached"]  # errors are retried, not cached
    assert again.line("logit_lens").to_json() == first.line("logit_lens").to_json()
    assert again.line("logit_lens").figures == first.line("logit_lens").figures
    assert again.verdict.label == first.verdict.label


def test_no_holdout_is_inconclusive(tiny_zoo):
    from forensics import audit

    d = tiny_zoo / "data"
    result = audit(
        tiny_zoo / "models" / "original",
        tiny_zoo / "models" / "npo",
        d / "forget.jsonl",
        d / "retain.jsonl",
        progress=False,
        profile="quick",
        lines=["behaviour", "logit_lens"],
    )
    assert result.verdict.label == "INCONCLUSIVE" and "holdout" in result.verdict.reason
    assert result.line("logit_lens").status == "not_run"
    assert check_results(result.to_json()) == []


def test_profiles_name_real_config_fields():
    from forensics.core.config import profile_problems
    from forensics.core.profiles import PROFILES
    from forensics.core.registry import discover_lines

    assert set(PROFILES) == {"quick", "standard", "thorough"}
    lines, broken = discover_lines()
    assert broken == {}
    assert profile_problems(lines, PROFILES) == []
    # every line a profile names exists (a renamed line would leave its profile entry behind)
    assert {name for p in PROFILES.values() for name in p.lines} <= set(lines)
