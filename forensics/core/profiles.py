"""Audit profiles: how hard each evidence line works.

A profile sets ``n_boot`` / ``n_perm`` (:data:`forensics.core.config.RESAMPLING_FIELDS`) on
every line config that has those fields, and per-line overrides (``"line": {"field":
value}``, nested fields as ``"sae.training_tokens"``). ``forensics audit --set`` applies
after the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    """How hard each line works. ``n_boot`` / ``n_perm`` go to every line config that has
    those fields; ``lines`` holds per-line field overrides (unknown fields are ignored, so
    a profile can name a line before it exists)."""

    name: str
    description: str
    n_boot: int | None
    n_perm: int | None
    lines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "smoke test: few resamples, one linear probe curve, a small SAE, one relearning seed",
        n_boot=200,
        n_perm=50,
        lines={
            "attribute_probes": {"curves": ("final/linear",), "n_perm": 10, "probe.linear_c_grid": (0.1,)},
            "behaviour": {"n_boot": 500, "n_perm": 500},
            "trace_detector": {"n_perm": 500},
            "sae_features": {"sae.training_tokens": 100_000},
            "steering_restoration": {"alphas": (1.0, 4.0), "features.sae.training_tokens": 100_000, "n_retain": 120},
            "relearning_attack": {"seeds": (0,), "eval_steps": (0, 10, 30)},
            "quantization_attack": {"bits": (4,)},
        },
    ),
    "standard": Profile(
        "standard",
        "the default: every line's own measurement sizes, fewer resamples (1000 bootstrap draws), "
        "three steering scales, two relearning seeds",
        n_boot=1000,
        n_perm=200,
        lines={
            "attribute_probes": {"n_perm": 100},
            "behaviour": {"n_boot": 2000, "n_perm": 2000},
            "logit_lens": {"n_perm": 1000},
            "tuned_lens": {"n_perm": 1000},
            "patching": {"n_perm": 1000},
            "trace_detector": {"n_perm": 2000},
            "steering_restoration": {"alphas": (1.0, 2.0, 4.0)},
            "relearning_attack": {"seeds": (0, 1)},
            "cka": {"n_boot": 200},  # descriptive; each draw recomputes every depth's CKA (12 s at 1000)
        },
    ),
    "thorough": Profile(
        "thorough",
        "every line's own defaults (linear and MLP probes, strength chosen by cross-validation), "
        "2000 resamples: hours on a CPU for the small zoo",
        n_boot=2000,
        n_perm=None,
        lines={"attribute_probes": {"n_perm": 200}},
    ),
}
