"""Benchmark: does the subject bootstrap's upper end hold as a one-sided upper bound at few
subjects? (issue 25: a ``deleted`` vote needs a valid bound at TOFU's 7 holdout authors.)

A ``deleted`` vote rests on the upper end of a subject-bootstrap CI of F - H (as a share of
O's signal: :func:`forensics.core.evidence.deletion_bound`). Under no effect (F and H drawn
from one distribution, so the true difference is 0) the upper end should fall below 0 in at
most ``(1 - level) / 2`` of samples; the share of samples where it does is its *miss rate*.
This script measures it by simulation for the procedures the deleting lines use:

- ``cluster``: :func:`forensics.compute.stats.cluster_bootstrap_diff_ci` at level 0.95, over
  every subject of F and of H (REMIND's slope contrast; the attribute probes' unadjusted CI);
- ``cluster_family``: the same at level ``1 - 0.05 / 8`` (a family-adjusted CI: the attribute
  probes' and membership's deciding CIs are adjusted over their cells or attacks);
- ``halves``: :func:`forensics.compute.stats.seed_subject_bootstrap` over one seed,
  F_b and H_b being half of each set's subjects (the relearning attack's CI);
- ``halves_expanded``: the upper end of that bootstrap's 90% CI widened for few subjects
  (:func:`forensics.compute.stats.expanded_upper`), a one-sided 95% upper bound: the relearning
  attack's deletion bound.
- ``halves_lower`` / ``halves_lower_expanded``: the other side, the relearning attack's
  ``suppressed`` test: the lower end of the same bootstrap's 95% CI, plain or widened
  (:func:`forensics.compute.stats.expanded_lower`); a "miss" is that end above the true 0 (a
  ``suppressed`` vote on a model with no recovery), nominal 2.5%.

Data: per subject a mean drawn around ``p`` with between-subject spread ``sd``, then a
varying number of facts per subject (between half and 1.5 times ``per``), binary (accuracy)
or Gaussian (a continuous score). Three scenarios, subject counts 4 to 20 per side.

    python benchmarks/bootstrap_coverage.py [--reps 2000] [--counts 4 5 6 7 8 10 12 20]

Prints the miss rate per (procedure, count, scenario) with its standard error, and per
procedure the smallest count from which every scenario's miss rate is within two standard
errors of the nominal rate. Pure numpy; the two ``halves_lower`` procedures over six counts at 2000
repetitions took 23 min of CPU on one core (2026-12-07).
"""

from __future__ import annotations

import argparse

import numpy as np

from forensics.compute.stats import cluster_bootstrap_diff_ci, expanded_lower, expanded_upper, seed_subject_bootstrap

#: (facts per subject, between-subject sd, mean, binary): short answers with a mild subject
#: effect; many facts per subject with a weak one; few facts, a strong subject effect, a score.
SCENARIOS = ((10, 0.15, 0.2, True), (20, 0.05, 0.1, True), (4, 0.25, 0.5, False))
FAMILY_LEVEL = 1 - 0.05 / 8


def side(rng, n: int, per: int, sd: float, p: float, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """One set: values ``[n_facts]`` and subject ids ``[n_facts]`` for ``n`` subjects."""
    mu = np.clip(p + rng.normal(0, sd, n), 0.01, 0.99)
    k = rng.integers(max(1, per // 2), per * 3 // 2 + 1, n)
    vals = [(rng.random(m) < u).astype(float) if binary else rng.normal(u, 0.3, m) for u, m in zip(mu, k)]
    return np.concatenate(vals), np.repeat(np.arange(n), k).astype(str)


def miss_rate(procedure: str, n: int, scenario: tuple, reps: int, seed: int) -> float:
    """Share of ``reps`` null samples whose upper end lies below the true difference 0 (for the
    ``halves_lower`` procedures: whose lower end lies above it)."""
    rng = np.random.default_rng(seed)
    misses = 0
    for r in range(reps):
        if procedure.startswith("halves"):  # F_b and H_b: half of n subjects each
            m = max(1, n // 2)
            a, ga = side(rng, m, *scenario)
            b, gb = side(rng, n - m, *scenario)
            level = 0.90 if procedure == "halves_expanded" else 0.95
            lo, hi = seed_subject_bootstrap([(a, ga, b, gb)], 1000, r, level)
            if procedure == "halves_expanded":
                hi = expanded_upper(float(a.mean() - b.mean()), hi, min(m, n - m), level)
            if procedure.startswith("halves_lower"):
                if procedure == "halves_lower_expanded":
                    lo = expanded_lower(float(a.mean() - b.mean()), lo, min(m, n - m), level)
                misses += lo > 0
                continue
        else:
            a, ga = side(rng, n, *scenario)
            b, gb = side(rng, n, *scenario)
            level = 0.95 if procedure == "cluster" else FAMILY_LEVEL
            hi = cluster_bootstrap_diff_ci(a, ga, b, gb, 1000, r, level)[1]
        misses += hi < 0
    return misses / reps


def nominal(procedure: str) -> float:
    """The one-sided miss rate the procedure's upper end claims (``halves_expanded``: the
    one-sided 95% bound a DELETED verdict states, the upper end of a widened 90% CI)."""
    level = {"cluster_family": FAMILY_LEVEL, "halves_expanded": 0.90}.get(procedure, 0.95)
    return (1 - level) / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 5, 6, 7, 8, 10, 12, 20])
    parser.add_argument("--procedures", nargs="+", default=["cluster", "cluster_family", "halves", "halves_expanded"])
    args = parser.parse_args()
    for procedure in args.procedures:
        rate = nominal(procedure)
        se = np.sqrt(rate * (1 - rate) / args.reps)
        print(f"\n{procedure}: nominal one-sided miss rate {rate:.4f}, 2 SE = {2 * se:.4f} ({args.reps} samples)")
        print(f"{'subjects':>8} " + " ".join(f"{'s' + str(i + 1):>7}" for i in range(len(SCENARIOS))))
        ok_from = None
        for n in args.counts:
            rates = [miss_rate(procedure, n, sc, args.reps, 1000 * n + i) for i, sc in enumerate(SCENARIOS)]
            print(f"{n:>8} " + " ".join(f"{r:>7.4f}" for r in rates), flush=True)
            holds = all(r <= rate + 2 * se for r in rates)
            ok_from = (ok_from or n) if holds else None
        print(f"within 2 SE of nominal in every scenario from {ok_from} subjects" if ok_from else "never within 2 SE")


if __name__ == "__main__":
    main()
