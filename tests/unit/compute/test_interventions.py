"""Scoring under interventions from a captured residual stream equals a whole hooked forward pass
per intervention, on every family (steering's sweep relies on it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ARCHS, WORDS

from forensics.compute.capture import layer_hook
from forensics.compute.capture.spec import hook_block
from forensics.compute.scoring import EncodedFacts, logits_fn_for, score_interventions
from forensics.inputs.data import Fact


def _facts() -> list[Fact]:
    return [
        Fact(" ".join(WORDS[k % 7 : k % 7 + 1 + (5 * k) % 9]), " " + WORDS[(3 * k) % len(WORDS)]) for k in range(48)
    ]


def _own_answers(loaded) -> list[Fact]:
    """The facts' prompts with the model's own greedy next token as the answer (when the token
    round-trips through the tokenizer)."""
    tok = loaded.tokenizer
    predicted = EncodedFacts(tok, _facts()).score(logits_fn_for(loaded.model)).predicted
    out = []
    for fact, token in zip(_facts(), predicted):
        answer = tok.decode([int(token)])
        if tok(answer, add_special_tokens=False)["input_ids"] == [int(token)]:
            out.append(Fact(fact.prompt, answer))
    assert len(out) >= 6
    return out


def test_hook_block_reads_a_block_output_hook_name_only():
    assert hook_block(layer_hook(0)) == 0 and hook_block(layer_hook(17)) == 17
    assert hook_block("blocks.3.hook_resid_pre") is None and hook_block("hook_embed") is None


@pytest.mark.parametrize("arch", ARCHS)
def test_interventions_score_as_a_whole_hooked_pass(arch, tiny_checkpoints):
    from forensics.inputs.loading import load_model

    loaded = load_model(tiny_checkpoints[arch])
    model, n = loaded.model, loaded.model.cfg.n_layers
    gen = torch.Generator().manual_seed(0)
    push = {l: 3.0 * torch.randn(model.cfg.d_model, generator=gen) for l in range(n)}

    def add(l):
        return lambda act, hook: act + push[l]

    def ablate(l):
        unit = push[l] / push[l].norm()
        return lambda act, hook: act - (act @ unit)[..., None] * unit

    # first an intervention that writes in place: the captured residual must serve the others intact
    interventions = {f"halve@{l}": [(layer_hook(l), lambda act, hook: act.mul_(0.5))] for l in range(n)}
    interventions |= {f"add@{l}": [(layer_hook(l), add(l))] for l in range(n)}
    interventions |= {f"ablate@{l}": [(layer_hook(l), ablate(l))] for l in range(n)}
    interventions["all"] = [(layer_hook(l), ablate(l)) for l in range(n)]
    interventions["none"] = []
    encoded = EncodedFacts(loaded.tokenizer, _own_answers(loaded), batch_size=5)  # several batches, mixed lengths
    got = score_interventions(model, encoded, interventions)
    expected = {name: encoded.score(logits_fn_for(model, hooks)).correct for name, hooks in interventions.items()}
    for name in interventions:
        assert np.array_equal(got[name], expected[name]), (arch, name)
    # unsteered, the model gives every answer; the interventions change some, so equality is not trivial
    assert expected["none"].all() and len({tuple(v) for v in expected.values()}) > 2
