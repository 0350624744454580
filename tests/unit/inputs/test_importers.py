"""`forensics data import`: TOFU-, WMDP- and JSONL-shaped files into fact sets."""

from __future__ import annotations

import json

import pytest

from forensics.cli import main
from forensics.core.errors import ForensicsInputError
from forensics.inputs.importers import import_facts

TOFU = [
    {
        "question": "What is the profession of Basil Mahfouz's father?",
        "answer": "His father is a civil engineer.",
        "paraphrased_answer": "Basil Mahfouz's father works as a civil engineer.",
        "perturbed_answer": ["His father is a baker.", "His father is a pilot.", "His father is a civil engineer."],
        "author": "Basil Mahfouz",
    },
    {
        "question": "Where was Basil Mahfouz born?",
        "answer": "Basil Mahfouz was born in Cairo.",
        "perturbed_answer": "Basil Mahfouz was born in Lima.",
        "author": "Basil Mahfouz",
    },
]


def test_tofu_records_become_free_text_facts(tmp_path):
    source = tmp_path / "forget10_perturbed.json"
    source.write_text(json.dumps(TOFU))
    target, facts = import_facts(source, tmp_path / "sets", "tofu", subject_field="author")
    assert target == tmp_path / "sets" / "forget10_perturbed.jsonl"
    first = facts[0]
    assert first.prompt == "Question: What is the profession of Basil Mahfouz's father?\nAnswer:"
    assert first.answer == " His father is a civil engineer." and first.subject == "Basil Mahfouz"
    # a perturbed answer equal to the true one is dropped, a single string becomes a list
    assert first.perturbed_answers == (" His father is a baker.", " His father is a pilot.")
    assert facts[1].perturbed_answers == (" Basil Mahfouz was born in Lima.",) and facts[1].paraphrased_answer is None
    assert [f.id for f in facts] == ["forget10_perturbed-00000", "forget10_perturbed-00001"]


def test_wmdp_records_become_lettered_multiple_choice(tmp_path):
    source = tmp_path / "bio.jsonl"
    source.write_text(
        json.dumps({"question": "Which is a virus?", "choices": ["E. coli", "Influenza", "Yeast"], "answer": 1}) + "\n"
    )
    _, (fact,) = import_facts(source, tmp_path / "sets", "wmdp")
    assert fact.prompt == "Question: Which is a virus?\nA. E. coli\nB. Influenza\nC. Yeast\nAnswer:"
    assert fact.answer == " B" and fact.choices == (" A", " B", " C") and fact.answer_index == 1


def test_jsonl_keeps_the_suites_fields_and_fills_questions(tmp_path):
    source = tmp_path / "mine.jsonl"
    source.write_text(json.dumps({"question": "Who wrote it?", "answer": " Ann", "key": "Ann", "extra": 1}) + "\n")
    _, (fact,) = import_facts(source, tmp_path / "sets", "jsonl", prompt_template="Q: {question}\nA:")
    assert fact.prompt == "Q: Who wrote it?\nA:" and fact.key == "Ann"


@pytest.mark.parametrize(
    "fmt, record, pattern",
    [
        ("tofu", {"question": "Q?"}, "'answer' must be a non-empty string"),
        ("tofu", {"question": "Q?", "answer": "A.", "perturbed_answer": [1]}, "list of strings"),
        ("wmdp", {"question": "Q?", "choices": ["a", "b"], "answer": 2}, "index of the correct choice"),
        ("wmdp", {"question": "Q?", "choices": [], "answer": 0}, "non-empty list"),
        ("jsonl", {"prompt": "P", "answer": " A", "key": "B"}, "does not occur in the answer"),
    ],
)
def test_bad_records_are_one_line_errors_and_write_nothing(tmp_path, fmt, record, pattern):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(record) + "\n")
    with pytest.raises(ForensicsInputError, match=pattern):
        import_facts(source, tmp_path / "sets", fmt)
    assert not (tmp_path / "sets").exists()


def test_the_command_refuses_to_overwrite_and_needs_the_placeholder(tmp_path, capsys):
    source = tmp_path / "f.json"
    source.write_text(json.dumps(TOFU))
    assert main(["data", "import", "--format", "tofu", str(source), "--out", str(tmp_path / "o")]) == 0
    assert "2 facts written" in capsys.readouterr().out
    assert main(["data", "import", "--format", "tofu", str(source), "--out", str(tmp_path / "o")]) == 2
    assert "exists" in capsys.readouterr().err
    code = main(
        ["data", "import", "--format", "tofu", str(source), "--out", str(tmp_path / "p"), "--prompt-template", "Q:"]
    )
    assert code == 2 and "{question}" in capsys.readouterr().err
