"""The sample a vote needs: a voting line casts its vote only when the forget and holdout
sets are large enough for its subject-level statistics.

A ``suppressed`` vote whose p-value is a permutation test over whole subjects
(:data:`SUBJECT_PERMUTATION`) needs no minimum subject count: the test is valid at any count,
and the audit counts the vote only when that p-value survives the multiplicity control.

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


@dataclass
class VoteMinimum:
    """Config fields of every voting line: the smallest sample it votes on."""

    #: A vote needs at least this many distinct subjects in F and in H (a fact without a subject
    #: counts as its own subject).
    min_subjects: int = 8
    #: A vote needs at least this many facts in F and in H.
    min_facts: int = 16


def subject_groups(facts: Sequence[Fact], set_name: str = "fact") -> np.ndarray:
    """The group of each fact for subject-level statistics (cluster bootstraps, permutations,
    folds), a string array ``[len(facts)]``: the fact's subject, or ``"<set_name>-<i>"`` for a
    fact without one (its own group). Give F and H different ``set_name`` s (``"forget"``,
    ``"holdout"``) when their groups are pooled, so that subject-less facts never merge."""
    return np.array([f.subject or f"{set_name}-{i}" for i, f in enumerate(facts)])


def n_subjects(facts: Sequence[Fact]) -> int:
    """Distinct subjects in ``facts``; a fact without a subject counts as its own."""
    return len({f.subject if f.subject else f"\x00{i}" for i, f in enumerate(facts)})


def shortfall(sets: dict[str, Sequence[Fact] | None], minimum: VoteMinimum, subjects: bool = True) -> str | None:
    """Why the sets are too small to vote on (e.g. ``"1 forget subject, at least 8 needed"``),
    or None. ``sets``: set name -> facts (None or absent: not checked); ``subjects``: False
    checks the fact count only (a vote resting on a subject-permutation p-value, see
    :data:`SUBJECT_PERMUTATION`)."""
    subjects_checked = subjects
    problems = []
    for name in CHECKED_SETS:
        facts = sets.get(name)
        if facts is None:
            continue
        n_subj, n = n_subjects(facts), len(facts)
        if subjects_checked and n_subj < minimum.min_subjects:
            problems.append(
                f"{n_subj} {name} subject{'s' if n_subj != 1 else ''}, at least {minimum.min_subjects} needed"
            )
        if n < minimum.min_facts:
            problems.append(f"{n} {name} fact{'s' if n != 1 else ''}, at least {minimum.min_facts} needed")
    return "; ".join(problems) or None
