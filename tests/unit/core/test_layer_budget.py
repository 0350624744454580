"""Layer budgets (forensics/compute/capture/spec.py ``spread``; docs/methods.md "Layer budgets"):
the lines that run once per block or depth run on an evenly spaced share of them on a deep model,
and on every one of them on the zoo's models."""

from __future__ import annotations

import pytest

from forensics.compute.capture import spread
from forensics.core.config import line_config
from forensics.core.profiles import PROFILES
from forensics.core.registry import discover_lines


def test_spread_keeps_the_ends_and_spaces_the_rest_evenly():
    assert spread(30, 6) == [0, 6, 12, 17, 23, 29]
    assert spread(31, 12)[0] == 0 and spread(31, 12)[-1] == 30 and len(spread(31, 12)) == 12
    gaps = {b - a for a, b in zip(spread(31, 12), spread(31, 12)[1:])}
    assert max(gaps) - min(gaps) <= 1


@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_a_budget_at_or_above_the_count_keeps_every_index(n):
    assert spread(n, 6) == list(range(n))
    assert spread(n, None) == list(range(n))


def test_a_budget_below_two_keeps_the_ends():
    assert spread(10, 1) == [0, 9]


@pytest.mark.parametrize("profile", ["quick", "standard"])
@pytest.mark.parametrize(("line", "field"), [("patching", "max_layers"), ("steering_restoration", "max_layers")])
def test_every_zoo_model_is_under_the_profiles_layer_budgets(profile, line, field):
    """The zoo's models have 2 (tiny) or 4 (small) blocks and 5 depths at most: a budget that
    bound on them would change the zoo audits the thresholds were chosen on."""
    lines, _ = discover_lines()
    budget = getattr(line_config(lines[line], PROFILES[profile], 0), field)
    assert budget is not None and budget >= 4
    depths = line_config(lines["tuned_lens"], PROFILES[profile], 0).max_depths
    assert depths is not None and depths >= 5


def test_steering_tries_the_budgeted_blocks_and_ablates_at_every_block():
    from forensics.lines.steering_restoration import SteeringConfig, candidate_blocks, grid

    config = SteeringConfig(alphas=(1.0,), max_layers=3)
    assert candidate_blocks(config, 30) == [0, 14, 29]
    cells = grid(config, 30, sae_layer=None)
    assert sorted(str(c.layer) for c in cells if c.kind == "reverse") == ["0", "14", "29"]
    assert [c.layer for c in cells if c.kind == "ablate"] == [0, 14, 29, "all"]
    assert candidate_blocks(SteeringConfig(layers=(2, 5), max_layers=1), 30) == [2, 5]


def test_the_relearning_rate_follows_the_width_and_keeps_the_zoos():
    from forensics.lines.relearning_attack import RelearningConfig, model_lr, resolved

    assert model_lr(64) == model_lr(128) == 1e-3
    assert model_lr(576) == pytest.approx(4.94e-5, rel=1e-2)  # SmolLM2-135M
    assert 5e-7 < model_lr(4096) < 2e-6  # 7B: Deeb & Roger relearn at ~1e-6..1e-5
    assert resolved(RelearningConfig(), 576).lr == model_lr(576)
    assert resolved(RelearningConfig(lr=3e-4), 576).lr == 3e-4
