"""The command line: bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FORENSICS = str(Path(sys.executable).parent / "forensics")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FORENSICS, *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and pattern in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_model_folder(tmp_path):
    assert_one_line_error(run("check", "--original", str(tmp_path / "nope")), "model folder not found")


def test_usage_error_is_one_line():
    assert_one_line_error(run("zoo", "build", "--out", "x", "--size", "huge"), "invalid choice")


def test_pair_and_data_errors(tmp_path, tiny_checkpoints):
    neox, llama = str(tiny_checkpoints["gpt-neox"]), str(tiny_checkpoints["llama"])
    assert_one_line_error(run("check", "--original", neox, "--unlearned", llama), "architectures differ")
    bad = tmp_path / "forget.jsonl"
    bad.write_text('{"prompt": "a", "answer": " b"}\n{"prompt": 1, "answer": " b"}\n')
    assert_one_line_error(run("check", "--original", neox, "--forget", str(bad)), "forget.jsonl:2: field 'prompt'")


def test_check_accepts_good_input(tmp_path, tiny_checkpoints):
    facts = tmp_path / "retain.jsonl"
    facts.write_text('{"prompt": "the quick", "answer": " fox"}\n{"prompt": "the quick", "answer": " fox"}\n')
    neox = str(tiny_checkpoints["gpt-neox"])
    result = run("check", "--original", neox, "--unlearned", neox, "--retain", str(facts))
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert any(line.startswith("retain") and line.endswith(": 2 facts") for line in out), result.stdout
    # the logits were compared with transformers' on the user's own prompts
    assert "logits equal transformers' on 2 of your prompts" in out[0], result.stdout
    warnings = [line.strip() for line in out if line.strip().startswith("warning:")]
    assert len(warnings) == 1 and "duplicate fact" in warnings[0], result.stdout
    assert out[-1].strip() == warnings[0]  # warnings come last


def test_check_refuses_duplicate_ids_and_a_holdout_overlapping_forget(tmp_path, tiny_checkpoints):
    neox = str(tiny_checkpoints["gpt-neox"])
    forget = tmp_path / "forget.jsonl"
    forget.write_text(
        '{"prompt": "the quick", "answer": " fox", "id": "a"}\n{"prompt": "a lazy", "answer": " dog", "id": "a"}\n'
    )
    assert_one_line_error(run("check", "--original", neox, "--forget", str(forget)), "duplicate id 'a'")
    forget.write_text('{"prompt": "the quick", "answer": " fox"}\n{"prompt": "a lazy", "answer": " dog"}\n')
    holdout = tmp_path / "holdout.jsonl"
    holdout.write_text('{"prompt": "calm water", "answer": " glow"}\n{"prompt": "a lazy", "answer": " fox"}\n')
    result = run("check", "--original", neox, "--forget", str(forget), "--holdout", str(holdout))
    assert_one_line_error(result, "holdout set overlaps the forget set")


@pytest.mark.parametrize("args", [("zoo",), ()])
def test_missing_subcommand_exits_2(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_memprobe_writes_table_figure_json_and_refuses_misaligned_pools(tiny_zoo, tmp_path):
    import json

    data = tiny_zoo / "data"
    pools = ["--memorised", str(data / "memprobe_M.jsonl"), "--matched", str(data / "memprobe_C.jsonl")]
    out = tmp_path / "memprobe"
    result = run(
        "memprobe",
        "--model",
        str(tiny_zoo / "models" / "original"),
        *pools,
        "--paraphrase",
        str(data / "memprobe_B.jsonl"),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["memprobe.csv", "memprobe.json", "memprobe.png"]
    rows = json.loads((out / "memprobe.json").read_text())["per_depth"]
    assert len(rows) == 3 and all(-1 <= r["gap"] <= 1 for r in rows)  # tiny zoo: embeddings + 2 blocks
    short = tmp_path / "short.jsonl"
    short.write_text("".join(data.joinpath("memprobe_B.jsonl").read_text().splitlines(True)[:5]))
    bad_out = tmp_path / "bad"
    result = run(
        "memprobe",
        "--model",
        str(tiny_zoo / "models" / "original"),
        *pools,
        "--paraphrase",
        str(short),
        "--out",
        str(bad_out),
    )
    assert_one_line_error(result, "must align key by key")
    assert not bad_out.exists() and not any(p.name.startswith(".bad") for p in tmp_path.iterdir())
    result = run(
        "memprobe",
        "--model",
        str(tiny_zoo / "models" / "original"),
        *pools,
        "--paraphrase",
        str(data / "memprobe_B.jsonl"),
        "--out",
        str(out),
    )
    assert_one_line_error(result, "already exists and is not empty")


def test_check_refuses_logits_that_disagree_on_the_users_prompts(tmp_path, tiny_checkpoints, monkeypatch, capsys):
    import forensics.inputs.agreement as agreement
    from forensics.cli import main

    facts = tmp_path / "forget.jsonl"
    facts.write_text('{"prompt": "the quick", "answer": " fox"}\n{"prompt": "a lazy", "answer": " dog"}\n')
    monkeypatch.setattr(agreement, "logit_disagreement", lambda *a, **k: 0.5)  # what a mis-mapped field gives
    code = main(["check", "--original", str(tiny_checkpoints["gpt-neox"]), "--forget", str(facts)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "on your prompts" in err[0] and "0.5" in err[0], err
