"""The evidence-line registry: a line added with ``register`` alone is discovered, ordered,
configured (profile, seed, ``--set``), run by a real audit and listed by ``forensics lines``;
wrong declarations are refused."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import pytest

from forensics.cli import main
from forensics.core.evidence import Evidence
from forensics.core.registry import LINES, REQUIREMENTS, LineRegistrationError, discover_lines, register

TOY = "toy_line"
TOY_QUESTION = "Does a line declared only through register() take part in an audit?"
TOY_ORDER = 35  # between logit_lens (30) and the steering line (50)


@dataclass
class ToyConfig:
    #: How many forget facts the toy line reports (a documented field).
    n_report: int = 4
    #: The share it reports as its effect.
    share: float = 0.75
    n_boot: int = 1000
    seed: int = 0


def toy_run(ctx, config: ToyConfig) -> Evidence:
    """A toy line: votes suppressed and records what it was given."""
    return Evidence(
        TOY,
        TOY_QUESTION,
        "ok",
        effect=config.share,
        control=0.25,
        ci=(0.25, 0.75),
        vote="suppressed",
        reason="a toy vote",
        metric="toy share",
        details={
            "n_report": config.n_report,
            "seed": config.seed,
            "n_boot": config.n_boot,
            "first_forget": [f.prompt for f in ctx.forget[: config.n_report]],
        },
    )


def _register_toy():
    return register(
        TOY,
        question=TOY_QUESTION,
        needs=("original", "unlearned", "forget"),
        config=ToyConfig,
        votes=("suppressed",),
        side="above",
        order=TOY_ORDER,
        method="Reports what it was given.",
    )(toy_run)


@pytest.fixture
def toy_line():
    """The toy line in the registry for one test, removed afterwards."""
    assert TOY not in LINES
    _register_toy()
    try:
        yield LINES[TOY]
    finally:
        LINES.pop(TOY, None)


def test_a_registered_line_is_discovered_in_report_order(toy_line):
    lines, broken = discover_lines()
    assert broken == {}
    assert lines[TOY] is toy_line and toy_line.module == __name__ and toy_line.config is ToyConfig
    assert toy_line.votes == ("suppressed",) and toy_line.side == "above" and toy_line.needs[0] == "original"
    keys = [(spec.order, name) for name, spec in lines.items()]
    assert keys == sorted(keys)
    names = list(lines)
    assert names.index("logit_lens") < names.index(TOY) < names.index("steering_restoration")
    assert names[0] == "behaviour"
    # the shipped lines are all there, each from its own package
    assert {
        "behaviour",
        "attribute_probes",
        "logit_lens",
        "sae_features",
        "steering_restoration",
        "remind",
        "relearning_attack",
        "quantization_attack",
        "membership_inference",
        "memorisation_probe",
        "cka",
        "trace_detector",
    } <= set(lines)
    assert (
        lines["cka"].module == "forensics.lines.cka" and lines["sae_features"].module == "forensics.lines.sae_features"
    )
    assert all(set(spec.needs) <= set(REQUIREMENTS) for spec in lines.values())
    # registering the same function again (a module imported twice) is harmless
    _register_toy()
    assert inspect.unwrap(discover_lines()[0][TOY].run) is toy_run  # the stamping wrapper around it


def test_a_registered_line_runs_in_a_real_audit_with_its_settings_and_seed(toy_line, tiny_zoo, tmp_path):
    import forensics
    from forensics.reports.results_json import check_results

    d = tiny_zoo / "data"
    out = tmp_path / "report"
    result = forensics.audit(
        tiny_zoo / "models" / "original",
        tiny_zoo / "models" / "npo",
        d / "forget.jsonl",
        d / "retain.jsonl",
        d / "holdout.jsonl",
        out=out,
        profile="quick",
        seed=7,
        lines=[TOY],
        settings={TOY: {"n_report": 2}},
        progress=False,
        pdf=False,
    )
    assert [e.line for e in result.evidence] == ["behaviour", TOY]  # behaviour always runs
    toy = result.line(TOY)
    assert toy.status == "ok" and toy.vote == "suppressed", toy.reason
    assert toy.details["n_report"] == 2  # the override
    assert toy.details["seed"] == 7  # the audit's seed
    assert toy.details["n_boot"] == 200  # the quick profile's resampling
    assert len(toy.details["first_forget"]) == 2
    data = json.loads((out / "results.json").read_text())
    assert check_results(data) == []
    entry = next(e for e in data["evidence"] if e["line"] == TOY)
    assert entry["question"] == TOY_QUESTION and entry["vote"] == "suppressed" and entry["details"]["seed"] == 7
    assert entry["difference"] == pytest.approx(0.5)
    assert TOY_QUESTION in (out / "report.html").read_text()


def test_set_reaches_a_registered_line_through_the_cli(toy_line, tiny_zoo, tmp_path, capsys):
    d = tiny_zoo / "data"
    out = tmp_path / "report"
    code = main(
        [
            "audit",
            "--original",
            str(tiny_zoo / "models" / "original"),
            "--unlearned",
            str(tiny_zoo / "models" / "npo"),
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
            TOY,
            "--set",
            f"{TOY}.n_report=1",
            "--set",
            f"{TOY}.share=0.5",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert TOY in captured.out
    entry = next(e for e in json.loads((out / "results.json").read_text())["evidence"] if e["line"] == TOY)
    assert entry["details"]["n_report"] == 1 and entry["details"]["seed"] == 3 and entry["effect"] == 0.5


def test_forensics_lines_prints_the_question_and_documented_fields(toy_line, capsys):
    assert main(["lines", TOY]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{TOY}  ({__name__})")
    assert TOY_QUESTION in out
    assert "votes:    suppressed; control side: above" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("n_report"))
    assert "int" in row and "4" in row and "How many forget facts the toy line reports (a documented field)." in row
    assert "The share it reports as its effect." in out
    assert "logit_lens" not in out  # only the line asked for


def test_forensics_lines_lists_every_line_and_refuses_an_unknown_one(capsys):
    assert main(["lines"]) == 0
    out = capsys.readouterr().out
    for name, spec in discover_lines()[0].items():
        assert f"{name}  ({spec.module})" in out and spec.question in out
    assert "not loaded:" not in out
    assert main(["lines", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown evidence line(s) nonsense")


def _other(ctx, config=None):
    return Evidence.not_run("behaviour", "q", "never run")


def test_a_second_function_under_a_registered_name_is_refused():
    discover_lines()
    before = LINES["behaviour"]
    with pytest.raises(LineRegistrationError, match="registered twice"):
        register("behaviour", question="q", needs=("original",))(_other)
    assert LINES["behaviour"] is before


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"needs": ("original", "weights")}, "unknown requirements"),
        ({"needs": ("original",), "votes": ("maybe",)}, "unknown votes"),
        ({"needs": ("original",), "side": "below"}, "side must be"),
        ({"needs": ("original",), "config": dict}, "config must be a dataclass"),
        ({"needs": ("original",), "config": ToyConfig()}, "config must be a dataclass"),  # an instance, not the class
    ],
)
def test_wrong_declarations_are_refused(kwargs, pattern):
    with pytest.raises(LineRegistrationError, match=pattern):
        register("toy_wrong", question="q", **kwargs)(toy_run)
    assert "toy_wrong" not in LINES


def test_every_line_declares_its_model_pass_budget_and_the_profiles_change_it():
    from forensics.core.config import line_config
    from forensics.core.profiles import PROFILES

    registry, broken = discover_lines()
    assert not broken
    texts = {}
    for name, spec in registry.items():
        if name == TOY:
            continue
        assert spec.budget is not None, name
        texts[name] = {p: spec.budget(line_config(spec, profile, seed=0)) for p, profile in PROFILES.items()}
        assert all(len(t) > 40 for t in texts[name].values()), (name, texts[name])
    # the lines whose passes the profiles size say so: layer budgets, fine-tunes, strengths
    for name in ("patching", "steering_restoration", "tuned_lens", "relearning_attack"):
        assert texts[name]["quick"] != texts[name]["thorough"], name
    assert "6 blocks" in texts["patching"]["quick"] and "every block" in texts["patching"]["thorough"]
    # two splits (a bound needs two), each cross-fitted: U fine-tuned on F_a, F_b, H_a and H_b
    assert texts["relearning_attack"]["quick"].startswith("8 fine-tunes of U")
    assert texts["relearning_attack"]["standard"].startswith("8 fine-tunes of U")
