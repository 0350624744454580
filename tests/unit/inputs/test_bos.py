"""A prompt already rendered with the BOS text (a chat template) under a tokenizer that adds
BOS itself: one BOS is fed, scores and captures equal those of the plain prompt, and the
inputs say so."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bos_checkpoint(tmp_path_factory):
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    from tests.conftest import make_checkpoint, train_test_tokenizer

    base = train_test_tokenizer()
    raw = Tokenizer.from_str(base.backend_tokenizer.to_str())
    raw.add_special_tokens(["<s>"])
    bos = raw.token_to_id("<s>")
    raw.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )
    folder = make_checkpoint(tmp_path_factory.mktemp("bos") / "llama", "llama", tokenizer=tokenizer)
    return folder


def test_one_bos_is_fed_and_scores_match_the_plain_prompt(bos_checkpoint):
    from forensics.compute.capture import CaptureSpec, resid_hooks
    from forensics.compute.scoring import doubled_bos, encode_prompt
    from forensics.core.context import AuditContext
    from forensics.inputs.data import Fact
    from forensics.inputs.loading import load_model

    loaded = load_model(bos_checkpoint)
    tok = loaded.tokenizer
    plain = Fact(prompt="the quick brown fox", answer=" jumps", subject="quick brown")
    rendered = Fact(prompt="<s>the quick brown fox", answer=" jumps", subject="quick brown")
    raw_ids = tok(rendered.prompt)["input_ids"]
    assert doubled_bos(tok, raw_ids), raw_ids[:3]  # the situation: two BOS without the guard
    assert encode_prompt(tok, rendered.prompt) == tok(plain.prompt)["input_ids"]
    assert encode_prompt(tok, plain.prompt)[0] == tok.bos_token_id  # a plain prompt keeps its one BOS

    ctx = AuditContext(loaded, loaded, [plain], [plain])
    a, b = ctx.fact_scores(loaded, [plain]), ctx.fact_scores(loaded, [rendered])
    assert a.logprob[0] == pytest.approx(b.logprob[0], abs=1e-6) and a.correct[0] == b.correct[0]
    for position in ("final", "subject"):
        spec = CaptureSpec(resid_hooks(loaded.n_layers), position)
        x, y = ctx.capture_facts(loaded, [plain], spec), ctx.capture_facts(loaded, [rendered], spec)
        assert x.positions.tolist() == y.positions.tolist()
        for hook in spec.hooks:
            assert (x[hook] - y[hook]).abs().max() < 1e-5


def test_the_inputs_warn_about_a_doubled_bos(bos_checkpoint, tmp_path):
    import json

    from forensics.inputs.prepare import load_inputs

    rows = [
        {"prompt": f"<s>the quick brown fox {w}", "answer": " jumps", "subject": w} for w in ("over", "while", "above")
    ]
    path = tmp_path / "forget.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    inputs = load_inputs(bos_checkpoint, forget=path)
    assert any(
        w.startswith("forget set: 3 prompts start with the BOS text '<s>'") and "one BOS is used" in w
        for w in inputs.warnings
    ), inputs.warnings
