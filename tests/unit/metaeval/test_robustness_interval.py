"""The verdict robustness's bootstrap interval (forensics/metaeval/scoring.py): deleted models,
not copies, are resampled, and models of pooled benches stay apart."""

from __future__ import annotations

import pytest

from forensics.metaeval.scoring import meta_evaluation, robustness_interval, uds_stability


def _copies(bench: str | None, seed: int, after_q4: float, after_relearn: float) -> list[dict]:
    """A deleted model's two copies; its own verdict score is -1 (DELETED, high)."""
    base = {"seed": seed, "model": "retrain", "before": {"verdict": -1.0}}
    if bench is not None:
        base["bench"] = bench
    return [
        dict(base, perturbation="q4", scores={"verdict": after_q4}),
        dict(base, perturbation="relearn", scores={"verdict": after_relearn}),
    ]


def test_the_interval_holds_the_point_robustness_and_is_reproducible():
    # eight models: two lose a confidence step (high -> medium) under 4-bit, one under relearning
    perturbed = [c for s in range(8) for c in _copies(None, s, -2 / 3 if s < 2 else -1.0, -2 / 3 if s == 7 else -1.0)]
    row = meta_evaluation([], perturbed)["verdict"]
    low, high = row["robustness_ci"]
    assert low < row["robustness"] < high <= 1.0
    assert robustness_interval(perturbed) == [low, high]  # seeded: the same rows, the same interval
    # an unchanged copy everywhere: no spread to draw
    steady = [c for s in range(8) for c in _copies(None, s, -1.0, -1.0)]
    assert robustness_interval(steady) == [1.0, 1.0]


def test_a_models_two_copies_are_drawn_together():
    # model 0 loses a confidence step under 4-bit only, model 1 under relearning only
    moved = uds_stability(-1.0, -2 / 3)
    perturbed = _copies(None, 0, -2 / 3, -1.0) + _copies(None, 1, -1.0, -2 / 3)
    low, high = robustness_interval(perturbed)
    # drawn together, a draw holds both copies of each model it takes: (Q, R) is (moved, 1),
    # (1, moved) or both halfway; copies drawn apart could pair Q = R = moved, below these
    assert low == pytest.approx(2 * moved / (1 + moved))
    assert high == pytest.approx((1 + moved) / 2)


def test_pooled_benches_keep_their_models_apart():
    one = _copies("bench-a", 3, -2 / 3, -1.0)
    other = _copies("bench-b", 3, -1.0, -1.0)
    assert robustness_interval(one + other) is not None  # two deleted models
    unnamed = [{k: v for k, v in c.items() if k != "bench"} for c in one + other]
    assert robustness_interval(unnamed) is None  # seed 3 retrain twice: one model, nothing to resample
