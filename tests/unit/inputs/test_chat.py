"""Chat templates: every fact prompt rendered with the checkpoint's own template, one BOS, and the
template recorded in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import WORDS, bos_tokenizer, make_checkpoint

from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import Fact


@pytest.fixture(scope="module")
def chat_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    tok = bos_tokenizer()
    return (
        make_checkpoint(root / "o", "llama", seed=0, tokenizer=tok),
        make_checkpoint(root / "u", "llama", seed=1, tokenizer=tok),
    )


def _facts(offset: int, n: int = 24) -> list[Fact]:
    return [
        Fact(
            f"{WORDS[(offset + k) % len(WORDS)]} {WORDS[(offset + 2 * k) % len(WORDS)]} saw the",
            " " + WORDS[(k * 5 + offset) % len(WORDS)],
            subject=WORDS[(offset + k) % len(WORDS)],
            id=f"f{offset}-{k}",
        )
        for k in range(n)
    ]


def test_rendered_prompt_tokenises_as_transformers_chat_path_with_one_bos(chat_pair):
    from forensics.compute.scoring import encode_prompt
    from forensics.inputs.chat import render_prompt
    from forensics.inputs.loading import load_tokenizer

    tok = load_tokenizer(chat_pair[0])
    text = render_prompt(tok, "the quick brown fox")
    assert text == "[INST] the quick brown fox [/INST]"  # the template's BOS text dropped: the tokenizer adds it
    expected = tok.apply_chat_template(
        [{"role": "user", "content": "the quick brown fox"}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    assert encode_prompt(tok, text) == list(expected)
    assert encode_prompt(tok, text).count(tok.bos_token_id) == 1


def test_audit_scores_templated_prompts_and_records_the_template(chat_pair, tmp_path):
    from forensics.core.pipeline import audit
    from forensics.inputs.loading import load_hf_model, load_tokenizer

    forget, retain, holdout = _facts(0), _facts(3), _facts(6)
    result = audit(
        chat_pair[0],
        chat_pair[1],
        forget,
        retain,
        holdout,
        profile="quick",
        lines=["behaviour"],
        progress=False,
        out=tmp_path / "r",
        pdf=False,
        chat_template=True,
    )
    run = json.loads((tmp_path / "r" / "results.json").read_text())["run"]
    assert run["chat_template"]["example"] == "[INST] {prompt} [/INST]"
    assert run["chat_template"]["source"] == str(chat_pair[0])
    assert "[INST] {prompt} [/INST]" in (tmp_path / "r" / "report.html").read_text()
    # O's forget log-probs equal transformers' on its own chat path: template ids, then the answer
    tok, hf = load_tokenizer(chat_pair[0]), load_hf_model(chat_pair[0])
    total = []
    for f in forget:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": f.prompt}], tokenize=True, add_generation_prompt=True, return_dict=False
        )
        answer = tok(f.answer, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(hf(torch.tensor([list(prompt) + answer])).logits[0].float(), -1)
        total.append(sum(float(lp[len(prompt) - 1 + j, a]) for j, a in enumerate(answer)))
    assert result.behaviour["original"]["forget"]["mean_logprob"] == pytest.approx(np.mean(total), abs=1e-4)


def test_no_template_and_a_differing_template(tmp_path, chat_pair):
    from forensics.inputs.prepare import load_inputs

    plain = make_checkpoint(tmp_path / "plain", "llama", tokenizer=bos_tokenizer(template=None))
    with pytest.raises(ForensicsInputError, match="has no chat template"):
        load_inputs(plain, forget=_facts(0), chat_template=True)
    other = make_checkpoint(
        tmp_path / "other",
        "llama",
        seed=1,
        tokenizer=bos_tokenizer("{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"),
    )
    inputs = load_inputs(chat_pair[0], other, forget=_facts(0), chat_template=True)
    assert inputs.forget[0].prompt.startswith("[INST] ")  # the original's template for both
    assert any("chat template differs" in w for w in inputs.warnings)
    assert load_inputs(chat_pair[0], forget=_facts(0)).forget[0].prompt == _facts(0)[0].prompt  # off by default
