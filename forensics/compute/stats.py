"""Small, shared statistics: bootstrap intervals and permutation p-values.

All functions are seeded and deterministic; every evidence line uses these so that the
report's intervals mean the same thing everywhere (percentile bootstrap, 95%).
"""

from __future__ import annotations

import math

import numpy as np


def bootstrap_mean_diff_ci(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI ``(low, high)`` of mean(a) - mean(b) for 1-D samples ``a`` ``[n_a]`` and
    ``b`` ``[n_b]``, resampling a and b independently (``n_boot`` resamples, seeded)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = rng.integers(0, len(b), size=(n_boot, len(b)))
    diffs = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def bootstrap_mean_ci(a: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI ``(low, high)`` of mean(a) for a 1-D sample ``a`` ``[n]``."""
    a = np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def permutation_p_value(a: np.ndarray, b: np.ndarray, n_perm: int = 2000, seed: int = 0) -> float:
    """Two-sided permutation p-value for mean(a) == mean(b), 1-D samples, with the +1
    correction (never 0: at least ``1 / (n_perm + 1)``)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        perm = rng.permutation(pooled)
        hits += abs(perm[: len(a)].mean() - perm[len(a) :].mean()) >= observed - 1e-12
    return (hits + 1) / (n_perm + 1)


def _cluster_sums(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (``np.unique(groups)`` order, K of them): the sum of ``scores`` ``[n]`` or of
    each row of ``scores`` ``[rows, n]`` (then ``[rows, K]``), and the count ``[K]``."""
    _, index = np.unique(groups, return_inverse=True)
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        sums = np.bincount(index, weights=scores)
    else:
        sums = np.stack([np.bincount(index, weights=row) for row in scores])
    counts = np.bincount(index).astype(float)
    return sums, counts


def _pooled_clusters(groups_a: np.ndarray, groups_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two sets' cluster ids pooled ``[n_a + n_b]``, and which of the pooled clusters (in
    :func:`_cluster_sums`' order, ``np.unique``'s) belong to ``a`` ``[K]``. A cluster name found
    in both sets names two clusters, one a side (a holdout set may reuse a forget subject's
    name); otherwise every one of ``a``'s values would join a cluster of ``b``."""
    if np.intersect1d(groups_a, groups_b).size:
        groups_a = np.char.add("a:", np.asarray(groups_a, dtype=str))
        groups_b = np.char.add("b:", np.asarray(groups_b, dtype=str))
    groups = np.concatenate([groups_a, groups_b])
    return groups, np.isin(np.unique(groups), np.unique(groups_a))


def cluster_bootstrap_diff_ci(
    a: np.ndarray,
    groups_a: np.ndarray,
    b: np.ndarray,
    groups_b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of mean(a) - mean(b) resampling *clusters* (e.g. subjects) with replacement.

    ``a`` ``[n_a]`` with cluster ids ``groups_a`` ``[n_a]``, likewise ``b``; returns ``(low, high)``.
    Paraphrases of one subject's facts are not independent; resampling whole subjects
    keeps the interval honest. Each resample's mean is over the examples it contains.
    """
    sa, ca = _cluster_sums(a, groups_a)
    sb, cb = _cluster_sums(b, groups_b)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(sa), size=(n_boot, len(sa)))
    ib = rng.integers(0, len(sb), size=(n_boot, len(sb)))
    diffs = sa[ia].sum(1) / ca[ia].sum(1) - sb[ib].sum(1) / cb[ib].sum(1)
    alpha = (1 - level) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def cluster_permutation_p(
    a: np.ndarray,
    groups_a: np.ndarray,
    b: np.ndarray,
    groups_b: np.ndarray,
    n_perm: int = 2000,
    seed: int = 0,
) -> float:
    """Two-sided p for mean(a) == mean(b), permuting whole clusters (subjects) between the sets.

    A cluster name found in both ``groups_a`` and ``groups_b`` names two clusters, one a side
    (a holdout set may reuse a forget subject's name); otherwise every one of ``a`` 's values
    would join a cluster of ``b`` and the difference would be undefined."""
    groups, in_a = _pooled_clusters(groups_a, groups_b)
    sums, counts = _cluster_sums(np.concatenate([a, b]), groups)
    observed = sums[in_a].sum() / counts[in_a].sum() - sums[~in_a].sum() / counts[~in_a].sum()
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        mask = rng.permutation(in_a)
        diff = sums[mask].sum() / counts[mask].sum() - sums[~mask].sum() / counts[~mask].sum()
        hits += abs(diff) >= abs(observed) - 1e-12
    return (hits + 1) / (n_perm + 1)


def cluster_permutation_max_p(
    a: np.ndarray,
    groups_a: np.ndarray,
    b: np.ndarray,
    groups_b: np.ndarray,
    n_perm: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Two-sided p-values for mean(a[c]) == mean(b[c]) in every cell ``c`` at once, adjusted for
    testing all the cells: Westfall & Young's single-step max-T permutation procedure (Westfall
    & Young 1993, *Resampling-Based Multiple Testing*), permuting whole clusters between the sets.

    ``a`` ``[n_cells, n_a]`` holds each cell's scores of the same ``n_a`` examples (clusters
    ``groups_a`` ``[n_a]``), likewise ``b`` ``[n_cells, n_b]``. Each permutation reassigns the
    clusters to the two sides (sizes kept) in every cell together, and a cell's p is the share
    of permutations whose *largest* absolute difference over all cells reaches the cell's own
    (with the +1 correction, so never below ``1 / (n_perm + 1)``). The family-wise error over
    the cells is then at most the nominal level under any dependence between them, as
    Bonferroni's is, but the cells' dependence (neighbouring depths of one model read alike) is
    used rather than paid for. Returns ``[n_cells]`` p-values.
    A cluster name found in both ``groups_a`` and ``groups_b`` names two clusters."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    groups, in_a = _pooled_clusters(groups_a, groups_b)
    sums, counts = _cluster_sums(np.concatenate([a, b], 1), groups)  # [n_cells, K], [K]

    def differences(mask: np.ndarray) -> np.ndarray:  # mask [P, K] -> [P, n_cells]
        m = mask.astype(float)
        return (m @ sums.T) / (m @ counts)[:, None] - ((1 - m) @ sums.T) / ((1 - m) @ counts)[:, None]

    observed = np.abs(differences(in_a[None]))[0]
    rng = np.random.default_rng(seed)
    masks = np.array([rng.permutation(in_a) for _ in range(n_perm)])
    null_max = np.abs(differences(masks)).max(1) if n_perm else np.zeros(0)
    return (1 + (null_max[:, None] >= observed[None] - 1e-12).sum(0)) / (1 + n_perm)


def sign_flip_p(deviations: np.ndarray, n_perm: int = 2000, seed: int = 0) -> float:
    """Two-sided sign-flip test that the mean of per-cluster deviations ``[n_clusters]`` is 0
    (with the +1 correction)."""
    rng = np.random.default_rng(seed)
    observed = abs(deviations.mean())
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(deviations)))
    null = np.abs((signs * deviations).mean(axis=1))
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_perm))


def expanded_upper(estimate: float, upper: float, n_clusters: int, level: float = 0.95) -> float:
    """A percentile bootstrap CI's upper end, widened for few clusters (Hesterberg 2015, "What
    teachers should know about the bootstrap", the expanded percentile interval):
    ``estimate + (upper - estimate) * sqrt(n / (n - 1)) * t_{n-1}(q) / z(q)``, ``q = 1 - (1 -
    level) / 2``, ``n = n_clusters`` (the smallest number of clusters resampled on any side).
    The percentile bootstrap's spread is the plug-in one, too narrow by ``sqrt((n - 1) / n)``,
    and its tails are normal where the mean of ``n`` clusters has ``t``'s; at 4 clusters a side the
    plain upper end misses the true difference about 3 times as often as it claims (measured:
    benchmarks/bootstrap_coverage.py). ``n_clusters`` below 2: ``inf`` (no bound)."""
    from scipy.stats import norm, t

    if n_clusters < 2:
        return math.inf
    q = 1 - (1 - level) / 2
    factor = math.sqrt(n_clusters / (n_clusters - 1)) * float(t.ppf(q, n_clusters - 1)) / float(norm.ppf(q))
    return estimate + (upper - estimate) * factor


def expanded_lower(estimate: float, lower: float, n_clusters: int, level: float = 0.95) -> float:
    """A percentile bootstrap CI's lower end, widened for few clusters exactly as
    :func:`expanded_upper` widens the upper end: ``estimate - (estimate - lower) * factor``.
    The relearning attack's ``suppressed`` vote reads it (its 95% CI's lower end above 0): the
    plain end is above a true difference of 0 more often than the 2.5% it claims when halves are
    small (benchmarks/bootstrap_coverage.py, ``halves_lower``; docs/results/2026-12-07-relearning-tests.md).
    ``n_clusters`` below 2: ``-inf``."""
    if n_clusters < 2:
        return -math.inf
    return estimate - (expanded_upper(estimate, 2 * estimate - lower, n_clusters, level) - estimate)


def binomial_lower(right: int, n: int, level: float = 0.95) -> float:
    """One-sided exact lower confidence bound at ``level`` on a success probability, from
    ``right`` successes in ``n`` independent trials (Clopper & Pearson 1934): the ``1 - level``
    quantile of Beta(right, n - right + 1); 0 when ``right`` is 0. With every trial right it is
    ``(1 - level) ** (1 / n)``: 0.95 needs at least 59 of 59. ``n`` below 1: ``ValueError``."""
    from scipy.stats import beta

    if n < 1 or not 0 <= right <= n:
        raise ValueError(f"need 0 <= right <= n and n >= 1, got right={right}, n={n}")
    if right == 0:
        return 0.0
    return float(beta.ppf(1 - level, right, n - right + 1))


def seed_subject_bootstrap(
    runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """CI of mean over seeds of (mean a - mean b): resample seeds, then subjects within each seed
    (the relearning attack's CI, :mod:`forensics.lines.relearning_attack`).

    ``runs``: one ``(a, groups_a, b, groups_b)`` per seed, each a per-fact array ``[n]`` with
    its subjects ``[n]``. Percentile CI at ``level`` of :func:`seed_subject_draws`.
    """
    return percentile_ci(seed_subject_draws(runs, n_boot, seed), level)


def percentile_ci(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The two-sided percentile interval at ``level`` of bootstrap ``draws`` ``[n_boot]``."""
    alpha = (1 - level) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def seed_subject_draws(
    runs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], n_boot: int, seed: int
) -> np.ndarray:
    """``n_boot`` bootstrap draws ``[n_boot]`` of the mean over seeds of (mean a - mean b),
    resampling seeds, then subjects within each seed (``runs`` as :func:`seed_subject_bootstrap`
    takes them); one set of draws serves CIs at several levels."""
    prepared = []
    for a, ga, b, gb in runs:
        parts = []
        for x, g in ((a, ga), (b, gb)):
            _, index = np.unique(g, return_inverse=True)
            parts.append((np.bincount(index, weights=x.astype(float)), np.bincount(index).astype(float)))
        prepared.append(parts)
    rng = np.random.default_rng(seed)
    out = np.zeros(n_boot)
    for k in range(n_boot):
        total = 0.0
        for s in rng.integers(0, len(prepared), len(prepared)):
            (sa, ca), (sb, cb) = prepared[s]
            ia, ib = rng.integers(0, len(sa), len(sa)), rng.integers(0, len(sb), len(sb))
            total += sa[ia].sum() / ca[ia].sum() - sb[ib].sum() / cb[ib].sum()
        out[k] = total / len(prepared)
    return out
