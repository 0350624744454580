"""The subject-permutation p-value (forensics/compute/stats.py) at the subject counts auditors
bring: with few subjects it cannot reach a small p (so a vote on it cannot survive the audit's
multiplicity control); with TOFU's 8 forget and 7 holdout authors and a large effect it can."""

from __future__ import annotations

import numpy as np
import pytest

from forensics.compute.stats import cluster_permutation_p


def scores(n_subjects: int, per_subject: int, mean: float, rng) -> tuple[np.ndarray, np.ndarray]:
    groups = np.repeat(np.arange(n_subjects), per_subject)
    subject_effect = rng.normal(0, 0.05, n_subjects)[groups]
    return mean + subject_effect + rng.normal(0, 0.1, len(groups)), groups


def test_few_subjects_cannot_reach_a_small_p():
    rng = np.random.default_rng(0)
    f, gf = scores(3, 20, 1.0, rng)
    h, gh = scores(3, 20, 0.0, rng)
    # 3 vs 3 subjects: 20 splits, the observed one and its mirror are the most extreme: p >= 2/20
    assert cluster_permutation_p(f, gf, h, gh + 100, n_perm=2000) >= 0.08


def test_tofu_shaped_subject_counts_can_vote_on_a_large_effect():
    rng = np.random.default_rng(1)
    f, gf = scores(8, 20, 0.3, rng)
    h, gh = scores(7, 20, 0.0, rng)
    p = cluster_permutation_p(f, gf, h, gh + 100, n_perm=2000)
    assert p / 2 < 0.05 / 10  # one-sided, below Holm's first threshold over ten lines


def test_no_effect_gives_uniform_p_values():
    rng = np.random.default_rng(2)
    ps = []
    for _ in range(200):
        f, gf = scores(8, 5, 0.0, rng)
        h, gh = scores(7, 5, 0.0, rng)
        ps.append(cluster_permutation_p(f, gf, h, gh + 100, n_perm=200, seed=int(rng.integers(1 << 30))))
    ps = np.array(ps)
    # valid: P(p <= u) <= u (binomial slack at 200 draws)
    for u in (0.05, 0.1, 0.25):
        assert (ps <= u).mean() <= u + 0.05


def test_a_subject_name_in_both_sets_is_two_subjects():
    """A holdout set may reuse a forget subject's name: the p is the one with distinct names, not
    an undefined difference that every permutation fails to reach (p at its floor)."""
    import warnings

    rng = np.random.default_rng(3)
    f, gf = scores(8, 20, 0.0, rng)
    h, gh = scores(7, 20, 0.0, rng)
    distinct = cluster_permutation_p(f, gf, h, gh + 100, n_perm=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0
        shared = cluster_permutation_p(f, gf.astype(str), h, gh.astype(str), n_perm=500)
    assert shared == distinct and shared > 0.01


def test_the_expanded_upper_end_widens_by_the_small_sample_factor():
    from scipy.stats import norm, t

    from forensics.compute.stats import expanded_upper

    factor = np.sqrt(4 / 3) * t.ppf(0.975, 3) / norm.ppf(0.975)
    assert expanded_upper(0.1, 0.3, 4) == pytest.approx(0.1 + 0.2 * factor)
    assert 1.0 < (expanded_upper(0.0, 1.0, 200) - 0.0) < 1.02  # many clusters: the plain end
    assert expanded_upper(0.0, 1.0, 1) == float("inf")


def test_the_expanded_lower_end_mirrors_the_upper_one():
    from forensics.compute.stats import expanded_lower, expanded_upper

    assert expanded_lower(0.1, -0.1, 4) == pytest.approx(0.1 - (expanded_upper(0.1, 0.3, 4) - 0.1))
    assert expanded_lower(0.1, -0.1, 4) < -0.1  # wider than the plain end
    assert expanded_lower(0.0, -1.0, 1) == float("-inf")


def test_the_relearning_bound_holds_at_four_subjects_a_half_where_the_plain_one_does_not():
    """The deletion bound's coverage at the subject counts of a TOFU-shaped relearning attack
    (halves of 4 subjects): under no effect, the plain 95% CI's upper end falls below the true
    difference more often than a one-sided 95% bound may (5%); the widened 90% CI's end does not
    (the full measurement: benchmarks/bootstrap_coverage.py)."""
    from forensics.compute.stats import expanded_upper, seed_subject_bootstrap

    rng = np.random.default_rng(5)
    plain = widened = 0
    reps = 400
    for r in range(reps):
        sides = []
        for _ in range(2):
            mu = np.clip(0.2 + rng.normal(0, 0.15, 4), 0.01, 0.99)
            k = rng.integers(5, 16, 4)
            values = np.concatenate([(rng.random(m) < u).astype(float) for u, m in zip(mu, k)])
            sides.append((values, np.repeat(np.arange(4), k).astype(str)))
        (a, ga), (b, gb) = sides
        plain += seed_subject_bootstrap([(a, ga, b, gb)], 300, r)[1] < 0
        hi90 = seed_subject_bootstrap([(a, ga, b, gb)], 300, r, 0.90)[1]
        widened += expanded_upper(float(a.mean() - b.mean()), hi90, 4, 0.90) < 0
    # as a one-sided 95% bound (what a DELETED verdict states) the plain 95% CI's end fails
    assert plain / reps > 0.05  # measured 0.076-0.082 at 2000 samples
    assert widened / reps < 0.05  # measured 0.032-0.037


def test_max_t_with_one_cell_is_the_subject_permutation_p():
    from forensics.compute.stats import cluster_permutation_max_p

    rng = np.random.default_rng(4)
    f, gf = scores(8, 10, 0.05, rng)
    h, gh = scores(7, 10, 0.0, rng)
    (p,) = cluster_permutation_max_p(f[None], gf, h[None], gh + 100, n_perm=500, seed=3)
    assert p == cluster_permutation_p(f, gf, h, gh + 100, n_perm=500, seed=3)


def cells(n_cells: int, n_subjects: int, per_subject: int, rng, effect_cell: int | None = None, effect: float = 0.0):
    """``[n_cells, n]`` scores of one set whose cells share each subject's effect (as neighbouring
    depths of one model do), one cell optionally shifted by ``effect``."""
    groups = np.repeat(np.arange(n_subjects), per_subject)
    shared = rng.normal(0, 0.1, len(groups))
    out = 0.7 * shared + 0.3 * rng.normal(0, 0.1, (n_cells, len(groups))) + rng.normal(0, 0.05, n_subjects)[groups]
    if effect_cell is not None:
        out[effect_cell] += effect
    return out, groups


def test_max_t_controls_the_error_over_many_cells_and_still_finds_one_large_effect():
    """90 cells (30 depths x 3 probes) with TOFU's 8 forget and 7 holdout subjects: with no effect
    anywhere the smallest adjusted p is at most 0.05 in about 5% of families (Bonferroni's
    guarantee, without its price); an effect in one cell still reaches Holm's first threshold
    over ten lines, which a Bonferroni-adjusted 100-permutation p (the floor 90 / 101) never can."""
    from forensics.compute.stats import cluster_permutation_max_p

    rng = np.random.default_rng(5)
    smallest = []
    for _ in range(150):
        f, gf = cells(90, 8, 5, rng)
        h, gh = cells(90, 7, 5, rng)
        smallest.append(
            cluster_permutation_max_p(f, gf, h, gh + 100, n_perm=200, seed=int(rng.integers(1 << 30))).min()
        )
    assert (np.array(smallest) <= 0.05).mean() <= 0.05 + 0.05  # binomial slack at 150 families
    f, gf = cells(90, 8, 10, rng, effect_cell=40, effect=0.3)
    h, gh = cells(90, 7, 10, rng)
    p = cluster_permutation_max_p(f, gf, h, gh + 100, n_perm=1000)
    assert p[40] / 2 < 0.05 / 10 and p[40] == p.min()
    assert np.median(np.delete(p, 40)) > 0.2


@pytest.mark.parametrize("n", [12, 30, 60])
def test_the_binomial_lower_bound_exceeds_the_true_rate_with_probability_at_most_5_percent(n):
    from scipy.stats import binom

    from forensics.compute.stats import binomial_lower

    bounds = np.array([binomial_lower(k, n) for k in range(n + 1)])
    worst = 0.0
    for p in np.linspace(0.01, 0.99, 197):  # exact: sum the binomial pmf where the bound misses
        miss = float(binom.pmf(np.arange(n + 1), n, p)[bounds > p].sum())
        assert miss <= 0.05 + 1e-9
        worst = max(worst, miss)
    assert worst > 0.04  # exact, not vacuous: somewhere it misses nearly 5% of the time


def test_the_binomial_lower_bound_with_every_trial_right_is_the_closed_form():
    from forensics.compute.stats import binomial_lower

    assert binomial_lower(59, 59) == pytest.approx(0.05 ** (1 / 59))
    assert binomial_lower(59, 59) > 0.95 > binomial_lower(58, 58)
    assert binomial_lower(0, 10) == 0.0
    with pytest.raises(ValueError):
        binomial_lower(3, 2)
