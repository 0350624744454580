"""The audit context: lines that need the same activations or answer scores share one
computation per (model, set, request), in memory and through the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import forensics.core.context as context_module
from forensics.compute.capture import CaptureSpec, resid_hooks
from forensics.core.context import AuditContext


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    sets = {s: load_facts(tiny_zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    models = {n: load_model(tiny_zoo / "models" / n) for n in ("original", "npo")}
    return sets, models


def _spy_requests(ctx: AuditContext, monkeypatch) -> tuple[list[tuple], list[tuple]]:
    """Record every capture request made to ``ctx`` and every capture it really runs."""
    requests, computed = [], []

    def key(loaded, prompts, spec, subjects):
        subject_key = tuple(subjects) if spec.position == "subject" and subjects is not None else None
        return id(loaded), tuple(prompts), subject_key, spec.hooks, spec.position

    asked = ctx.capture  # the bound method; capture_facts goes through ctx.capture too

    def capture_request(loaded, prompts, spec, subjects=None, batch_size=64):
        requests.append(key(loaded, prompts, spec, subjects))
        return asked(loaded, prompts, spec, subjects=subjects, batch_size=batch_size)

    real = context_module.capture

    def capture_run(loaded, prompts, spec, subjects=None, batch_size=64, cache_dir=None):
        computed.append(key(loaded, prompts, spec, subjects))
        return real(loaded, prompts, spec, subjects=subjects, batch_size=batch_size, cache_dir=cache_dir)

    monkeypatch.setattr(ctx, "capture", capture_request)
    monkeypatch.setattr(context_module, "capture", capture_run)
    return requests, computed


def test_two_lines_share_the_final_token_residual_stream(zoo, monkeypatch):
    from forensics.lines.cka import CKAConfig, cka_line
    from forensics.lines.logit_lens import LogitLensConfig, logit_lens_line

    sets, models = zoo
    ctx = AuditContext(models["original"], models["npo"], **sets)
    assert ctx.available() == {"original", "unlearned", "forget", "retain", "holdout"}
    requests, computed = _spy_requests(ctx, monkeypatch)
    lens = logit_lens_line(ctx, LogitLensConfig(n_boot=100, n_perm=100))
    assert ctx.counts["activations.computed"] == 4 and ctx.counts["activations.served"] == 0  # O, U x F, H
    cka = cka_line(ctx, CKAConfig(n_boot=10))
    assert lens.status == "descriptive" and cka.status == "descriptive"
    distinct = set(requests)
    assert len(distinct) == 6  # O, U x F, R, H: the same final-token residual-stream request for both lines
    assert ctx.counts["activations.computed"] == len(distinct) == len(computed) == len(set(computed))
    assert ctx.counts["activations.served"] == len(requests) - len(distinct) == 4
    # what a line is served is what was computed for the first one
    spec = CaptureSpec(resid_hooks(models["original"].n_layers), "final")
    first = ctx.capture_facts(models["original"], sets["forget"], spec)
    assert ctx.capture_facts(models["original"], sets["forget"], spec) is first
    assert ctx.counts["activations.computed"] == 6
    # another batch size is the same request; other hooks are not
    ctx.capture_facts(models["original"], sets["forget"], spec, batch_size=7)
    assert ctx.counts["activations.computed"] == 6
    ctx.capture_facts(models["original"], sets["forget"], CaptureSpec(spec.hooks[:1], "final"))
    assert ctx.counts["activations.computed"] == 7


def test_answer_scores_are_computed_once_per_model_and_set(zoo, monkeypatch):
    from forensics.core.pipeline import examples
    from forensics.lines.behaviour import BehaviourConfig, behaviour_line

    sets, models = zoo
    ctx = AuditContext(models["original"], models["npo"], **sets)
    calls = []
    real = context_module.score_facts

    def score_run(logits_fn, tokenizer, facts, *args, **kwargs):
        calls.append(tuple(facts))
        return real(logits_fn, tokenizer, facts, *args, **kwargs)

    monkeypatch.setattr(context_module, "score_facts", score_run)
    evidence = behaviour_line(ctx, BehaviourConfig(n_boot=100, n_perm=100))
    assert evidence.status == "ok"
    assert ctx.counts["fact_scores.computed"] == 6 == len(calls)  # O, U x F, R, H
    served = ctx.counts["fact_scores.served"]  # the gate's exact-match measure reads the same scores
    assert served == 6
    rows = examples(ctx)  # the report's examples: O's and U's greedy next token on F, served
    assert ctx.counts["fact_scores.computed"] == 6 and ctx.counts["fact_scores.served"] == served + 2
    o_forget = ctx.fact_scores(models["original"], sets["forget"])
    assert o_forget.predicted is not None and len(o_forget.predicted) == len(sets["forget"])
    tok = models["original"].tokenizer
    assert len(rows) == 5 and [r["original"] for r in rows] == [tok.decode([int(t)]) for t in o_forget.predicted[:5]]
    assert evidence.details["table"]["original"]["forget"]["accuracy"] == pytest.approx(o_forget.accuracy)
    assert ctx.counts["fact_scores.served"] == served + 3 and len(calls) == 6
    # another fact set is another computation
    ctx.fact_scores(models["npo"], sets["forget"][:3])
    assert ctx.counts["fact_scores.computed"] == 7


def test_a_teacher_forced_measure_is_computed_once_per_model_and_set(zoo):
    from forensics.compute.measures import measure_facts

    sets, models = zoo
    ctx = AuditContext(models["original"], models["npo"], **sets)
    o = models["original"]
    first = ctx.answer_scores(o, sets["holdout"], "token")
    first[:] = -1.0  # a caller's change does not reach the memo
    again = ctx.answer_scores(o, sets["holdout"], "token")
    assert ctx.counts["answer_scores.computed"] == 1 and ctx.counts["answer_scores.served"] == 1
    np.testing.assert_allclose(again, measure_facts("token", o.model, o.tokenizer, sets["holdout"], o.device))
    ctx.answer_scores(o, sets["forget"], "token")
    ctx.answer_scores(models["npo"], sets["holdout"], "token")
    assert ctx.counts["answer_scores.computed"] == 3


def test_a_new_context_with_the_same_cache_folder_reads_activations_from_disk(zoo, tmp_path, monkeypatch):
    sets, models = zoo
    original = models["original"]
    spec = CaptureSpec(resid_hooks(original.n_layers), "final")
    first = AuditContext(original, models["npo"], **sets, cache_dir=tmp_path)
    acts = first.capture_facts(original, sets["forget"], spec)
    assert not acts.from_cache and (tmp_path / "activations").is_dir()

    def boom(*args, **kwargs):
        raise AssertionError("the model was run although its activations are on disk")

    second = AuditContext(original, models["npo"], **sets, cache_dir=tmp_path)
    monkeypatch.setattr(original.model, "forward", boom)
    again = second.capture_facts(original, sets["forget"], spec)
    assert again.from_cache and second.counts["activations.computed"] == 1
    for hook in spec.hooks:
        assert torch.equal(again[hook], acts[hook])
