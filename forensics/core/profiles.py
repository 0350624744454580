"""Audit profiles: how hard each evidence line works.

A profile sets ``n_boot`` / ``n_perm`` (:data:`forensics.core.config.RESAMPLING_FIELDS`) on
every line config that has those fields. What else a profile changes in one line is declared
with that line, in its registration (``register(..., profiles={"quick": {"field": value}})``,
nested fields as ``"sae.training_tokens"``), so a line's whole definition sits in one file.
``Profile.lines`` adds overrides from outside the lines (a custom profile); ``forensics audit
--set`` applies after both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    """How hard each line works. ``n_boot`` / ``n_perm`` go to every line config that has
    those fields (``n_perm`` is 1000 in every profile: a permutation p-value is at least
    ``1 / (n_perm + 1)``, and the verdict's multiplicity control needs one-sided p-values near
    0.005 to count a vote; tests/unit/core/test_verdict.py checks every voting line can reach it); ``lines`` holds per-line field overrides (unknown fields are ignored, so
    a profile can name a line before it exists)."""

    name: str
    description: str
    n_boot: int | None
    n_perm: int | None
    lines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "smoke test: few resamples, one linear probe curve, a small SAE, two relearning splits (a deletion bound needs two)",
        n_boot=200,
        n_perm=1000,
    ),
    "standard": Profile(
        "standard",
        "the default: every line's own measurement sizes, fewer resamples (1000 bootstrap draws), "
        "three steering scales, two relearning seeds",
        n_boot=1000,
        n_perm=1000,
    ),
    "thorough": Profile(
        "thorough",
        "every line's own defaults (linear and MLP probes, strength chosen by cross-validation), "
        "2000 resamples: hours on a CPU for the small zoo",
        n_boot=2000,
        n_perm=None,
    ),
}
