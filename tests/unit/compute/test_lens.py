"""The tuned lens's fitting vocabulary (forensics/compute/lens.py): with every token in it, the
fit is the whole-vocabulary fit; with a few, it still lowers the KL it reports, over the tokens it
names, and costs only those columns of the unembedding."""

from __future__ import annotations

import pytest
import torch

from forensics.compute.capture import capture
from forensics.compute.lens import decode, decode_columns, fit_tuned_lens
from forensics.inputs.loading import load_model
from forensics.lines.tuned_lens import TunedLensConfig

TEXTS = ["the quick brown fox jumps over a lazy dog", "seven bright stars glow above calm water"] * 4


def _capture(loaded, prompts, spec):
    return capture(loaded, prompts, spec)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
    return load_model(tiny_checkpoints["llama"])


def test_decode_columns_is_decode_restricted_to_the_columns(loaded):
    resid = torch.randn(3, 5, loaded.model.cfg.d_model)
    columns = torch.tensor([0, 7, 11, 42])
    assert torch.allclose(
        decode_columns(loaded.model, resid, columns), decode(loaded.model, resid)[..., columns], atol=1e-5
    )
    assert torch.equal(decode_columns(loaded.model, resid, None), decode(loaded.model, resid))


def test_a_fitting_vocabulary_of_every_token_is_the_whole_vocabulary_fit(loaded):
    vocab = loaded.model.cfg.d_vocab
    whole = fit_tuned_lens(loaded, TEXTS, TunedLensConfig(steps=20), _capture)
    every = fit_tuned_lens(loaded, TEXTS, TunedLensConfig(steps=20, full_vocab_limit=0, top_k=vocab), _capture)
    assert whole.n_vocab == every.n_vocab == vocab
    assert torch.allclose(whole.weight, every.weight, atol=1e-4)
    assert whole.kl_tuned == pytest.approx(every.kl_tuned, rel=1e-3, abs=1e-5)


def test_a_small_fitting_vocabulary_still_fits(loaded):
    lens = fit_tuned_lens(loaded, TEXTS, TunedLensConfig(steps=40, full_vocab_limit=0, top_k=4), _capture)
    assert 4 <= lens.n_vocab < loaded.model.cfg.d_vocab
    assert all(t < r for t, r in zip(lens.kl_tuned, lens.kl_raw))


def test_a_depth_budget_fits_the_same_translators_at_fewer_depths(loaded):
    """With every training token in each step, a translator does not depend on which other
    depths are fitted: the budgeted lens's translators are the whole lens's at its depths."""
    n = loaded.n_layers
    whole = fit_tuned_lens(loaded, TEXTS, TunedLensConfig(steps=20), _capture)
    budget = fit_tuned_lens(loaded, TEXTS, TunedLensConfig(steps=20, max_depths=2), _capture)
    assert whole.depths == list(range(n)) and budget.depths == [0]
    assert budget.read_depths == [0, n]
    assert torch.allclose(budget.weight[0], whole.weight[0], atol=1e-6)
    resid = torch.randn(2, loaded.model.cfg.d_model)
    assert torch.equal(budget.translate(n, resid), resid)
    with pytest.raises(KeyError):
        budget.translate(1, resid)
