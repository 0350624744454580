"""Keys derived from the answer when the data give none (forensics/inputs/keys.py): the span of
words the question does not contain, applied to every set alike, recorded, and off on request."""

from __future__ import annotations

import pytest
from conftest import bos_tokenizer, make_checkpoint

from forensics.inputs.data import Fact
from forensics.inputs.keys import derive_key, derive_keys, needs_keys


@pytest.mark.parametrize(
    ("question", "answer", "key"),
    [
        ("Question: Where was Luke Sar born?\nAnswer:", " Luke Sar was born in Lake Penvar.", "in Lake Penvar"),
        (
            "Question: What is the job of Luke Sar?\nAnswer:",
            " Luke Sar works as a marine biologist.",
            "works as a marine biologist",
        ),
        # TOFU forget10's first question: the frame repeats the question, the name is new
        (
            "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?",
            "The author born in Kuwait City, Kuwait on 08/09/1956 is named Basil Mahfouz Al-Kuwaiti.",
            "named Basil Mahfouz Al-Kuwaiti",
        ),
        ("Is Paris in France?", " Paris is in France.", None),  # adds nothing: no key
    ],
)
def test_the_key_is_the_span_of_words_the_question_does_not_contain(question, answer, key):
    assert derive_key(question, answer) == key
    if key:
        assert key in answer


def test_keys_are_derived_only_for_sentence_answers_without_any_key():
    sentence = Fact("Question: Where was Ana Bel born?\nAnswer:", " Ana Bel was born in Port Lune.", subject="Ana Bel")
    word = Fact("Ana Bel lives in", " Lune", subject="Ana Bel")
    assert needs_keys({"forget": [sentence] * 3, "holdout": [sentence]})
    assert not needs_keys({"forget": [word] * 3})  # closed vocabulary: the answer is the key already
    keyed = Fact(sentence.prompt, sentence.answer, subject="Ana Bel", key="Port Lune")
    assert not needs_keys({"forget": [sentence] * 3, "holdout": [keyed]})  # the data's own keys win
    facts, n = derive_keys([sentence, Fact("Is Ana Bel Ana Bel?", " Ana Bel is Ana Bel.")])
    assert n == 1 and facts[0].key == "in Port Lune" and facts[1].key is None


def test_an_audit_without_keys_derives_them_before_the_chat_template_and_records_how_many(tmp_path):
    from forensics.inputs.prepare import load_inputs

    model = make_checkpoint(tmp_path / "o", "llama", tokenizer=bos_tokenizer())
    names = ["Ana Bel", "Cor Dun", "Eli Fay", "Gus Hal"]
    forget = [
        Fact(f"Question: Where was {n} born?\nAnswer:", f" {n} was born in Port Lune.", subject=n, id=f"f{i}")
        for i, n in enumerate(names)
    ]
    holdout = [Fact(f"Question: Where was {n} born?\nAnswer:", f" {n} was born in Hill.", subject=n) for n in "WXYZ"]
    inputs = load_inputs(model, forget=forget, holdout=holdout, chat_template=True)
    assert [f.key for f in inputs.forget] == ["in Port Lune"] * 4  # not the template's words
    assert inputs.forget[0].prompt.startswith("[INST] ")
    assert inputs.records["forget"]["derived_keys"] == 4 and inputs.records["holdout"]["derived_keys"] == 4
    assert any("the question does not contain" in w for w in inputs.warnings)
    off = load_inputs(model, forget=forget, holdout=holdout, derived_keys=False)
    assert all(f.key is None for f in off.forget) and "derived_keys" not in off.records["forget"]
