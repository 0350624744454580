"""What a registration carries besides the run function: the stamped name and question, the
gate role, and the line's own profile overrides."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from forensics.core.config import line_config, profile_problems
from forensics.core.evidence import Evidence
from forensics.core.profiles import PROFILES, Profile
from forensics.core.registry import LINES, LineRegistrationError, discover_lines, gate_of, register


@dataclass
class _Config:
    #: a knob
    knob: int = 1
    #: resamples
    n_perm: int = 7


@pytest.fixture
def registered():
    """Register toy lines for one test and remove them afterwards."""
    names: list[str] = []

    def add(name: str, **kwargs):
        def run(ctx, config=None):
            return Evidence(status="descriptive", reason=f"ran {name}")

        names.append(name)
        return register(name, question=f"What does {name} say?", needs=("original",), config=_Config, **kwargs)(run)

    yield add
    for name in names:
        LINES.pop(name, None)


def test_name_and_question_are_stamped_from_the_registration(registered):
    run = registered("toy_stamped")
    evidence = run(None)
    assert (evidence.line, evidence.question, evidence.reason) == (
        "toy_stamped",
        "What does toy_stamped say?",
        "ran toy_stamped",
    )
    assert run.__module__ == __name__  # the wrapper keeps the line's own module (layering tests, cache keys)
    refused = Evidence.not_run("inputs too small")
    assert (refused.status, refused.reason, refused.line) == ("not_run", "inputs too small", "")
    with pytest.raises(TypeError):
        Evidence.not_run("a", "b")


def test_the_gate_is_a_role_held_once(registered):
    lines, _ = discover_lines()
    assert gate_of(lines) == "behaviour"
    with pytest.raises(LineRegistrationError, match="held by 'behaviour'"):
        registered("toy_second_gate", role="gate")
    with pytest.raises(LineRegistrationError, match="unknown role"):
        registered("toy_bad_role", role="referee")


def test_a_lines_profile_overrides_travel_with_its_registration(registered):
    registered("toy_profiled", profiles={"quick": {"knob": 5}, "standard": {"gone": 1}})
    spec = LINES["toy_profiled"]
    quick = line_config(spec, PROFILES["quick"], seed=0)
    assert (quick.knob, quick.n_perm) == (5, PROFILES["quick"].n_perm)
    assert line_config(spec, PROFILES["standard"], seed=0).knob == 1  # an unknown field is skipped ...
    assert "standard: toy_profiled.gone" in profile_problems(LINES, PROFILES)  # ... and reported
    # a custom profile's per-line overrides apply after the line's own
    custom = Profile("quick", "custom", n_boot=None, n_perm=None, lines={"toy_profiled": {"knob": 9}})
    assert line_config(spec, custom, seed=0).knob == 9
