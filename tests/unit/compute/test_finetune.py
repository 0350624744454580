"""The relearning attack's training loss: answer-position logits only, equal to the loss over
full logits; label positions; the fused optimiser step against the plain loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import ARCHS, WORDS

from forensics.compute.finetune import IGNORE, answer_nll, encode_answers, label_positions, run_steps
from forensics.inputs.data import Fact


def _facts() -> list[Fact]:
    # answers of one to three words after prompts of 1-6 words: rows pad differently
    return [Fact(" ".join(WORDS[k : k + 1 + k % 6]), " " + " ".join(WORDS[k + 2 : k + 3 + k % 3])) for k in range(8)]


def test_label_positions_are_each_rows_label_positions_in_order():
    labels = torch.tensor([[IGNORE, IGNORE, 7, 8, IGNORE], [IGNORE, 5, IGNORE, IGNORE, IGNORE]])
    positions, targets, valid = label_positions(labels)
    assert positions.tolist() == [[1, 2], [0, 0]]  # label at t is predicted at t - 1
    assert targets.tolist() == [[7, 8], [5, 0]]
    assert valid.tolist() == [[True, True], [True, False]]


@pytest.mark.parametrize("arch", ARCHS)
def test_the_answer_loss_equals_the_loss_over_full_logits(arch, tiny_checkpoints):
    from forensics.inputs.loading import load_model

    loaded = load_model(tiny_checkpoints[arch])
    batch = encode_answers(loaded.tokenizer, _facts())
    full = loaded.model(batch.ids)[:, :-1]
    expected = F.cross_entropy(full.reshape(-1, full.shape[-1]), batch.labels[:, 1:].reshape(-1), ignore_index=IGNORE)
    got = answer_nll(loaded.model, batch, "cpu")
    assert abs(float(got) - float(expected)) <= 1e-5 * max(1.0, abs(float(expected)))
    assert float(answer_nll(loaded.model, batch, "cpu", sign=-1.0)) == pytest.approx(-float(got))


def test_the_fused_step_follows_the_plain_loop_and_gradients_reach_every_block(tiny_checkpoints):
    from forensics.compute.finetune import trainable_copy
    from forensics.inputs.loading import load_model

    loaded = load_model(tiny_checkpoints[ARCHS[0]])
    batch = encode_answers(loaded.tokenizer, _facts())
    before = answer_nll(loaded.model, batch, "cpu").item()
    tuned = {}
    for fused in (False, True):
        model = trainable_copy(loaded.model)
        run_steps(
            model, list(model.parameters()), lambda _, m=model: answer_nll(m, batch, "cpu"), 20, 1e-3, fused=fused
        )
        tuned[fused] = model
    after = {k: answer_nll(m, batch, "cpu").item() for k, m in tuned.items()}
    assert after[False] < before - 0.1  # the loss trains the model
    assert after[True] == pytest.approx(after[False], rel=1e-3, abs=1e-4)
    for (name, p), q in zip(tuned[True].named_parameters(), loaded.model.parameters()):
        if name.startswith("blocks."):
            assert not torch.equal(p, q), name  # every block's weights moved


def test_a_bfloat16_model_fine_tunes_in_float32_master_weights_under_autocast(tiny_checkpoints):
    from forensics.compute.finetune import master_copy, trainable_copy
    from forensics.inputs.loading import load_model

    loaded = load_model(tiny_checkpoints["llama"], dtype="bfloat16")
    batch = encode_answers(loaded.tokenizer, _facts())
    tuned, precision = master_copy(loaded.model)
    assert {p.dtype for p in tuned.parameters()} == {torch.float32} and tuned.cfg.dtype == torch.float32
    with precision():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16  # matmuls in bfloat16
    # an lr whose updates are far below bfloat16's resolution (2^-8 of a weight)
    lr, start = 1e-5, {n: p.detach().float().clone() for n, p in loaded.model.named_parameters()}
    plain = trainable_copy(loaded.model)
    runs = ((tuned, precision), (plain, None))
    for model, ctx in runs:

        def loss(_, m=model, c=ctx):
            if c is None:
                return answer_nll(m, batch, "cpu")
            with c():
                return answer_nll(m, batch, "cpu")

        run_steps(model, list(model.parameters()), loss, 5, lr, fused=True)

    def moved(model) -> float:
        params = dict(model.named_parameters())
        changed = sum(int((params[n].detach().float() != w).sum()) for n, w in start.items() if n.startswith("blocks."))
        return changed / sum(w.numel() for n, w in start.items() if n.startswith("blocks."))

    assert moved(tuned) > 0.5  # the master weights take the small updates
    assert moved(plain) < 0.5 * moved(tuned)  # in bfloat16 most of them round away
    # a float32 model is copied as it is, and its passes run as they are
    same, nothing = master_copy(load_model(tiny_checkpoints["llama"]).model)
    with nothing():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
