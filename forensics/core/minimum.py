"""The sample a vote needs: a voting line casts its vote only when the forget and holdout
sets are large enough for its subject-level statistics.

A ``suppressed`` vote whose p-value is a permutation test over whole subjects
(:data:`SUBJECT_PERMUTATION`) needs no minimum subject count: the test is valid at any count,
and the audit counts the vote only when that p-value survives the multiplicity control. The
behaviour gate's ``not_forgotten`` vote needs none either when its subject-permutation p is
below :data:`GATE_ALPHA` (:func:`subjects_needed`). A ``deleted`` vote needs the subject count
at which the coverage of its bound's CI was measured (:data:`BOUND_MIN_SUBJECTS`: 7 for a subject
bootstrap over the whole sets, TOFU's 7 holdout authors included; 4 for the relearning attack's
widened bound), or ``min_subjects`` when its line names no measured kind.

Every voting line's config inherits :class:`VoteMinimum`. After a line ran, the runner
checks the forget and holdout sets against it (:func:`shortfall`); when either is too small
the line keeps its numbers but its vote is withheld, and its reason says why
("no vote: 1 forget subject, at least 8 needed"). A subject bootstrap over one or two
subjects has (nearly) zero width and cannot support a claim about F.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forensics.inputs.data import Fact

#: The sets whose comparison makes a vote (F against its control H).
CHECKED_SETS = ("forget", "holdout")

#: ``Evidence.details`` key naming the test behind a line's ``p_value``, and the value a line
#: sets when that p-value permutes whole subjects between F and H
#: (:func:`forensics.compute.stats.cluster_permutation_p`). Such a test is valid at any number of
#: subjects (with few subjects it simply cannot reach a small p), so a ``suppressed`` vote resting
#: on it is not withheld for a subject count below ``min_subjects``: the audit's multiplicity
#: control (:func:`forensics.core.verdict.multiplicity_control`) decides whether it counts.
P_TEST = "p_test"
SUBJECT_PERMUTATION = "subject_permutation"

#: ``Evidence.details`` key of a two-sided subject-permutation p-value that a line reports beside
#: a ``p_value`` of another kind (the behaviour gate's ``p_value`` permutes facts). A
#: ``not_forgotten`` vote stands below ``min_subjects`` when this p is below :data:`GATE_ALPHA`.
P_SUBJECTS = "p_subjects"
#: ``Evidence.details`` key naming the CI behind a ``deleted`` vote's bound, and its values. A
#: ``deleted`` vote needs :data:`BOUND_MIN_SUBJECTS` of its kind in F and in H instead of
#: ``min_subjects`` (:func:`subjects_needed`).
BOUND_TEST = "bound_test"
#: A subject bootstrap over every subject of F and of H, the CI at level 0.95 or adjusted wider
#: (REMIND, the attribute probes, membership inference).
SUBJECT_BOOTSTRAP = "subject_bootstrap"
#: The relearning attack's bootstrap over half of each set's subjects, its upper end widened for
#: few subjects (:func:`forensics.compute.stats.expanded_upper`).
EXPANDED_HALVES = "expanded_halves_bootstrap"
#: The fewest subjects per set from which each bound's upper end misses the true difference in at
#: most 5% of samples in every simulated scenario (a one-sided 95% upper bound, the claim a
#: DELETED verdict states), measured by benchmarks/bootstrap_coverage.py (2000 samples a cell;
#: docs/decisions.md, "deletion bounds at few subjects"): the plain subject bootstrap misses
#: 4.7-5.1% at 7 subjects and 5.2-6.2% at 6; the widened halves bound at most 4.7% from 4.
BOUND_MIN_SUBJECTS = {SUBJECT_BOOTSTRAP: 7, EXPANDED_HALVES: 4}

#: The level a ``not_forgotten`` vote's subject-permutation p must be below to stand on fewer
#: than ``min_subjects`` subjects (two-sided; the gate is not part of the multiplicity family,
#: it is the one test of its kind in an audit).
GATE_ALPHA = 0.05


@dataclass
class VoteMinimum:
    """Config fields of every voting line: the smallest sample it votes on."""

    #: A vote needs at least this many distinct subjects in F and in H (a fact without a subject
    #: counts as its own subject); a ``deleted`` vote on a bound of measured coverage needs
    #: ``BOUND_MIN_SUBJECTS`` instead, a ``suppressed`` vote on a subject permutation none.
    min_subjects: int = 8
    #: A vote needs at least this many facts in F and in H.
    min_facts: int = 16


def subject_groups(facts: Sequence[Fact], set_name: str = "fact") -> np.ndarray:
    """The group of each fact for subject-level statistics (cluster bootstraps, permutations,
    folds), a string array ``[len(facts)]``: the fact's subject, or ``"<set_name>-<i>"`` for a
    fact without one (its own group). Give F and H different ``set_name`` s (``"forget"``,
    ``"holdout"``) when their groups are pooled, so that subject-less facts never merge."""
    return np.array([f.subject or f"{set_name}-{i}" for i, f in enumerate(facts)])


def subjects_needed(vote: str | None, p_value: float | None, details: dict) -> bool | int:
    """Whether a vote needs ``min_subjects`` subjects in F and H (True), only ``min_facts`` facts
    (False), or another subject count (an int: a ``deleted`` vote whose bound's CI names its kind
    in ``details[BOUND_TEST]``, :data:`BOUND_MIN_SUBJECTS`).

    Not needed for a ``suppressed`` vote whose ``p_value`` is a subject permutation
    (``details[P_TEST] == SUBJECT_PERMUTATION``: the multiplicity control decides whether it
    counts), nor for a ``not_forgotten`` vote whose subject-permutation p (``details[P_SUBJECTS]``,
    or ``p_value`` when ``P_TEST`` says it is one) is below :data:`GATE_ALPHA`. A permutation of
    whole subjects is a valid test at any subject count; with few subjects it cannot reach a small
    p. A ``deleted`` vote needs the count at which its bound's coverage was measured
    (:data:`BOUND_MIN_SUBJECTS`), or ``min_subjects`` when its bound names no measured kind."""
    exact = details.get(P_TEST) == SUBJECT_PERMUTATION
    if vote == "suppressed":
        return not exact
    if vote == "not_forgotten":
        p = details.get(P_SUBJECTS, p_value if exact else None)
        return not (isinstance(p, (int, float)) and p < GATE_ALPHA)
    if vote == "deleted" and details.get(BOUND_TEST) in BOUND_MIN_SUBJECTS:
        return BOUND_MIN_SUBJECTS[details[BOUND_TEST]]
    return True


def n_subjects(facts: Sequence[Fact]) -> int:
    """Distinct subjects in ``facts``; a fact without a subject counts as its own."""
    return len({f.subject if f.subject else f"\x00{i}" for i, f in enumerate(facts)})


def shortfall(sets: dict[str, Sequence[Fact] | None], minimum: VoteMinimum, subjects: bool | int = True) -> str | None:
    """Why the sets are too small to vote on (e.g. ``"1 forget subject, at least 8 needed"``),
    or None. ``sets``: set name -> facts (None or absent: not checked); ``subjects``: True checks
    ``minimum.min_subjects``, False the fact count only (a vote resting on a subject-permutation
    p-value, see :data:`SUBJECT_PERMUTATION`), an int that many subjects (:func:`subjects_needed`)."""
    needed = minimum.min_subjects if subjects is True else int(subjects)
    subjects_checked = needed > 0
    problems = []
    for name in CHECKED_SETS:
        facts = sets.get(name)
        if facts is None:
            continue
        n_subj, n = n_subjects(facts), len(facts)
        if subjects_checked and n_subj < needed:
            problems.append(f"{n_subj} {name} subject{'s' if n_subj != 1 else ''}, at least {needed} needed")
        if n < minimum.min_facts:
            problems.append(f"{n} {name} fact{'s' if n != 1 else ''}, at least {minimum.min_facts} needed")
    return "; ".join(problems) or None
