"""Review findings made tests: cache keys that see dtype and code, paths that cannot hold an
output or a cache, a corrupt resume entry, and lines that break their declaration."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from forensics.cli import main


def test_model_identity_sees_dtype_and_weights(tiny_checkpoints):
    from forensics.core.keys import code_version, model_identity
    from forensics.inputs.loading import load_model

    f32 = model_identity(load_model(tiny_checkpoints["llama"], dtype="float32"))
    bf16 = model_identity(load_model(tiny_checkpoints["llama"], dtype="bfloat16"))
    other = model_identity(load_model(tiny_checkpoints["gpt2"], dtype="float32"))
    assert f32 != bf16 and f32["weights"] == bf16["weights"] and f32["dtype"] == "float32"
    assert other["weights"] != f32["weights"]
    assert len(code_version()) == 64 and code_version() == code_version()


def _audit_args(zoo, out, *extra):
    data = zoo / "data"
    return [
        "audit",
        "--original",
        str(zoo / "models" / "original"),
        "--unlearned",
        str(zoo / "models" / "npo"),
        "--forget",
        str(data / "forget.jsonl"),
        "--retain",
        str(data / "retain.jsonl"),
        "--holdout",
        str(data / "holdout.jsonl"),
        "--out",
        str(out),
        "--profile",
        "quick",
        *extra,
    ]


@pytest.mark.parametrize(
    "case", ["out under a file", "out is a file", "cache is a file", "cache inside out", "cache is out"]
)
def test_paths_that_cannot_hold_the_output_or_cache(case, tiny_zoo, tmp_path, capsys):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("mine")
    out, extra, expected = tmp_path / "report", [], ""
    if case == "out under a file":
        out, expected = a_file / "report", "is a file"
    elif case == "out is a file":
        out, expected = a_file, "is a file"
    elif case == "cache is a file":
        extra, expected = ["--cache", str(a_file)], "cache folder"
    elif case == "cache inside out":
        extra, expected = ["--cache", str(out / "cache")], "must not be inside the output folder"
    else:
        extra, expected = ["--cache", str(out)], "must not be inside the output folder"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(_audit_args(tiny_zoo, out, *extra, "--lines", "behaviour"))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and a_file.read_text() == "mine"


def test_a_corrupt_resume_entry_is_a_cache_miss(tiny_zoo, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(_audit_args(tiny_zoo, tmp_path / "first", "--cache", str(cache), "--lines", "logit_lens")) == 0
    entries = sorted((cache / "lines").glob("logit_lens-*.json"))
    assert len(entries) == 1
    first = json.loads((tmp_path / "first" / "results.json").read_text())
    entries[0].write_text('{"seconds": 1.0, "evidence": {"line": "logit_l')  # a torn write
    capsys.readouterr()
    assert main(_audit_args(tiny_zoo, tmp_path / "second", "--cache", str(cache), "--lines", "logit_lens")) == 0
    second = json.loads((tmp_path / "second" / "results.json").read_text())
    lens = [next(e for e in r["evidence"] if e["line"] == "logit_lens") for r in (first, second)]
    assert lens[1]["cached"] is False and lens[0]["effect"] == lens[1]["effect"]
    assert lens[1]["config"] == lens[0]["config"] and second["run"]["lines"] == ["logit_lens"]


@dataclass
class _Config:
    #: nothing to set
    seed: int = 0


def test_a_line_that_breaks_its_declaration_is_not_run(tiny_zoo):
    import forensics
    from forensics.core.evidence import Evidence
    from forensics.core.registry import LINES, register

    @register("liar_line", question="?", needs=("forget",), config=_Config, votes=(), order=500)
    def liar(ctx, config):
        return Evidence(line="liar_line", question="?", status="ok", effect=1.0, control=0.0, vote="suppressed")

    @register("impostor_line", question="?", needs=("forget",), config=_Config, votes=("suppressed",), order=501)
    def impostor(ctx, config):
        return Evidence(line="behaviour", question="?", status="ok", vote="suppressed")

    try:
        data = tiny_zoo / "data"
        result = forensics.audit(
            tiny_zoo / "models" / "original",
            tiny_zoo / "models" / "npo",
            data / "forget.jsonl",
            data / "retain.jsonl",
            data / "holdout.jsonl",
            profile="quick",
            lines=["liar_line", "impostor_line"],
            progress=False,
        )
        liar_ev, impostor_ev = result.line("liar_line"), result.line("impostor_line")
        assert liar_ev.status == "not_run" and "declares votes ()" in liar_ev.reason
        assert impostor_ev.status == "not_run" and "evidence named 'behaviour'" in impostor_ev.reason
        assert [e.line for e in result.evidence].count("behaviour") == 1
    finally:
        LINES.pop("liar_line", None)
        LINES.pop("impostor_line", None)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"seed": "0"}, "seed must be an integer"),
        ({"lines": "remind"}, "lines must be a list"),
        ({"settings": {"remind": 5}}, "settings must be a dict"),
    ],
)
def test_api_arguments_of_the_wrong_type(kwargs, expected, tiny_zoo):
    import forensics
    from forensics.core.errors import ForensicsInputError

    data = tiny_zoo / "data"
    with pytest.raises(ForensicsInputError, match=expected):
        forensics.audit(
            tiny_zoo / "models" / "original",
            tiny_zoo / "models" / "npo",
            data / "forget.jsonl",
            data / "retain.jsonl",
            data / "holdout.jsonl",
            progress=False,
            **kwargs,
        )
