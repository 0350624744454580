"""Probe classifiers on synthetic activations with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from forensics.probing.batched import Task, fit_predict
from forensics.probing.classifiers import (
    Labels,
    ProbeConfig,
    ProbeError,
    chance_corrected,
    chance_level,
    fit_and_score,
    fold_masks,
    grouped_out_of_fold_scores,
    out_of_fold_scores,
    select_strength,
)


def synthetic(n_subjects=40, per_subject=3, d=16, signal=3.0, seed=0, xor=False):
    """Each subject has one label; its examples share a label-dependent mean (+ noise)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n_subjects)
    centres = rng.normal(size=(4, d)) * signal
    X, y, g = [], [], []
    for s, label in enumerate(labels):
        for _ in range(per_subject):
            x = rng.normal(size=d)
            if xor:  # two classes, readable only nonlinearly: sign(x0) * sign(x1)
                label = label % 2
                x[0] = abs(x[0]) * signal * rng.choice([-1, 1])
                x[1] = abs(x[1]) * signal * np.sign(x[0]) * (1 if label else -1)
            else:
                x = x + centres[label]
            X.append(x), y.append(f"v{label}"), g.append(s)
    return np.array(X), np.array(y), np.array(g)


def test_chance_level_is_guessing_with_training_frequencies():
    y_test = np.array(["a", "a", "a", "b"])
    y_train = np.array(["a", "b", "b", "c"])
    assert chance_level(y_train, y_test) == pytest.approx(0.25 * 0.75 + 0.5 * 0.25)
    scores = chance_corrected(np.array([True, False, True, True]), y_test, y_train)
    assert scores.mean() == pytest.approx(0.75 - 0.3125)


def test_refit_probe_reads_signal_and_not_noise():
    config = ProbeConfig()
    X, y, g = synthetic()
    readable = grouped_out_of_fold_scores("linear", 1.0, X, y, g, config).mean()
    X_noise, y_noise, g_noise = synthetic(signal=0.0, seed=1)
    noise = grouped_out_of_fold_scores("linear", 1.0, X_noise, y_noise, g_noise, config).mean()
    assert readable > 0.5
    assert abs(noise) < 0.1


def test_mlp_reads_a_nonlinear_code_that_the_linear_probe_misses():
    config = ProbeConfig()
    X, y, g = synthetic(n_subjects=80, xor=True, seed=2)
    linear = grouped_out_of_fold_scores("linear", select_strength("linear", X, y, g, config), X, y, g, config).mean()
    mlp = grouped_out_of_fold_scores("mlp", select_strength("mlp", X, y, g, config), X, y, g, config).mean()
    assert abs(linear) < 0.1
    assert mlp > linear + 0.1


def test_fitted_probe_transfers_to_new_examples():
    config = ProbeConfig()
    X, y, g = synthetic(seed=3)
    labels = Labels(y)
    y = labels.encode(y)
    (scores,) = fit_and_score("linear", 1.0, X[g < 30], y[g < 30], [(X[g >= 30], y[g >= 30])], config)
    assert scores.mean() > 0.4


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_linear_probe_predicts_like_scikit_learn(C):
    """The batched probe minimises scikit-learn's StandardScaler + LogisticRegression objective."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, g = synthetic(n_subjects=60, d=24, signal=0.4, seed=4)
    y = Labels(y).encode(y)
    X[:, 0] *= 50.0  # scales differ: standardisation must happen per task, on its training rows
    masks = fold_masks(g, 5)
    predictions = fit_predict("linear", X, [Task(y, m, C) for m in masks], 4)
    agree = []
    for mask, (predicted,) in zip(masks, predictions):
        reference = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000)).fit(X[mask], y[mask])
        agree.append(np.mean(reference.predict(X[~mask]) == predicted[~mask]))
    assert np.mean(agree) > 0.97


def test_many_label_vectors_fit_independently():
    """Fitting tasks together gives each task the result it gets alone."""
    config = ProbeConfig()
    X, y, g = synthetic(seed=5)
    y = Labels(y).encode(y)
    shuffled = np.random.default_rng(0).permutation(y)
    together = out_of_fold_scores("linear", [0.1, 1.0], X, [y, shuffled], g, config)
    alone = out_of_fold_scores("linear", [1.0], X, [shuffled], g, config)
    # same optimum up to the solver's tolerance: near-boundary examples may flip
    assert np.mean(together[1, 1] == alone[0, 0]) > 0.9
    assert abs(together[1, 1].mean() - alone[0, 0].mean()) < 0.03
    assert together[0].mean() > 0.4 and abs(together[1].mean()) < 0.1


def test_a_class_absent_from_training_is_never_predicted():
    X, y, g = synthetic(seed=6)
    y = Labels(y).encode(y)
    train = y != 3
    (predicted,) = fit_predict("mlp", X, [Task(y, train, 1.0)], 4)[0]
    assert 3 not in set(predicted)


def test_bad_data_gives_reasons():
    config = ProbeConfig()
    X, y, g = synthetic(n_subjects=3)
    with pytest.raises(ProbeError, match="3 subjects, but 5-fold"):
        grouped_out_of_fold_scores("linear", 1.0, X, y, g, config)
    with pytest.raises(ProbeError, match="single answer class"):
        grouped_out_of_fold_scores("linear", 1.0, X, np.full(len(y), "v0"), g, config)


def test_strata_fit_one_probe_per_stratum():
    """Two attributes whose answers live in different directions: per-attribute probes read
    both; a stratum's probe never predicts another stratum's answers."""
    config = ProbeConfig()
    X1, y1, g1 = synthetic(seed=7)
    X2, y2, g2 = synthetic(seed=8)
    X = np.concatenate([X1, X2])
    y = Labels(np.r_[y1, np.char.add(y2, "b")]).encode(np.r_[y1, np.char.add(y2, "b")])
    g, strata = np.r_[g1, g2], np.r_[np.zeros(len(y1), int), np.ones(len(y2), int)]
    scores = out_of_fold_scores("linear", [1.0], X, [y], g, config, strata=strata)[0, 0, 0]
    assert scores[strata == 0].mean() > 0.4 and scores[strata == 1].mean() > 0.4
