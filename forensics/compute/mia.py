"""Membership-inference scores of texts from per-token statistics (docs/methods.md §10).

Per text, with ``lp_t`` the log-probability of token ``t`` given its prefix (every token
after the first), each score is signed so that *higher = more like training data*:

- ``loss`` (Yeom et al. 2018): minus the mean token NLL;
- ``zlib`` (Carlini et al. 2021): minus the mean token NLL over the zlib-compressed
  length of the text in bytes;
- ``min_k`` (Min-K%, Shi et al. 2024, k = 20%): mean of the ``max(1, int(k * n))``
  lowest ``lp_t``;
- ``min_k_pp`` (Min-K%++, Zhang et al. 2024): the same over ``(lp_t - mu_t) / sigma_t``
  (see :func:`forensics.compute.scoring.token_stats`).

These follow open-unlearning's definitions (``src/evals/metrics/mia``), sign flipped.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

ATTACKS = ("loss", "zlib", "min_k", "min_k_pp")


def attack_scores(stats: list[dict[str, np.ndarray]], texts: Sequence[str], k: float = 0.2) -> dict[str, np.ndarray]:
    """Member-likeness per text for each attack in :data:`ATTACKS`: ``{attack: [n_texts]}``
    (NaN for a text with a single token). ``stats`` come from :func:`forensics.compute.scoring.token_stats`."""
    scores = {name: np.zeros(len(stats)) for name in ATTACKS}
    for i, (s, text) in enumerate(zip(stats, texts)):
        lp = s["lp"]
        if len(lp) == 0:
            for name in ATTACKS:
                scores[name][i] = np.nan
            continue
        loss = -lp.mean()
        num_k = max(1, int(len(lp) * k))
        scores["loss"][i] = -loss
        scores["zlib"][i] = -loss / max(1, len(zlib.compress(text.encode("utf-8"))))
        scores["min_k"][i] = np.sort(lp)[:num_k].mean()
        scores["min_k_pp"][i] = np.sort((lp - s["mu"]) / s["sigma"])[:num_k].mean()
    return scores


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC-AUC of scores ``pos`` ``[n_pos]`` against ``neg`` ``[n_neg]``: P(pos > neg), ties
    counting one half (Mann-Whitney U / (n_pos * n_neg))."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
