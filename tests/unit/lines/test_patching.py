"""Activation patching (forensics.lines.patching.patch) and the patching line on the tiny zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forensics.compute.capture import CaptureSpec, layer_hook, resid_hooks
from forensics.compute.scoring import EncodedFacts, logits_fn_for, score_facts
from forensics.lines.patching.patch import (
    PatchSource,
    answer_logprobs,
    counterfactual_partners,
    key_position_drops,
    patched_answer_logprobs,
)


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    sets = {s: load_facts(tiny_zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    models = {name: load_model(tiny_zoo / "models" / name) for name in ("original", "retrain", "idk", "rmu")}
    return sets, models


def test_patching_a_model_with_its_own_states_changes_nothing(zoo):
    from forensics.compute.capture import capture

    sets, models = zoo
    o, facts = models["original"], sets["forget"][:20]
    encoded = EncodedFacts(o.tokenizer, facts, batch_size=7)
    base = answer_logprobs(o.model, encoded)
    expected = score_facts(logits_fn_for(o.model), o.tokenizer, facts).logprob
    assert np.allclose(base, expected, atol=1e-4)
    prompts = [f.prompt for f in facts]
    final = capture(o, prompts, CaptureSpec(resid_hooks(o.n_layers), "final"))
    for layer in range(o.n_layers):
        same_final = answer_logprobs(o.model, encoded, PatchSource(layer, "final", final[layer_hook(layer)]))
        assert np.allclose(same_final, base, atol=1e-4)
    # the published UDS's patch at the key positions, O's own states: no drop at any block
    mean_base, drops = key_position_drops(o.model, [o.model], encoded)
    lengths = np.array([len(o.tokenizer(f.answer, add_special_tokens=False)["input_ids"]) for f in facts])
    assert np.allclose(mean_base * lengths, base, atol=1e-4)  # a mean per key token
    assert drops.shape == (1, o.n_layers, len(facts)) and np.abs(drops).max() < 1e-4
    # another fact's final state after the last block: O now answers that fact's question
    swapped = answer_logprobs(o.model, encoded, PatchSource(o.n_layers - 1, "final", final[layer_hook(1)].roll(1, 0)))
    assert swapped.mean() < base.mean() - 1.0


def test_patches_from_a_captured_residual_equal_whole_patched_passes(zoo):
    from forensics.compute.capture import capture

    sets, models = zoo
    o, u, facts = models["original"], models["rmu"], sets["forget"][:20]
    encoded = EncodedFacts(o.tokenizer, facts, batch_size=7)
    final = capture(u, [f.prompt for f in facts], CaptureSpec(resid_hooks(u.n_layers), "final"))
    sources = [PatchSource(l, "final", final[layer_hook(l)]) for l in range(o.n_layers)]
    sources.append(PatchSource(0, "final", final[layer_hook(o.n_layers - 1)].roll(1, 0)))  # another fact's state
    got = patched_answer_logprobs(o.model, encoded, sources)
    expected = np.stack([answer_logprobs(o.model, encoded, s) for s in sources])
    assert got.shape == (len(sources), len(facts))
    assert np.array_equal(got, expected)
    assert np.abs(expected - answer_logprobs(o.model, encoded)).max() > 1.0  # the patches matter


def test_key_position_patch_moves_only_the_key_tokens(zoo):
    """Another model's states at the key positions move O's key log-prob; O's own leave it."""
    from dataclasses import replace

    from forensics.lines.patching.patch import key_token_masks

    sets, models = zoo
    o, other = models["original"], models["retrain"]
    facts = sets["forget"][:16]
    encoded = EncodedFacts(o.tokenizer, facts)
    _, drops = key_position_drops(o.model, [other.model], encoded)
    assert drops[0, -1].mean() > 0.5  # retrain's last-block states do not carry F's answers
    # a two-word answer whose key is its second word (another fact's answer): one key token, the last
    pairs = [(f, g) for f, g in zip(facts, facts[1:] + facts[:1]) if f.answer != g.answer]
    keyed = [replace(f, answer=f.answer + g.answer, key=g.answer.strip()) for f, g in pairs]
    masks = key_token_masks(o.tokenizer, keyed)
    assert all(sum(m) == 1 and m[-1] for m in masks) and len(keyed) >= 4
    encoded = EncodedFacts(o.tokenizer, keyed)
    base, drops = key_position_drops(o.model, [o.model, other.model], encoded, masks)
    assert np.isfinite(base).all() and drops.shape == (2, o.n_layers, len(keyed))
    assert np.abs(drops[0]).max() < 1e-4 and np.abs(drops[1]).max() > 1e-3


def test_uds_clips_each_block_before_the_weighted_sum():
    from forensics.lines.patching.line import uds_per_fact

    d1 = np.array([[0.5, 0.0], [0.01, 0.02], [1.0, 0.03]])  # blocks x facts
    d2 = np.array([[1.0, 0.0], [5.0, 0.0], [0.5, 0.0]])
    uds = uds_per_fact(d1, d2, threshold=0.05)
    # fact 0: blocks 0 and 2 hold; ratios clip(2) = 1 and 0.5, weighted by d1: (0.5 + 0.5) / 1.5
    assert uds[0] == pytest.approx(2 / 3)
    assert np.isnan(uds[1])  # no block where the reference's patch drops O's score
    # clipping the ratio of sums instead would have given 1.0 for fact 0
    assert min(1.0, (d2[[0, 2], 0]).sum() / d1[[0, 2], 0].sum()) == 1.0


def test_counterfactual_partners_differ_in_subject_and_answer_and_keep_the_attribute():
    answers = [" a", " b", " a", " c", " e", " d"]
    groups = ["s1", "s1", "s2", "s2", "s3", "s3"]
    strata = ["city", "job", "city", "city", "job", None]
    partners = counterfactual_partners(answers, groups, strata, seed=0)
    for i, j in enumerate(partners):
        assert j >= 0 and answers[j] != answers[i] and groups[j] != groups[i]
    assert strata[partners[0]] == "city" and strata[partners[1]] == "job"
    assert list(counterfactual_partners([" a", " a"], ["s1", "s2"], [None, None], 0)) == [-1, -1]


def test_patching_line_finds_suppression_and_not_retraining(zoo):
    from forensics.core.context import AuditContext
    from forensics.lines.patching.line import PatchingConfig, patching_line

    sets, models = zoo
    config = PatchingConfig(n_boot=500, n_perm=500)
    results = {
        name: patching_line(AuditContext(original=models["original"], unlearned=models[name], **sets), config)
        for name in ("retrain", "idk", "rmu")
    }
    assert results["retrain"].vote is None, results["retrain"].reason
    for name in ("idk", "rmu"):
        assert results[name].vote == "suppressed", (name, results[name].reason)
        assert 0 < results[name].details["kept_share"] <= 1.5
    assert results["idk"].figures["patching"].startswith(b"\x89PNG")
    assert "uds" not in results["idk"].details
    json.dumps(results["idk"].to_json())


def test_published_uds_is_one_for_the_reference_and_zero_for_the_original(zoo):
    from forensics.core.context import AuditContext
    from forensics.lines.patching.line import PatchingConfig, patching_line

    sets, models = zoo
    config = PatchingConfig(n_boot=100, n_perm=50)
    as_reference = patching_line(
        AuditContext(original=models["original"], unlearned=models["retrain"], reference=models["retrain"], **sets),
        config,
    ).details["uds"]
    assert as_reference["uds"] == pytest.approx(1.0) and as_reference["facts_scored"] > 0
    unchanged = patching_line(
        AuditContext(original=models["original"], unlearned=models["original"], reference=models["retrain"], **sets),
        config,
    ).details["uds"]
    assert unchanged["uds"] == pytest.approx(0.0, abs=1e-6)
    assert unchanged["published_meta_evaluation"] == {"faithfulness": 0.971, "robustness": 0.933}


def test_key_tokens_are_the_answer_tokens_that_overlap_the_key_span(zoo):
    from dataclasses import replace

    from forensics.lines.patching.patch import key_token_masks

    sets, models = zoo
    o = models["original"]
    fact = replace(sets["forget"][0], answer=" lives in Kelmar now", key="Kelmar")
    (mask,) = key_token_masks(o.tokenizer, [fact])
    ids = o.tokenizer(fact.answer, add_special_tokens=False)["input_ids"]
    assert len(mask) == len(ids) and 0 < sum(mask) < len(mask)
    assert "Kelmar" in o.tokenizer.decode([t for t, m in zip(ids, mask) if m]).replace(" ", "")
    # a key equal to the whole answer is the same as no key
    whole = [replace(f, key=f.answer.strip()) for f in sets["forget"][:12]]
    encoded = EncodedFacts(o.tokenizer, whole)
    assert np.allclose(
        answer_logprobs(o.model, encoded, key_masks=key_token_masks(o.tokenizer, whole)),
        answer_logprobs(o.model, encoded),
    )
    # a key that is part of the answer scores fewer tokens: a log-prob at least the whole answer's
    partial = [fact, replace(sets["forget"][1], answer=" lives in Kelmar now", key="now")]
    encoded = EncodedFacts(o.tokenizer, partial)
    keyed = answer_logprobs(o.model, encoded, key_masks=key_token_masks(o.tokenizer, partial))
    assert np.all(keyed >= answer_logprobs(o.model, encoded) - 1e-9)


def test_patching_without_counterfactuals_is_not_run(zoo):
    from dataclasses import replace

    from forensics.core.context import AuditContext
    from forensics.lines.patching.line import PatchingConfig, patching_line

    sets, models = zoo
    same = [replace(f, answer=" Kelmar") for f in sets["holdout"]]
    result = patching_line(
        AuditContext(original=models["original"], unlearned=models["idk"], **(sets | {"holdout": same})),
        PatchingConfig(n_boot=50, n_perm=20),
    )
    assert result.status == "not_run" and "holdout set" in result.reason


def test_a_layer_budget_patches_only_its_blocks(zoo, monkeypatch):
    """Under a layer budget the table has a row per patched block, named in ``details.blocks``,
    and the decision layers are block numbers among them (here only the last block is patched,
    which is never a decision layer)."""
    from forensics.core.context import AuditContext
    from forensics.lines.patching import line

    sets, models = zoo
    last = models["original"].n_layers - 1
    monkeypatch.setattr(line, "patched_blocks", lambda n_layers, config: [last])
    result = line.patching_line(
        AuditContext(original=models["original"], unlearned=models["idk"], **sets),
        line.PatchingConfig(n_boot=50, n_perm=20),
    )
    assert result.details["blocks"] == [last]
    assert len(result.details["table"]["forget"]["carried"]) == 1
    assert result.details["decision_layers"] == [] and result.vote is None
