"""Input loss landscapes (docs/methods.md §7; REMIND): token-substitution neighbours of an
example, the landscape features of its loss around them, and the classifiers and baselines
that read them.

A neighbour replaces some of an example's tokens by one of their nearest tokens in input-
embedding cosine space; the loss (mean token NLL, nats) of the original and of every
neighbour gives five features per example (:data:`FEATURES`): the original loss, the mean,
max and standard deviation of the neighbours' losses, and the least-squares slope of loss
against the number of substituted tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from forensics.compute.mia import attack_scores
from forensics.compute.scoring import token_stats
from forensics.inputs.data import Fact

FEATURES = ("loss", "neighbour_mean", "neighbour_max", "neighbour_std", "slope")


@torch.no_grad()
def nearest_tokens(
    embedding: torch.Tensor, token_ids: Sequence[int], k: int, exclude: Sequence[int]
) -> dict[int, np.ndarray]:
    """For each token id, the ``k`` nearest other tokens by cosine of the input embeddings.

    ``embedding``: ``[d_vocab, d_model]`` (U's ``W_E``). Returns ``{token id: int array [k]}``,
    most similar first; the token itself and every id in ``exclude`` are never returned.
    """
    emb = torch.nn.functional.normalize(embedding.float(), dim=-1)
    ids = sorted(set(int(t) for t in token_ids))
    out = {}
    banned = torch.as_tensor(sorted(set(exclude)), dtype=torch.long)
    for start in range(0, len(ids), 1024):
        chunk = torch.as_tensor(ids[start : start + 1024])
        sims = emb[chunk] @ emb.T
        sims[torch.arange(len(chunk)), chunk] = -float("inf")
        if len(banned):
            sims[:, banned] = -float("inf")
        top = sims.topk(min(k, emb.shape[0] - 1), dim=-1).indices.cpu().numpy()
        for t, row in zip(chunk.tolist(), top):
            out[t] = row
    return out


def max_radius(n_substitutable: int, share: float) -> int:
    """Largest substitution radius for ``n_substitutable`` tokens: ``share * n`` rounded
    half up, an int."""
    return int(share * n_substitutable + 0.5)


def substitutable_positions(seq: Sequence[int], special: set[int], end: int | None = None) -> list[int]:
    """Positions of ``seq`` a neighbour may substitute: its non-special tokens, before
    position ``end`` when given (the prompt of a ``prompt + answer`` sequence)."""
    return [p for p, t in enumerate(seq[:end]) if t not in special]


def make_neighbours(
    sequences: Sequence[Sequence[int]],
    special: set[int],
    nearest: dict[int, np.ndarray],
    n_neighbours: int,
    substitution_share: float,
    seed: int,
    ends: Sequence[int | None] | None = None,
) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Neighbours of every example (all assumed long enough: radius ``R >= 1``).

    Returns ``(token lists, owner, radius)``: ``n_examples * n_neighbours`` token id lists,
    and int arrays of that length giving each neighbour's example index and number of
    substituted tokens. Only :func:`substitutable_positions` are substituted (non-special
    tokens, before ``ends[i]`` when ``ends`` is given); ``nearest`` comes from
    :func:`nearest_tokens`. Neighbour ``j`` of an example substitutes ``1 + j % R`` tokens
    (``R``: :func:`max_radius` of ``substitution_share``), drawn with ``seed``.
    """
    rng = np.random.default_rng(seed)
    out, owner, radius = [], [], []
    for i, seq in enumerate(sequences):
        positions = np.array(substitutable_positions(seq, special, None if ends is None else ends[i]))
        R = max_radius(len(positions), substitution_share)
        for j in range(n_neighbours):
            r = 1 + j % R
            new = list(seq)
            for p in rng.choice(positions, size=r, replace=False):
                new[p] = int(rng.choice(nearest[seq[p]]))
            out.append(new)
            owner.append(i)
            radius.append(r)
    return out, np.array(owner), np.array(radius)


def landscape_features(orig_loss: np.ndarray, nb_loss: np.ndarray, owner: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """``[n_examples, 5]``: original loss, neighbour mean / max / std, slope of loss vs radius.

    ``orig_loss``: ``[n_examples]``; ``nb_loss``, ``owner``, ``radius``: one entry per
    neighbour (see :func:`make_neighbours`). Losses in nats; the slope is least squares over
    the original at radius 0 and every neighbour, in nats per substituted token.
    """
    n = len(orig_loss)
    feats = np.zeros((n, len(FEATURES)))
    for i in range(n):
        sel = owner == i
        l, r = nb_loss[sel], radius[sel]
        x = np.concatenate([[0.0], r])
        y = np.concatenate([[orig_loss[i]], l])
        xc = x - x.mean()
        slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
        feats[i] = [orig_loss[i], l.mean(), l.max(), l.std(), slope]
    return feats


def tpr_at_fpr(y: np.ndarray, score: np.ndarray, fpr_level: float = 0.01) -> float:
    """True-positive rate at false-positive rate ``fpr_level`` of ``score`` for binary labels
    ``y`` (both ``[n]``): the highest ROC TPR whose FPR is at most the level (0 when none)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    return float(tpr[fpr <= fpr_level].max()) if np.any(fpr <= fpr_level) else 0.0


def split_indices(labels: np.ndarray, groups: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified 80/20 split of ``labels`` ``[n]``: ``(train indices, test indices)``.

    With ``groups`` (subjects, ``[n]``) the split is the first fold of a 5-fold
    StratifiedGroupKFold, so no subject sits on both sides."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(labels))
    if groups is not None:
        folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
        train, test = next(folds.split(idx, labels, groups))
        return train, test
    return train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)  # pyright: ignore[reportReturnType]


def classify(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, kind: str, seed: int) -> dict:
    """Fit on ``train``, metrics on ``test``: multi-class AUC, forget-vs-rest AUC and TPR@1%FPR, F-vs-H AUC.

    ``X``: ``[n, n_features]``; ``y``: ``[n]`` with 0 = F, 1 = R, 2 = H. ``kind``:
    ``"logistic"`` (standardised) or anything else for a random forest (200 trees).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    else:
        clf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=1)
    clf.fit(X[train], y[train])
    proba = clf.predict_proba(X[test])
    yt = y[test]
    p_forget = proba[:, list(clf.classes_).index(0)]  # pyright: ignore[reportCallIssue, reportArgumentType]
    fh = yt != 1
    return {
        "auc_multiclass_ovr": float(roc_auc_score(yt, proba, multi_class="ovr", labels=clf.classes_)),
        "auc_forget_vs_rest": float(roc_auc_score(yt == 0, p_forget)),
        "tpr_at_1pct_fpr_forget": tpr_at_fpr(yt == 0, p_forget),
        "auc_forget_vs_holdout": float(roc_auc_score(yt[fh] == 0, p_forget[fh])),
    }


def baseline_scores(
    loaded, facts: list[Fact], tokens: list[list[int]], batch_size: int, starts: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Single-point membership baselines of each fact under ``loaded``: ``{"LOSS", "zlib",
    "Min-K%++": [n_facts]}`` (:func:`forensics.compute.mia.attack_scores`, higher = more member-like),
    over every token after the first, or from position ``starts[i]`` on (the answer span;
    zlib then compresses the answer's text)."""
    pad = loaded.tokenizer.pad_token_id or 0
    stats = token_stats(loaded.model, tokens, min(batch_size, 256), loaded.device, pad)
    texts = [f.text for f in facts]
    if starts is not None:  # lp[t] scores token t + 1
        stats = [{key: st[key][k - 1 :] for key in ("lp", "mu", "sigma")} for st, k in zip(stats, starts)]
        texts = [f.answer for f in facts]
    s = attack_scores(stats, texts)
    return {"LOSS": s["loss"], "zlib": s["zlib"], "Min-K%++": s["min_k_pp"]}
