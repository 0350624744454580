"""Line configuration: ``--set LINE.FIELD=VALUE`` parsing and type checks, the order in which
defaults, seed, profile and overrides apply, ``#:`` field docs, and bad ``--set`` through the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from forensics.cli import main
from forensics.core.config import describe_config, field_docs, line_config, parse_overrides, profile_problems
from forensics.core.errors import ForensicsInputError
from forensics.core.profiles import PROFILES, Profile
from forensics.core.registry import LineSpec, discover_lines


@dataclass
class Inner:
    #: A nested strength.
    k: int = 8
    seed: int = 0


@dataclass
class Knobs:
    #: Steps to take.
    steps: int = 10
    #: A learning rate,
    #: documented on two lines.
    rate: float = 0.1
    flag: bool = False
    bits: tuple[int, ...] = (8, 4)
    alphas: tuple[float, ...] = (1.0,)
    limit: int | None = 100
    name: str = "x"
    path: Path | None = None
    inner: Inner = field(default_factory=Inner)
    n_boot: int = 1000
    n_perm: int = 500
    seed: int = 0


def _run(ctx, config):
    raise AssertionError("never run")


KNOBS = LineSpec(name="knobs", question="q", needs=("original",), run=_run, config=Knobs)
BARE = LineSpec(name="bare", question="q", needs=("original",), run=_run)
TOY_LINES = {"knobs": KNOBS, "bare": BARE}


def parse(*items: str) -> dict:
    return parse_overrides(list(items), TOY_LINES)


# --------------------------------------------------------------------------- parse_overrides


def test_values_parse_to_the_field_types():
    got = parse(
        "knobs.steps=3",
        "knobs.rate=0.5",
        "knobs.flag=true",
        "knobs.bits=(4, 2)",
        "knobs.limit=none",
        "knobs.inner.k=2",
        "knobs.name=abc",
        "knobs.path=/tmp/somewhere",
    )["knobs"]
    assert got == {
        "steps": 3,
        "rate": 0.5,
        "flag": True,
        "bits": (4, 2),
        "limit": None,
        "inner.k": 2,
        "name": "abc",
        "path": Path("/tmp/somewhere"),
    }
    assert type(got["steps"]) is int and type(got["flag"]) is bool and type(got["inner.k"]) is int
    assert type(got["bits"]) is tuple and isinstance(got["path"], Path)
    # ints widen to float; a tuple may be a comma list or one value; `X | None` takes an X too
    rate = parse("knobs.rate=1")["knobs"]["rate"]
    assert rate == 1.0 and type(rate) is float
    assert parse("knobs.bits=4,2")["knobs"]["bits"] == (4, 2)
    assert parse("knobs.bits=4")["knobs"]["bits"] == (4,)
    alphas = parse("knobs.alphas=1, 2.5")["knobs"]["alphas"]
    assert alphas == (1.0, 2.5) and all(type(a) is float for a in alphas)
    assert parse("knobs.limit=12")["knobs"]["limit"] == 12
    assert parse("knobs.flag=False")["knobs"]["flag"] is False
    assert parse("knobs.name='with space'")["knobs"]["name"] == "with space"
    assert parse() == {}


def test_real_line_fields_parse():
    lines = discover_lines()[0]
    got = parse_overrides(
        [
            "attribute_probes.n_perm=20",
            "attribute_probes.probe.linear_c_grid=0.1,1",
            "remind.max_per_set=none",
            "relearning_attack.seeds=0",
            "quantization_attack.bits=4",
            "steering_restoration.features.sae.training_tokens=1000",
            "steering_restoration.features.sae.sae_path=/some/sae",
        ],
        lines,
    )
    assert got == {
        "attribute_probes": {"n_perm": 20, "probe.linear_c_grid": (0.1, 1.0)},
        "remind": {"max_per_set": None},
        "relearning_attack": {"seeds": (0,)},
        "quantization_attack": {"bits": (4,)},
        "steering_restoration": {"features.sae.training_tokens": 1000, "features.sae.sae_path": Path("/some/sae")},
    }
    config = line_config(lines["steering_restoration"], PROFILES["quick"], 0, got["steering_restoration"])
    assert config.features.sae.training_tokens == 1000 and config.features.sae.sae_path == Path("/some/sae")


@pytest.mark.parametrize(
    "item, pattern",
    [
        ("nope.steps=1", "unknown evidence line 'nope'"),
        ("knobs.nope=1", "Knobs has no field 'nope'"),
        ("knobs.inner.nope=1", "Inner has no field 'nope'"),
        ("knobs.steps.deeper=1", "'steps' is not a nested configuration"),
        ("bare.x=1", "line 'bare' has no configuration"),
        ("knobs.steps", "expected LINE.FIELD=VALUE"),
        ("knobs=3", "expected LINE.FIELD=VALUE"),
        ("knobs.steps=abc", "knobs.steps=abc: expected int"),
        ("knobs.steps=1.5", "expected int"),
        ("knobs.steps=true", "expected int"),  # a bool is not an int here
        ("knobs.rate=fast", "knobs.rate=fast: expected float"),
        ("knobs.flag=1", "expected bool"),
        ("knobs.bits=a,b", "knobs.bits=a,b: expected tuple"),
        ("knobs.limit=many", "knobs.limit=many: expected int | None"),
        ("knobs.inner.k=0.5", "knobs.inner.k=0.5: expected int"),
    ],
)
def test_bad_overrides_are_one_line_input_errors(item, pattern):
    with pytest.raises(ForensicsInputError) as err:
        parse("knobs.steps=2", item)
    message = str(err.value)
    assert "\n" not in message and message.startswith("--set "), message
    assert pattern in message, message


# --------------------------------------------------------------------------- line_config


def test_line_config_applies_defaults_seed_profile_then_overrides():
    profile = Profile(
        "p", "test", n_boot=7, n_perm=None, lines={"knobs": {"steps": 2, "inner.k": 4, "rate": 0.3, "gone": 1}}
    )
    config = line_config(KNOBS, profile, seed=5, overrides={"steps": 9, "bits": (2,)})
    assert config.steps == 9 and config.bits == (2,)  # the override beats the profile
    assert config.rate == 0.3 and config.inner.k == 4  # the profile's per-line values, nested too
    assert config.seed == 5 and config.inner.seed == 5  # the audit's seed, in nested configs too
    assert config.n_boot == 7 and config.n_perm == 500  # the profile's resampling; None keeps the default
    assert config.limit == 100 and config.flag is False
    assert Knobs().steps == 10 and Knobs().inner.seed == 0  # the defaults themselves are untouched
    assert line_config(KNOBS, profile, seed=1).steps == 2
    # a field the config lacks is skipped by line_config and reported by profile_problems
    assert profile_problems(TOY_LINES, {"p": profile}) == ["p: knobs.gone"]
    assert line_config(BARE, profile, 0) is None


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"nope": 1}, "has no field 'nope'"),
        ({"inner.nope": 1}, "has no field 'nope'"),
        ({"steps": "abc"}, "expected int"),
        ({"steps": True}, "expected int"),
        ({"inner.k": 0.5}, "expected int"),
        ({"bits": ("a",)}, "expected tuple"),
        ({"limit": "many"}, "expected int | None"),
    ],
)
def test_line_config_refuses_an_unknown_field_or_a_wrong_type(overrides, pattern):
    """``settings`` passed to ``forensics.audit(...)`` go straight to line_config: they are checked there."""
    with pytest.raises(ForensicsInputError, match=pattern.replace("|", r"\|")):
        line_config(KNOBS, PROFILES["quick"], 0, overrides)


def test_line_config_takes_api_values_of_the_field_types():
    config = line_config(
        KNOBS, PROFILES["quick"], 0, {"rate": 1, "bits": [3, 2], "path": Path("/x"), "inner": Inner(k=3), "limit": None}
    )
    assert config.rate == 1.0 and config.bits == (3, 2) and config.path == Path("/x")
    assert config.inner.k == 3 and config.limit is None
    with pytest.raises(ForensicsInputError, match="no configuration"):
        line_config(BARE, PROFILES["quick"], 0, {"x": 1})


def test_shipped_profiles_fit_the_shipped_lines():
    lines = discover_lines()[0]
    assert profile_problems(lines, PROFILES) == []
    for name, spec in lines.items():
        for profile in PROFILES.values():
            config = line_config(spec, profile, seed=11)
            if config is not None:
                assert getattr(config, "seed", 11) == 11, name
                if (
                    profile.n_boot is not None
                    and hasattr(config, "n_boot")
                    and "n_boot" not in {**spec.profiles.get(profile.name, {}), **profile.lines.get(name, {})}
                ):
                    assert config.n_boot == profile.n_boot, (name, profile.name)


# --------------------------------------------------------------------------- field docs


def test_field_docs_and_describe_config():
    assert field_docs(Knobs) == {"steps": "Steps to take.", "rate": "A learning rate, documented on two lines."}
    rows = {row[0]: row for row in describe_config(Knobs)}
    assert list(rows)[:2] == ["steps", "rate"] and "inner" not in rows
    assert rows["steps"] == ("steps", "int", "10", "Steps to take.")
    assert rows["inner.k"] == ("inner.k", "int", "8", "A nested strength.")
    assert rows["limit"][1:3] == ("int | None", "100") and rows["flag"][3] == ""
    docs = {row[0]: row[3] for row in describe_config(discover_lines()[0]["attribute_probes"].config)}
    assert docs["curves"].startswith('"position/kind" curves to compute')
    assert "probe.linear_c_grid" in docs


# --------------------------------------------------------------------------- --set through the CLI


@pytest.mark.parametrize(
    "setting, pattern",
    [
        ("attribute_probes.n_perm=abc", "--set attribute_probes.n_perm=abc: expected int"),
        ("attribute_probes.nope=1", "has no field 'nope'"),
        ("nonsense.n_perm=1", "unknown evidence line 'nonsense'"),
        ("attribute_probes.n_perm", "expected LINE.FIELD=VALUE"),
    ],
)
def test_bad_set_is_one_line_exit_2_and_writes_nothing(setting, pattern, tiny_zoo, tmp_path, capsys):
    d = tiny_zoo / "data"
    outs = tmp_path / "outs"
    outs.mkdir()
    out = outs / "report"
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
            "--set",
            "logit_lens.n_perm=20",
            "--set",
            setting,
        ]
    )
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], lines
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists() and list(outs.iterdir()) == []  # neither the folder nor its cache


def test_every_shipped_field_takes_its_own_default_back():
    """Every field ``forensics lines`` lists can be set, through the API and as ``--set`` text."""
    import dataclasses

    lines = discover_lines()[0]
    for name, spec in lines.items():
        if spec.config is None:
            continue
        default = spec.config()
        for path, *_ in describe_config(spec.config):
            value = default
            for part in path.split("."):
                value = getattr(value, part)
            config = line_config(spec, PROFILES["thorough"], 0, {path: value})
            assert dataclasses.is_dataclass(config), (name, path)
            if value is None or isinstance(value, (bool, int, float, str, tuple)):
                text = ",".join(map(str, value)) if isinstance(value, tuple) and value else repr(value)
                if isinstance(value, tuple) and len(value) == 1:
                    text = repr(value)
                assert parse_overrides([f"{name}.{path}={text}"], lines) == {name: {path: value}}, (name, path)


def test_a_comma_list_of_strings_is_a_tuple_of_strings():
    lines = discover_lines()[0]
    got = parse_overrides(["attribute_probes.curves=final/linear, subject/linear"], lines)
    assert got == {"attribute_probes": {"curves": ("final/linear", "subject/linear")}}
    assert parse_overrides(["attribute_probes.curves=final/mlp"], lines)["attribute_probes"]["curves"] == ("final/mlp",)
    assert parse("knobs.name=a,b")["knobs"]["name"] == "a,b"  # a str field keeps its commas


def test_lines_command_shows_a_profiles_values(capsys):
    from forensics.cli import main

    assert main(["lines", "attribute_probes", "--profile", "quick"]) == 0
    quick = capsys.readouterr().out
    assert main(["lines", "attribute_probes"]) == 0
    defaults = capsys.readouterr().out

    def row(text, field):
        return next(line for line in text.splitlines() if line.strip().startswith(field + " "))

    assert "('final/linear',)" in row(quick, "curves") and "profile quick" in quick
    assert "('final/linear', 'final/mlp', 'subject/linear')" in row(defaults, "curves") and "defaults" in defaults
    assert row(quick, "n_boot").split()[2] == "200" and row(defaults, "n_boot").split()[2] == "1000"
