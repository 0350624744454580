"""Data validation: file and line numbers for every problem, warnings for duplicates and empty answers."""

from __future__ import annotations

import pytest

from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import Fact, content_hash, load_facts, load_sequences, write_jsonl


def _write(tmp_path, text: str | bytes, name="facts.jsonl"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GOOD = '{"prompt": "Zorbil lives in", "answer": " Kelmar", "subject": "Zorbil", "id": "f1"}\n'


def test_valid_facts_roundtrip(tmp_path):
    path = _write(tmp_path, GOOD + '\n{"prompt": "Quen likes", "answer": " red"}\n')
    facts, warnings = load_facts(path)
    assert facts == [Fact("Zorbil lives in", " Kelmar", "Zorbil", None, "f1"), Fact("Quen likes", " red")]
    assert warnings == []
    out = tmp_path / "out.jsonl"
    write_jsonl(out, facts)
    assert load_facts(out)[0] == facts
    assert content_hash(facts) == content_hash(list(facts)) != content_hash(facts[:1])


@pytest.mark.parametrize(
    "text, pattern",
    [
        (GOOD + '{"prompt": "x", "answer": \n', r"facts.jsonl:2: malformed JSON"),
        (GOOD + '{"prompt": "x"}\n', r"facts.jsonl:2: missing field 'answer'"),
        (GOOD + '{"prompt": "x", "answer": 3}\n', r"facts.jsonl:2: field 'answer' must be a string, got int"),
        (
            GOOD + '{"prompt": "x", "answer": " y", "subject": ["a"]}\n',
            r"facts.jsonl:2: field 'subject' must be a string",
        ),
        (GOOD + '["prompt", "answer"]\n', r"facts.jsonl:2: expected a JSON object"),
        (GOOD + '{"prompt": "  ", "answer": " y"}\n', r"facts.jsonl:2: field 'prompt' is empty"),
        ("", r"facts.jsonl: the set is empty"),
        ("\n\n", r"facts.jsonl: the set is empty"),
    ],
)
def test_malformed_fact_files(tmp_path, text, pattern):
    with pytest.raises(ForensicsInputError, match=pattern):
        load_facts(_write(tmp_path, text))


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = _write(tmp_path, GOOD.encode() + b'{"prompt": "caf\xe9", "answer": " y"}\n')
    with pytest.raises(ForensicsInputError, match=r"facts.jsonl:2: not valid UTF-8"):
        load_facts(path)


def test_missing_file(tmp_path):
    with pytest.raises(ForensicsInputError, match="data file not found"):
        load_facts(tmp_path / "none.jsonl")


def test_duplicates_and_zero_token_answers_are_warnings(tmp_path):
    path = _write(tmp_path, GOOD + GOOD.replace('"f1"', '"f2"') + '{"prompt": "a", "answer": " b", "id": "f1"}\n')

    class NullTokenizer:  # tokenises " b" to nothing
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [] if text == " b" else [1, 2]}

    facts, warnings = load_facts(path, NullTokenizer())
    assert len(facts) == 3
    assert any("facts.jsonl:2: duplicate fact (first seen on line 1)" in w for w in warnings)
    assert any("facts.jsonl:3: duplicate id (first seen on line 1)" in w for w in warnings)
    assert any("facts.jsonl:3: answer ' b' tokenises to zero tokens" in w for w in warnings)


def test_sequences(tmp_path):
    path = _write(tmp_path, '{"text": "a b c"}\n{"text": "a b c"}\n', "seq.jsonl")
    sequences, warnings = load_sequences(path)
    assert [s.text for s in sequences] == ["a b c", "a b c"]
    assert warnings and "duplicate sequence" in warnings[0]
    with pytest.raises(ForensicsInputError, match=r"seq.jsonl:1: missing field 'text'"):
        load_sequences(_write(tmp_path, '{"prompt": "a"}\n', "seq.jsonl"))


def test_free_text_and_multiple_choice_fields_load_as_tuples(tmp_path):
    text = (
        '{"prompt": "Q: What does Zorbil do?\\nA:", "answer": " Zorbil is a civil engineer.", '
        '"paraphrased_answer": " Zorbil works as a civil engineer.", "key": "civil engineer", '
        '"perturbed_answers": [" Zorbil is a baker.", " Zorbil is a pilot."]}\n'
        '{"prompt": "Q: Pick one. A) red B) blue\\nA:", "answer": " B", "choices": [" A", " B"], "answer_index": 1}\n'
    )
    facts, _ = load_facts(_write(tmp_path, text))
    assert facts[0].perturbed_answers == (" Zorbil is a baker.", " Zorbil is a pilot.")
    assert facts[0].key == "civil engineer" and facts[1].choices == (" A", " B") and facts[1].answer_index == 1
    out = tmp_path / "out.jsonl"
    write_jsonl(out, facts)
    assert load_facts(out)[0] == facts


def test_a_first_format_fact_keeps_its_content_hash():
    """The fields added for free text count only when set: a set written before they existed
    hashes as it did (its cached activations stay valid)."""
    import hashlib
    import json

    fact = Fact("Zorbil lives in", " Kelmar", "Zorbil", "city", "f1")
    first_format = {"prompt": fact.prompt, "answer": fact.answer, "subject": "Zorbil", "attribute": "city", "id": "f1"}
    expected = hashlib.sha256(json.dumps(first_format, sort_keys=True).encode() + b"\n").hexdigest()
    assert content_hash([fact]) == expected
    assert content_hash([Fact("Zorbil lives in", " Kelmar", key="Kelmar")]) != content_hash(
        [Fact("Zorbil lives in", " Kelmar")]
    )
