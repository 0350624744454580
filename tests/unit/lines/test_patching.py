"""Activation patching (forensics.lines.patching.patch) and the patching line on the tiny zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forensics.compute.capture import CaptureSpec, layer_hook, resid_hooks
from forensics.compute.scoring import EncodedFacts, logits_fn_for, score_facts
from forensics.core.errors import ForensicsInputError
from forensics.lines.patching.patch import PatchSource, answer_logprobs, counterfactual_partners


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
    every = capture(o, prompts, CaptureSpec(resid_hooks(o.n_layers), "all"))
    for layer in range(o.n_layers):
        hook = layer_hook(layer)
        same_final = answer_logprobs(o.model, encoded, PatchSource(layer, "final", final[hook]))
        same_prompt = answer_logprobs(o.model, encoded, PatchSource(layer, "prompt", every[hook], every.token_offsets))
        assert np.allclose(same_final, base, atol=1e-4) and np.allclose(same_prompt, base, atol=1e-4)
    # another fact's final state after the last block: O now answers that fact's question
    swapped = answer_logprobs(o.model, encoded, PatchSource(o.n_layers - 1, "final", final[layer_hook(1)].roll(1, 0)))
    assert swapped.mean() < base.mean() - 1.0


def test_a_prompt_patch_must_match_the_prompt_lengths(zoo):
    sets, models = zoo
    o, facts = models["original"], sets["forget"][:4]
    encoded = EncodedFacts(o.tokenizer, facts)
    states, offsets = torch.zeros(3, o.model.cfg.d_model), torch.tensor([0, 1, 2, 3, 3])
    with pytest.raises(ForensicsInputError, match="share the tokenizer"):
        answer_logprobs(o.model, encoded, PatchSource(0, "prompt", states, offsets))


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
