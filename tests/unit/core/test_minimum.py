"""The sample a vote needs (forensics/core/minimum.py, applied by forensics/core/runner.py): a
``suppressed`` vote on a subject-permutation p-value stands below the minimum subject count (the
multiplicity control then decides whether it counts), and so does a ``not_forgotten`` vote whose
subject-permutation p is below 0.05; other votes are withheld."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from forensics.core.evidence import Evidence
from forensics.core.minimum import (
    BOUND_TEST,
    EXPANDED_HALVES,
    P_SUBJECTS,
    P_TEST,
    SUBJECT_BOOTSTRAP,
    SUBJECT_PERMUTATION,
    VoteMinimum,
    shortfall,
)
from forensics.core.registry import LineSpec
from forensics.core.runner import run_line
from forensics.inputs.data import Fact


@dataclass
class FakeConfig(VoteMinimum):
    pass


def facts(prefix: str, n_subjects: int, per_subject: int = 4) -> list[Fact]:
    return [Fact(f"Q{i}-{j}", " A", subject=f"{prefix}{i}") for i in range(n_subjects) for j in range(per_subject)]


def spec(evidence: Evidence) -> LineSpec:
    def run(ctx, config):
        evidence.line, evidence.question = "fake", "q"
        return evidence

    votes = ("suppressed", "deleted", "not_forgotten")
    return LineSpec("fake", "q", ("forget", "holdout"), run, FakeConfig, votes=votes)


# TOFU's shape: 8 forget authors, 7 holdout authors, many questions each
TOFU = SimpleNamespace(forget=facts("f", 8, 20), holdout=facts("h", 7, 20))


def test_shortfall_can_skip_the_subject_count():
    assert shortfall({"holdout": TOFU.holdout}, VoteMinimum()) == "7 holdout subjects, at least 8 needed"
    assert shortfall({"holdout": TOFU.holdout}, VoteMinimum(), subjects=False) is None
    few = facts("h", 3, 2)
    assert shortfall({"holdout": few}, VoteMinimum(), subjects=False) == "6 holdout facts, at least 16 needed"


@pytest.mark.parametrize(
    ("vote", "details", "kept"),
    [
        ("suppressed", {P_TEST: SUBJECT_PERMUTATION}, True),  # valid at any subject count
        ("suppressed", {}, False),  # a bootstrap-only vote still needs the subjects
        ("deleted", {P_TEST: SUBJECT_PERMUTATION}, False),  # a deletion claim still needs them
        ("not_forgotten", {P_SUBJECTS: 0.01}, True),  # the gate, on a subject permutation below 0.05
        ("not_forgotten", {P_SUBJECTS: 0.2}, False),  # ... above it
        ("not_forgotten", {}, False),  # ... or without one (its p_value permutes facts)
        ("not_forgotten", {P_TEST: SUBJECT_PERMUTATION}, True),  # p_value itself permutes subjects
        ("deleted", {BOUND_TEST: SUBJECT_BOOTSTRAP}, True),  # a whole-set subject bootstrap: 7 suffice
        ("deleted", {BOUND_TEST: EXPANDED_HALVES}, True),  # the widened halves bound: 4 suffice
        ("deleted", {BOUND_TEST: "something else"}, False),  # a bound of no measured kind: 8
    ],
)
def test_seven_holdout_subjects(vote, details, kept):
    evidence = Evidence(status="ok", effect=0.5, control=0.1, ci=(0.2, 0.6), p_value=0.001, vote=vote, details=details)
    out = run_line(spec(evidence), TOFU, FakeConfig())
    assert (out.vote == vote) is kept
    if not kept:
        assert out.reason.startswith("no vote: 7 holdout subjects, at least 8 needed")
        assert out.details["vote_withheld"]["vote"] == vote


def test_too_few_facts_withhold_even_a_permutation_vote():
    small = SimpleNamespace(forget=facts("f", 8, 1), holdout=facts("h", 7, 1))
    evidence = Evidence(status="ok", p_value=0.001, vote="suppressed", details={P_TEST: SUBJECT_PERMUTATION})
    out = run_line(spec(evidence), small, FakeConfig())
    assert out.vote is None and "8 forget facts, at least 16 needed" in out.reason


@pytest.mark.parametrize(("kind", "needed"), [(SUBJECT_BOOTSTRAP, 7), (EXPANDED_HALVES, 4)])
def test_a_deletion_bound_needs_the_subjects_its_coverage_was_measured_at(kind, needed):
    below = SimpleNamespace(forget=facts("f", 8, 20), holdout=facts("h", needed - 1, 20))
    evidence = Evidence(status="ok", ci=(-0.1, 0.05), p_value=0.5, vote="deleted", details={BOUND_TEST: kind})
    out = run_line(spec(evidence), below, FakeConfig())
    assert out.vote is None
    assert out.reason.startswith(f"no vote: {needed - 1} holdout subjects, at least {needed} needed")
