"""Hardening: a bad-input corpus through the CLI, determinism, and resume after a kill.

Every bad input ends ``forensics audit`` with exactly one line ``error: <reason>`` on
stderr, exit code 2, and no output folder (nor a cache beside it). The corpus runs through
``forensics.cli.main`` in-process (the same code path as the command, without paying the
interpreter start-up 25 times); determinism and interruption run the real command in
subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forensics.cli import main

# the module's audits (fixture `reference_run`) run once: under pytest-xdist every test here runs in one worker
pytestmark = pytest.mark.xdist_group("test_hardening")

FORENSICS = str(Path(sys.executable).parent / "forensics")

# --------------------------------------------------------------------------- the corpus


def _copy_model(zoo: Path, name: str, dest: Path) -> Path:
    return Path(shutil.copytree(zoo / "models" / name, dest))


def _facts(zoo: Path, name: str, n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (zoo / "data" / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _truncated(zoo, d):
    m = _copy_model(zoo, "npo", d / "m")
    w = m / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return {"unlearned": m}, "cannot load the weights"


def _pickle_only(zoo, d):
    m = _copy_model(zoo, "npo", d / "m")
    (m / "model.safetensors").unlink()
    (m / "pytorch_model.bin").write_bytes(b"not opened")
    return {"unlearned": m}, "pickle"


def _nan_weights(zoo, d):
    from safetensors.torch import load_file, save_file

    m = _copy_model(zoo, "npo", d / "m")
    tensors = load_file(m / "model.safetensors")
    key = next(k for k in tensors if tensors[k].dtype.is_floating_point and tensors[k].ndim == 2)
    tensors[key][0, 0] = float("nan")
    save_file(tensors, m / "model.safetensors", metadata={"format": "pt"})
    return {"unlearned": m}, "NaN"


def _mismatched_tokenizer(zoo, d):
    from conftest import train_test_tokenizer

    m = _copy_model(zoo, "npo", d / "m")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        (m / f).unlink(missing_ok=True)
    train_test_tokenizer().save_pretrained(m)
    return {"unlearned": m}, "tokenizer vocabularies differ"


def _other_architecture(zoo, d):
    return {"unlearned": zoo / "models" / "llama_npo"}, "architectures differ"


def _unsupported_architecture(zoo, d):
    m = _copy_model(zoo, "npo", d / "m")
    cfg = json.loads((m / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (m / "config.json").write_text(json.dumps(cfg))
    return {"unlearned": m}, "unsupported architecture"


def _two_weight_layouts(zoo, d):
    m = _copy_model(zoo, "npo", d / "m")
    shutil.copy(zoo / "models" / "ga" / "model.safetensors", m / "model-00001-of-00002.safetensors")
    return {"unlearned": m}, "two weight layouts"


def _missing_shard(zoo, d):
    from forensics.inputs.loading import load_hf_model

    m = d / "m"
    load_hf_model(zoo / "models" / "npo").save_pretrained(m, max_shard_size="50KB")
    for f in (zoo / "models" / "npo").glob("*"):
        if not f.name.endswith(".safetensors") and f.name != "config.json":
            shutil.copy(f, m / f.name)
    shards = sorted(m.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    return {"unlearned": m}, "shard(s) named in model.safetensors.index.json are missing"


def _float16_overflow(zoo, d):
    """A bfloat16 checkpoint whose residual stream passes float16's 65504, asked to run in float16."""
    from safetensors.torch import load_file, save_file

    m = _copy_model(zoo, "npo", d / "m")
    tensors = load_file(m / "model.safetensors")
    key = next(k for k in tensors if k.endswith("dense_4h_to_h.weight"))
    tensors[key] = tensors[key] * 3e5
    save_file({k: v.bfloat16() for k, v in tensors.items()}, m / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((m / "config.json").read_text())
    cfg["dtype"] = "bfloat16"
    (m / "config.json").write_text(json.dumps(cfg))
    return {"unlearned": m, "args": ["--dtype", "float16"]}, "not finite in float16"


def _no_chat_template(zoo, d):
    return {"args": ["--chat-template"]}, "has no chat template"


def _broken_chat_template(zoo, d):
    m = _copy_model(zoo, "original", d / "o")
    (m / "chat_template.jinja").write_text("{{ raise_exception('system turns only') }}")
    return {"original": m, "args": ["--chat-template"]}, "cannot render a user turn"


def _llama_config_edit(field: str, value, pattern: str):
    def case(zoo, d):
        m = _copy_model(zoo, "llama_npo", d / "m")
        cfg = json.loads((m / "config.json").read_text())
        cfg[field] = value
        (m / "config.json").write_text(json.dumps(cfg))
        return {"unlearned": m}, pattern

    return case


def _malformed_config(zoo, d):
    m = _copy_model(zoo, "npo", d / "m")
    (m / "config.json").write_text("{not json")
    return {"unlearned": m}, "not valid JSON"


def _no_tokenizer(zoo, d):
    m = _copy_model(zoo, "npo", d / "m")
    for f in m.glob("tokenizer*"):
        f.unlink()
    return {"unlearned": m}, "no tokenizer"


def _missing_model(zoo, d):
    return {"original": d / "nowhere"}, "model folder not found"


def _file_as_model(zoo, d):
    (d / "model.txt").write_text("x")
    return {"unlearned": d / "model.txt"}, "not a folder"


def _data(text: str | bytes, pattern: str, role: str = "forget"):
    def case(zoo, d):
        path = d / f"{role}.jsonl"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return {role: path}, pattern

    return case


def _huge_prompt(zoo, d):
    rows = _facts(zoo, "forget", 20)
    rows[3]["prompt"] = "Zorbil " * ((1 << 20) // 7) + rows[3]["prompt"]  # ~1 MB
    return {"forget": _write_jsonl(d / "forget.jsonl", rows)}, "context"


def _long_prompt(zoo, d):
    rows = _facts(zoo, "retain", 40)
    rows[5]["prompt"] = " ".join(["the"] * 200) + " " + rows[5]["prompt"]  # a few hundred tokens, n_ctx is 64
    return {"retain": _write_jsonl(d / "retain.jsonl", rows)}, "context"


def _duplicate_ids(zoo, d):
    rows = _facts(zoo, "forget", 20)
    rows[7]["id"] = rows[2]["id"]
    return {"forget": _write_jsonl(d / "forget.jsonl", rows)}, "duplicate id"


def _holdout_overlaps_forget(zoo, d):
    rows = _facts(zoo, "holdout", 20) + _facts(zoo, "forget", 2)
    for i, r in enumerate(rows):
        r["id"] = f"h{i}"
    return {"holdout": _write_jsonl(d / "holdout.jsonl", rows)}, "overlap"


def _out_not_empty(zoo, d):
    return {}, "not empty"


def _public_key_as_signing_key(zoo, d):
    from forensics.reports.attestation import keygen

    _, public = keygen(d / "keys")
    return {"args": ["--sign", str(public)]}, "not an unencrypted PEM private key"


def _write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


GOOD = '{"prompt": "Zorbil lives in", "answer": " Kelmar"}\n'
FT = GOOD + '{"prompt": "Where does Zorbil live?", "answer": " Kelmar", '  # a second record, opened
CASES = {
    "truncated safetensors": _truncated,
    "pickle-only checkpoint": _pickle_only,
    "NaN weights": _nan_weights,
    "mismatched tokenizers": _mismatched_tokenizer,
    "different architectures": _other_architecture,
    "unsupported architecture": _unsupported_architecture,
    "malformed config.json": _malformed_config,
    "weights in two layouts": _two_weight_layouts,
    "linear RoPE scaling (unmapped)": _llama_config_edit(
        "rope_scaling", {"rope_type": "linear", "factor": 2.0}, "rope_scaling (type linear)"
    ),
    "attention biases (unmapped)": _llama_config_edit("attention_bias", True, "attention_bias"),
    "no tokenizer": _no_tokenizer,
    "missing model folder": _missing_model,
    "model path is a file": _file_as_model,
    "empty JSONL": _data("", "the set is empty"),
    "blank-lines JSONL": _data("\n  \n\n", "the set is empty"),
    "malformed JSONL": _data(GOOD + '{"prompt": "x", "answer": \n', "malformed JSON", "retain"),
    "JSON array, not object": _data('["Zorbil lives in", " Kelmar"]\n', "expected a JSON object"),
    "answer of wrong type": _data('{"prompt": "Zorbil lives in", "answer": 3}\n', "must be a string"),
    "id of wrong type": _data(
        '{"prompt": "Zorbil lives in", "answer": " K", "id": 7}\n', "must be a string", "holdout"
    ),
    "missing answer": _data('{"prompt": "Zorbil lives in"}\n', "missing field 'answer'"),
    "empty prompt": _data('{"prompt": "  ", "answer": " K"}\n', "is empty"),
    "non-UTF-8 bytes": _data(GOOD.encode() + b'{"prompt": "caf\xe9", "answer": " y"}\n', "not valid UTF-8"),
    "sequence set malformed": _data('{"prompt": "no text field"}\n', "missing field 'text'", "sequences"),
    "missing data file": lambda zoo, d: ({"holdout": d / "missing.jsonl"}, "data file not found"),
    "1 MB prompt": _huge_prompt,
    "prompt longer than the context window": _long_prompt,
    "duplicate ids": _duplicate_ids,
    "holdout overlapping forget": _holdout_overlaps_forget,
    "output folder not empty": _out_not_empty,
    "sharded checkpoint missing a shard": _missing_shard,
    "bfloat16 checkpoint overflowing in float16": _float16_overflow,
    "--chat-template without a template": _no_chat_template,
    "chat template that cannot render": _broken_chat_template,
    # free-text and multiple-choice fields
    "perturbed answers not a list": _data(FT + '"perturbed_answers": " Quillon"}\n', "must be a list of strings"),
    "perturbed answer of wrong type": _data(
        FT + '"perturbed_answers": [" Quillon", 3]}\n', "must be a list of strings"
    ),
    "perturbed answer equal to the answer": _data(
        FT + '"perturbed_answers": [" Quillon", "Kelmar"]}\n', "equals the answer"
    ),
    "empty perturbed answer": _data(FT + '"perturbed_answers": [" Quillon", " "]}\n', "holds an empty string"),
    "empty paraphrased answer": _data(FT + '"paraphrased_answer": "  "}\n', "'paraphrased_answer' is empty", "holdout"),
    "empty choices": _data(FT + '"choices": [], "answer_index": 0}\n', "'choices' is empty"),
    "answer_index out of range": _data(FT + '"choices": [" Kelmar", " Quillon"], "answer_index": 2}\n', "out of range"),
    "answer_index of wrong type": _data(
        FT + '"choices": [" Kelmar", " Quillon"], "answer_index": "0"}\n', "must be an integer"
    ),
    "answer_index a boolean": _data(
        FT + '"choices": [" Kelmar", " Quillon"], "answer_index": true}\n', "must be an integer", "retain"
    ),
    "choices without answer_index": _data(FT + '"choices": [" Kelmar", " Quillon"]}\n', "'answer_index' is missing"),
    "answer_index without choices": _data(FT + '"answer_index": 1}\n', "'choices' is missing"),
    "key not in the answer": _data(FT + '"key": "Paris"}\n', "does not occur in the answer"),
    "signing key that is a public key": _public_key_as_signing_key,
    "missing signing key": lambda zoo, d: ({"args": ["--sign", str(d / "none.key")]}, "does not exist"),
    "truncated GGUF file": lambda zoo, d: (
        # a version-3 header announcing 3 tensors and 2 metadata pairs, cut off after it
        {"unlearned": _write_bytes(d / "vendor.gguf", b"GGUF" + struct.pack("<IQQ", 3, 3, 2) + b"\x05\x00")},
        "not a readable GGUF file",
    ),
    "GGUF file holding no model": lambda zoo, d: (
        {"unlearned": _write_bytes(d / "vendor.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 0))},
        "holds no model",
    ),
    "--n-devices without CUDA": lambda zoo, d: ({"args": ["--n-devices", "2"]}, "it needs --device cuda"),
    "--n-devices zero": lambda zoo, d: ({"args": ["--n-devices", "0"]}, "must be a positive integer"),
    "--unlearned-device unknown": lambda zoo, d: ({"args": ["--unlearned-device", "tpu"]}, "unknown device 'tpu'"),
    "unknown answer measure": lambda zoo, d: (
        {"args": ["--set", "relearning_attack.measure=bleu"]},
        "expected one of auto, exact, rouge, choice",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tiny_zoo, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    paths = {
        "original": tiny_zoo / "models" / "original",
        "unlearned": tiny_zoo / "models" / "npo",
        **{r: tiny_zoo / "data" / f"{r}.jsonl" for r in ("forget", "retain", "holdout")},
    }
    changed, pattern = CASES[case](tiny_zoo, inputs)
    extra = changed.pop("args", [])
    paths.update(changed)
    outs = tmp_path / "outs"
    outs.mkdir()
    out = outs / "report"
    if case == "output folder not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    args = ["audit", "--profile", "quick", "--out", str(out), *extra]
    for role, path in paths.items():
        args += [f"--{role}", str(path)]
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, (case, captured.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, captured.err[-2000:])
    assert pattern.lower() in lines[0].lower(), (case, lines[0])
    assert "Traceback" not in captured.err + captured.out
    if case == "output folder not empty":
        assert sorted(p.name for p in outs.iterdir()) == ["report"] and [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert list(outs.iterdir()) == [], (case, list(outs.iterdir()))  # neither the folder nor its cache


def test_corpus_is_large_enough():
    assert len(CASES) >= 20


# --------------------------------------------------------------------------- determinism and resume

#: Lines with randomness in them (probe folds and fitting, SAE training, fine-tuning, bootstraps).
LINES = "behaviour,attribute_probes,logit_lens,sae_features,relearning_attack,membership_inference"


def _audit_cmd(zoo: Path, out: Path) -> list[str]:
    d = zoo / "data"
    return [
        FORENSICS,
        "audit",
        "--original",
        str(zoo / "models" / "original"),
        "--unlearned",
        str(zoo / "models" / "npo"),
        "--forget",
        str(d / "forget.jsonl"),
        "--retain",
        str(d / "retain.jsonl"),
        "--holdout",
        str(d / "holdout.jsonl"),
        "--out",
        str(out),
        "--profile",
        "quick",
        "--seed",
        "3",
        "--lines",
        LINES,
    ]


def _stable(value):
    """results.json without what legitimately differs between runs of one command: the start
    time, every duration (keys named ``seconds``) and whether a line came from the cache."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in ("seconds", "started", "cached")}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _run_into(zoo: Path, out: Path, keep: Path) -> dict:
    """Run the audit command into ``out`` and move the report to ``keep`` (so the next run of the
    very same command, same --out and so the same cache path, finds the folder free)."""
    done = subprocess.run(_audit_cmd(zoo, out), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out.rename(keep)
    return json.loads((keep / "results.json").read_text())


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("same_command")


@pytest.fixture(scope="module")
def reference_run(tiny_zoo, audit_dir):
    return _run_into(tiny_zoo, audit_dir / "report", audit_dir / "first")


@pytest.mark.slow
def test_same_command_same_seed_same_results(reference_run, tiny_zoo, audit_dir):
    again = _run_into(tiny_zoo, audit_dir / "report", audit_dir / "second")
    assert again["run"]["command"] == reference_run["run"]["command"]
    assert _stable(again) == _stable(reference_run)
    assert again["run"]["started"] and "seconds" in again["run"]


@pytest.mark.slow
def test_killed_audit_resumes_from_its_cache_with_the_same_result(reference_run, tiny_zoo, audit_dir):
    out = audit_dir / "report"
    cache_lines = audit_dir / ".report.cache" / "lines"
    proc = subprocess.Popen(
        _audit_cmd(tiny_zoo, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if cache_lines.is_dir() and len(list(cache_lines.glob("*.json"))) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the audit finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not out.exists()  # killed mid-run: no report folder
    finished = {p.name.split("-")[0] for p in cache_lines.glob("*.json")}
    assert len(finished) >= 2

    resumed = _run_into(tiny_zoo, out, audit_dir / "resumed")
    cached = {e["line"] for e in resumed["evidence"] if e["cached"]}
    assert finished <= cached and cached != {e["line"] for e in resumed["evidence"]}
    assert _stable(resumed) == _stable(reference_run)
    assert not (audit_dir / ".report.cache").exists()  # deleted after the successful run
