"""The answer probe decides which facts it can score from the data alone, before any forward
pass, and that decision equals the facts its decoders leave finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forensics.lines.answer_probe import AnswerProbeConfig, _refit_scores, _transfer_scores, scorable_facts


def _world(rng, n, labels):
    true = rng.choice(labels, n)
    wrong = [list(rng.choice(labels + ["never seen"], 3, replace=False)) for _ in range(n)]
    groups = np.repeat(np.arange(n // 2), 2)
    return true, wrong, groups


@pytest.mark.parametrize("variant", ["retain", "refit"])
def test_scorable_facts_are_the_ones_the_decoders_score(variant):
    rng = np.random.default_rng(0)
    config = AnswerProbeConfig(variant=variant, n_folds=3)
    labels = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito"]
    true, wrong = _world(rng, 40, labels)[:2]
    true[:4] = ["Atlantis", "Atlantis", "Mu", "Mu"]  # answers no other subject has
    groups = np.repeat(np.arange(20), 2)
    hooks = ["h0", "h1"]
    acts = {h: torch.tensor(rng.normal(size=(40, 6)), dtype=torch.float32) for h in hooks}
    if variant == "retain":
        retain_true = rng.choice(labels[:4], 30)
        train = {h: torch.tensor(rng.normal(size=(30, 6)), dtype=torch.float32) for h in hooks}
        scores = _transfer_scores(train, retain_true, acts, hooks, true, wrong, config)
    else:
        retain_true = np.array([])
        scores = _refit_scores(acts, hooks, true, wrong, groups, config)
    expected = scorable_facts(true, wrong, groups, retain_true, config)
    assert 0 < expected.sum() < len(true)  # the check can go either way here
    for depth in range(len(hooks)):
        assert (np.isfinite(scores[depth]) == expected).all()


def test_a_decoder_with_one_label_scores_nothing():
    config = AnswerProbeConfig(variant="retain")
    true = np.array(["Paris", "Rome"])
    assert not scorable_facts(true, [["Rome"], ["Paris"]], np.array([0, 1]), np.array(["Paris"] * 5), config).any()
