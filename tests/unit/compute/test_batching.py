"""Scores do not depend on batch composition: a fact scored alone and in a right-padded batch of
mixed lengths gives the same log-prob, on every family, with or without a BOS the tokenizer adds."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ARCHS, WORDS, bos_tokenizer, make_checkpoint

from forensics.inputs.data import Fact


def _mixed_lengths() -> list[Fact]:
    """Facts whose prompts run from 1 to 12 words, so every batch pads most rows."""
    return [
        Fact(" ".join(WORDS[k % 5 : k % 5 + 1 + (7 * k) % 12]), " " + WORDS[(3 * k) % len(WORDS)]) for k in range(10)
    ]


def _alone_and_together(loaded):
    from forensics.compute.scoring import fact_token_ids, logits_fn_for, score_facts, sequence_losses

    facts, fn, tok = _mixed_lengths(), logits_fn_for(loaded.model), loaded.tokenizer
    alone = np.array([score_facts(fn, tok, [f], batch_size=1).logprob[0] for f in facts])
    together = score_facts(fn, tok, facts, batch_size=len(facts)).logprob
    rows = fact_token_ids(tok, facts)
    seq_alone = np.array([sequence_losses(loaded.model, [r])[0] for r in rows])
    seq_together = sequence_losses(loaded.model, rows, batch_size=len(rows))
    return alone, together, seq_alone, seq_together


@pytest.mark.parametrize("arch", ARCHS)
def test_a_fact_scores_the_same_alone_and_in_a_mixed_batch(arch, tiny_checkpoints):
    from forensics.inputs.loading import load_model

    alone, together, seq_alone, seq_together = _alone_and_together(load_model(tiny_checkpoints[arch]))
    assert np.abs(alone - together).max() <= 1e-5, (arch, alone, together)
    assert np.abs(seq_alone - seq_together).max() <= 1e-5, (arch, seq_alone, seq_together)
    assert np.ptp(alone) > 0.01  # the facts differ, so equality is not trivial


def test_the_same_holds_when_the_tokenizer_adds_a_bos(tmp_path):
    from forensics.inputs.loading import load_model

    loaded = load_model(make_checkpoint(tmp_path / "m", "llama", tokenizer=bos_tokenizer(template=None)))
    assert loaded.tokenizer("the fox")["input_ids"][0] == loaded.tokenizer.bos_token_id
    alone, together, seq_alone, seq_together = _alone_and_together(loaded)
    assert np.abs(alone - together).max() <= 1e-5
    assert np.abs(seq_alone - seq_together).max() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_at_chosen_positions_equal_the_full_logits_there(arch, tiny_checkpoints, test_tokenizer):
    import torch

    from forensics.compute.scoring import logits_fn_for
    from forensics.inputs.loading import load_model

    loaded = load_model(tiny_checkpoints[arch])
    tokens = torch.tensor(
        test_tokenizer(["the quick brown fox jumps over the lazy dog", "seven bright stars"], padding=True)["input_ids"]
    )
    positions = torch.tensor([[0, 3, 7], [2, 2, 1]])
    fn = logits_fn_for(loaded.model)
    with torch.no_grad():
        full = fn(tokens)
        picked = fn(tokens, positions)
    expected = full.gather(1, positions[..., None].expand(-1, -1, full.shape[-1]))
    assert picked.shape == (2, 3, full.shape[-1])
    assert torch.allclose(picked, expected, atol=1e-5, rtol=0), (arch, (picked - expected).abs().max())
