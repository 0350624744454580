"""Probe classifiers shared by the probe lines: build, select by CV, score chance-corrected.

Two probe kinds (docs/methods.md §2), fitted many at a time by :mod:`forensics.probing.batched`:

- ``linear``: standardised L2 logistic regression (scikit-learn's objective); C chosen by
  cross-validation.
- ``mlp``: standardised one-hidden-layer ReLU network; L2 strength chosen by
  cross-validation. Nonlinear traces ("Unlearning Isn't Invisible") need it.

Hyper-parameters are chosen by cross-validation on the fitting set only (grouped by
subject, so a subject's paraphrases never sit on both sides of a fold).

Scores are *chance-corrected per example*: ``correct - chance``, where ``chance`` is
the accuracy a probe that ignores its input would get on this test split by guessing
with the training split's label frequencies: ``sum_c p_train(c) * p_test(c)``. Its mean
is 0 for a probe that reads nothing, whatever the label frequencies (which differ
between F and H; docs/methods.md §2). Keeping one number per example lets callers bootstrap over
subjects and compare F with H.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.model_selection import GroupKFold

from forensics.probing.batched import BatchedConfig, Problem, Task, fit_predict_many

ProbeKind = Literal["linear", "mlp"]


@dataclass(frozen=True)
class ProbeConfig:
    """Hyper-parameter grids, cross-validation folds and optimiser settings of the probes."""

    #: Inverse L2 strengths C tried for the linear probe (grouped CV picks one; ties: the first).
    linear_c_grid: tuple[float, ...] = (0.01, 0.1, 1.0)
    #: L2 strengths alpha tried for the MLP probe (grouped CV picks one; ties: the first).
    mlp_alpha_grid: tuple[float, ...] = (1e-2, 1.0)
    #: Folds of the cross-validation grouped by subject.
    n_folds: int = 5
    #: Optimiser settings of the batched fits (:class:`forensics.probing.batched.BatchedConfig`).
    fitting: BatchedConfig = field(default_factory=BatchedConfig)


class ProbeError(ValueError):
    """The data cannot support the probe (too few groups, a single class ...)."""


def check_probe_data(y: np.ndarray, groups: np.ndarray, n_folds: int, what: str) -> None:
    """Raise :class:`ProbeError` with a reason a user can act on: fewer than two classes in
    ``y`` or fewer groups (subjects) than ``n_folds``. ``what`` names the probe in the message."""
    n_classes = len(np.unique(y))
    n_groups = len(np.unique(groups))
    if n_classes < 2:
        raise ProbeError(f"{what}: a single answer class ({y[0]!r}); probes need at least two")
    if n_groups < n_folds:
        raise ProbeError(
            f"{what}: {n_groups} subjects, but {n_folds}-fold cross-validation grouped by subject needs "
            f"at least {n_folds}"
        )


def chance_level(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Expected accuracy of guessing with the training label frequencies."""
    train_labels, train_counts = np.unique(y_train, return_counts=True)
    p_train = dict(zip(train_labels, train_counts / len(y_train)))
    test_labels, test_counts = np.unique(y_test, return_counts=True)
    return float(sum(p_train.get(label, 0.0) * count / len(y_test) for label, count in zip(test_labels, test_counts)))


def chance_corrected(correct: np.ndarray, y_test: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Per-example score ``[n_test]``: correct (0/1) minus :func:`chance_level` of this split."""
    return correct.astype(float) - chance_level(y_train, y_test)


class Labels:
    """Answer strings of several sets encoded with one shared class index."""

    def __init__(self, *answer_sets: np.ndarray):
        self.classes = np.unique(np.concatenate([np.asarray(a) for a in answer_sets]))
        self.index = {c: i for i, c in enumerate(self.classes)}

    def encode(self, answers: np.ndarray) -> np.ndarray:
        """Class ids ``[n]`` (int64) of ``answers``; raises ``KeyError`` for an unknown answer."""
        return np.array([self.index[a] for a in answers], dtype=np.int64)


def fold_masks(groups: np.ndarray, n_folds: int) -> list[np.ndarray]:
    """Training masks of a grouped K-fold (a subject never sits on both sides)."""
    masks = []
    for train, _ in GroupKFold(n_splits=n_folds).split(groups, groups=groups):
        mask = np.zeros(len(groups), dtype=bool)
        mask[train] = True
        masks.append(mask)
    return masks


def _local(labels: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Re-index labels to 0..k-1 over the classes they use (a stratum uses few)."""
    classes = np.unique(np.concatenate(labels))
    return [np.searchsorted(classes, y) for y in labels], len(classes)


def out_of_fold_scores(
    kind: ProbeKind,
    strengths: list[float],
    X: np.ndarray,
    ys: list[np.ndarray],
    groups: np.ndarray,
    config: ProbeConfig,
    X_score: list[np.ndarray] | None = None,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Re-fit probes, all at once: for every label vector in ``ys`` and every strength (one
    list for all depths, or one list per depth: ``[L, n_strengths]``), the
    chance-corrected score of every example, predicted by a probe fitted on the other
    subjects' examples (grouped K-fold). Returns ``[len(ys), len(strengths), len(X_score), n]``.

    ``X_score`` (same examples, other activations) gives *transfer* scores: fit on ``X``
    of the training subjects, score ``X_score`` of the held-out subjects. The default is
    ``[X]``. ``strata`` (e.g. the attribute each fact asks for) fits one probe per stratum,
    with the folds shared. Classes absent from a training fold cannot be predicted: that
    is part of the procedure, identical for F and H.

    ``X`` may carry a leading depth axis (``[L, n, d]``, and so must ``X_score``'s
    matrices): every depth is fitted in the same optimiser run and the result gains a
    leading ``L`` axis.
    """
    stacked = np.ndim(X) == 3
    Xd = X if stacked else X[None]
    Sd = [Xd] if X_score is None else [x if stacked else x[None] for x in X_score]
    n = Xd.shape[1]
    per_depth = np.asarray(strengths, dtype=float)
    per_depth = np.broadcast_to(per_depth if per_depth.ndim == 2 else per_depth[None], (len(Xd), per_depth.shape[-1]))
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    masks = fold_masks(groups, config.n_folds)
    plan, problems = [], []
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        local_ys, n_classes = _local([y[rows] for y in ys])
        usable = [mask[rows].any() for mask in masks]
        plan.append((rows, local_ys))
        problems += [
            Problem(
                Xd[depth][rows],
                [
                    Task(y, mask[rows], s)
                    for y in local_ys
                    for s in per_depth[depth]
                    for mask, ok in zip(masks, usable)
                    if ok
                ],
                n_classes,
                [x[depth][rows] for x in Sd],
            )
            for depth in range(len(Xd))
        ]
    fitted = iter(fit_predict_many(kind, problems, config.fitting))
    out = np.zeros((len(Xd), len(ys), per_depth.shape[1], len(Sd), n))
    for rows, local_ys in plan:
        for depth in range(len(Xd)):
            predictions = iter(next(fitted))
            for i, y in enumerate(local_ys):
                for j in range(per_depth.shape[1]):
                    for mask in masks:
                        test = ~mask[rows]
                        if test.all():  # no training row in this stratum: the probe reads nothing
                            continue
                        for k, predicted in enumerate(next(predictions)):
                            out[depth, i, j, k, rows[test]] = chance_corrected(
                                predicted[test] == y[test], y[test], y[~test]
                            )
    return out if stacked else out[0]


def grouped_out_of_fold_scores(
    kind: ProbeKind,
    strength: float,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    config: ProbeConfig,
    X_score: np.ndarray | None = None,
) -> np.ndarray:
    """One re-fit (or transfer, with ``X_score``) probe's per-example scores; ``y`` may be strings."""
    check_probe_data(y, groups, config.n_folds, "re-fit probe")
    return out_of_fold_scores(
        kind, [strength], X, [Labels(y).encode(y)], groups, config, None if X_score is None else [X_score]
    )[0, 0, 0]


def strength_grid(kind: ProbeKind, config: ProbeConfig) -> tuple[float, ...]:
    """The regularisation grid of ``kind``: C for "linear", alpha for "mlp"."""
    return config.linear_c_grid if kind == "linear" else config.mlp_alpha_grid


def select_strength(
    kind: ProbeKind,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    config: ProbeConfig,
    strata: np.ndarray | None = None,
) -> float:
    """The regularisation strength with the best grouped-CV score on (X, y); ties go to the
    grid's first entry (for the default linear grid, the strongest regularisation)."""
    grid = strength_grid(kind, config)
    if len(grid) == 1:
        return grid[0]
    if y.dtype.kind not in "iu":
        y = Labels(y).encode(y)
    means = out_of_fold_scores(kind, list(grid), X, [y], groups, config, strata=strata)[0, :, 0].mean(-1)
    best = 0
    for j in range(1, len(grid)):
        if means[j] > means[best] + 1e-12:
            best = j
    return grid[best]


def fit_and_predict(
    kind: ProbeKind,
    strength: float | list[float],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_list: list[np.ndarray],
    config: ProbeConfig,
    strata_train: np.ndarray | None = None,
    strata_list: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """One probe per stratum fitted on all of (X_train, y_train) (int labels); the class it
    predicts for every row of each matrix in ``X_list`` (-1 for a stratum it never saw).
    With a leading depth axis on the matrices (``[L, n, d]``, ``strength`` then one per
    depth or one for all), every depth is fitted in one run and the results gain that axis."""
    if len(np.unique(y_train)) < 2:
        raise ProbeError("a single answer class; probes need at least two")
    stacked = np.ndim(X_train) == 3
    Xt = X_train if stacked else X_train[None]
    Xl = [x if stacked else x[None] for x in X_list]
    strengths = np.broadcast_to(np.asarray(strength, dtype=float), (len(Xt),))
    strata_train = np.zeros(len(y_train), dtype=np.int64) if strata_train is None else np.asarray(strata_train)
    strata_list = strata_list or [np.zeros(x.shape[1], dtype=np.int64) for x in Xl]
    out = [np.full((len(Xt), x.shape[1]), -1) for x in Xl]
    plan, problems = [], []
    for stratum in np.unique(strata_train):
        train = strata_train == stratum
        rows = [st == stratum for st in strata_list]
        classes = np.unique(y_train[train])
        local = np.searchsorted(classes, y_train[train])
        plan.append((classes, rows))
        problems += [
            Problem(
                Xt[depth][train],
                [Task(local, np.ones(int(train.sum()), bool), strengths[depth])],
                len(classes),
                [x[depth][r] for x, r in zip(Xl, rows)],
            )
            for depth in range(len(Xt))
        ]
    fitted = iter(fit_predict_many(kind, problems, config.fitting))
    for classes, rows in plan:
        for depth in range(len(Xt)):
            (predicted,) = next(fitted)
            for o, p, r in zip(out, predicted, rows):
                o[depth, r] = classes[p]
    return out if stacked else [o[0] for o in out]


def stratified_chance_corrected(
    predicted: np.ndarray,
    y: np.ndarray,
    y_train: np.ndarray,
    strata: np.ndarray | None = None,
    strata_train: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`chance_corrected` with each stratum's own chance level."""
    if strata is None:
        return chance_corrected(predicted == y, y, y_train)
    out = np.zeros(len(y))
    for stratum in np.unique(strata):
        rows = strata == stratum
        out[rows] = chance_corrected(predicted[rows] == y[rows], y[rows], y_train[strata_train == stratum])
    return out


def fit_and_score(
    kind: ProbeKind,
    strength: float,
    X_train: np.ndarray,
    y_train: np.ndarray,
    scored: list[tuple[np.ndarray, np.ndarray]],
    config: ProbeConfig,
    strata_train: np.ndarray | None = None,
    strata_scored: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """:func:`fit_and_predict`, scored chance-corrected against each ``(X, y)`` of ``scored``."""
    predicted = fit_and_predict(
        kind, strength, X_train, y_train, [X for X, _ in scored], config, strata_train, strata_scored
    )
    strata_each: Sequence[np.ndarray | None] = strata_scored or [None] * len(scored)
    return [
        stratified_chance_corrected(p, y, y_train, st, strata_train)
        for p, (_, y), st in zip(predicted, scored, strata_each)
    ]
