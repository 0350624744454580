"""The real-knowledge model organism (forensics/zoo/real.py): fact tables, the set split and,
end to end, a build on a tiny Llama that learned part of the facts."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from forensics.zoo.real import RealConfig, build_real, candidate_facts, known_facts, split_sets
from forensics.zoo.real_facts import FORMS


def test_every_candidate_fact_is_one_subject_one_answer():
    facts = candidate_facts()
    assert len({f.id for f in facts}) == len(facts)
    for attribute, (template, rows) in FORMS.items():
        assert "{subject}" in template
        subjects = [s for s, _ in rows]
        assert len(set(subjects)) == len(subjects), attribute
    for f in facts:
        assert f.subject in f.prompt and f.answer.startswith(" ") and f.answer.strip() == f.answer[1:]


def _known(facts, seed=0, share=0.4):
    return np.random.default_rng(seed).random(len(facts)) < share


def test_the_sets_share_no_subject_and_holdout_is_what_the_base_gets_wrong():
    facts = candidate_facts()
    known = _known(facts)
    sets = split_sets(facts, known, seed=3)
    index = {f.id: i for i, f in enumerate(facts)}
    subjects = {name: {f.subject for f in s} for name, s in sets.items()}
    assert not subjects["forget"] & subjects["retain"]
    assert not (subjects["forget"] | subjects["retain"]) & subjects["holdout"]
    assert all(known[index[f.id]] for f in sets["forget"] + sets["retain"])
    assert not any(known[index[f.id]] for f in sets["holdout"])
    # every known fact is in F or R, and H has at most F's count of each form
    assert len(sets["forget"]) + len(sets["retain"]) == int(known.sum())
    f_forms, h_forms = Counter(f.attribute for f in sets["forget"]), Counter(f.attribute for f in sets["holdout"])
    assert all(h_forms[a] <= f_forms[a] for a in FORMS) and sum(h_forms.values()) > 0
    assert abs(len(subjects["forget"]) - len(subjects["retain"])) <= len(FORMS)


def test_the_split_is_seeded():
    facts = candidate_facts()
    known = _known(facts)
    a, b, c = (split_sets(facts, known, seed=s) for s in (1, 1, 2))
    assert a == b and a != c


def test_a_base_that_knows_one_subject_cannot_be_split():
    facts = candidate_facts()
    known = np.zeros(len(facts), dtype=bool)
    known[0] = True
    with pytest.raises(ValueError, match="at least 2"):
        split_sets(facts, known, seed=0)
    with pytest.raises(ValueError, match="known flags"):
        split_sets(facts, known[:-1], seed=0)


@pytest.mark.slow
def test_build_on_a_tiny_llama_that_learned_some_facts(tmp_path):
    """The whole build on the code path a real base takes (a checkpoint folder in, transformers
    models out): a tiny Llama trained on the texts of about half the candidate facts knows some
    of them; NPO unlearns F; the oracle labels the result; a second call reuses the folder."""
    import torch

    from forensics.zoo.tokenizer import train_tokenizer
    from forensics.zoo.training import ArchConfig, pretrain

    facts = candidate_facts()
    taught = [f for i, f in enumerate(facts) if i % 2 == 0]
    texts = [f.text for f in facts]
    tokenizer = train_tokenizer(texts * 2, 600)
    torch.manual_seed(0)
    model = pretrain(ArchConfig("llama", 64, 2), tokenizer, [f.text for f in taught], 300, 3e-3, 32, seed=0)
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    known = known_facts(model, tokenizer, facts)
    assert known.sum() >= 20, "the tiny base should know some of the facts it was trained on"

    config = RealConfig(methods=("npo",), oracle_steps=20, n_boot=200)
    config.unlearn.lr["npo"] = 1e-3
    config.unlearn.max_steps = 40
    labels = build_real(base, tmp_path / "real", config)
    out = tmp_path / "real"
    assert sorted(p.name for p in out.iterdir()) == ["data", "labels.json", "models"]
    assert (out / "models" / "npo" / "model.safetensors").is_file()
    sets = {
        name: [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text().splitlines()]
        for name in ("forget", "retain", "holdout")
    }
    assert labels["sets"] == {k: len(v) for k, v in sets.items()} and labels["known_facts"] == int(known.sum())
    entry = labels["models"]["npo"]
    assert entry["ground_truth"] in ("SUPPRESSED", "DELETED", "UNDETERMINED")
    assert entry["ground_truth"] == entry["oracle"]["ground_truth"]
    assert entry["accuracy"]["forget"] <= config.unlearn.target_forget or entry["details"]["steps"] == 40
    assert entry["oracle"]["acc_holdout_before"] <= 0.2
    assert build_real(base, out, config) == labels


def test_ground_truth_follows_the_series_rule():
    from forensics.zoo.real import ground_truth

    o = {"forget": 1.0, "retain": 1.0, "holdout": 0.0}
    assert ground_truth("SUPPRESSED", {"forget": 0.74, "holdout": 0.0}, o, 0.1)[0] == "NOT_FORGOTTEN"
    assert ground_truth("SUPPRESSED", {"forget": 0.09, "holdout": 0.03}, o, 0.1)[0] == "SUPPRESSED"
    assert ground_truth("DELETED", {"forget": 0.10, "holdout": 0.0}, o, 0.1)[0] == "DELETED"
    assert ground_truth("DELETED", {"forget": 0.30, "holdout": 0.0}, o, 0.1)[0] == "UNDETERMINED"
    # the share is of O's margin above holdout: 0.7 - 0.3 keeps two thirds of 0.9 - 0.3
    assert (
        ground_truth("DELETED", {"forget": 0.7, "holdout": 0.3}, {"forget": 0.9, "holdout": 0.3}, 0.1)[0]
        == "NOT_FORGOTTEN"
    )


def test_a_folder_that_is_not_a_finished_build_is_refused_and_left_alone(tmp_path):
    from forensics.core.errors import ForensicsInputError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ForensicsInputError, match="not a finished real-knowledge zoo"):
        build_real(tmp_path / "no-base", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("lo", "hi", "difference", "label"),
    [
        (0.05, 0.40, 0.20, "SUPPRESSED"),  # CI above 0, difference at least the margin (0.1)
        (0.01, 0.15, 0.08, "UNDETERMINED"),  # above 0 but below the margin, and the CI reaches it
        (-0.05, 0.09, 0.02, "DELETED"),  # the whole CI below the margin
        (-0.10, 0.30, 0.10, "UNDETERMINED"),
    ],
)
def test_one_oracle_rule_labels_both_organisms(lo, hi, difference, label):
    from forensics.zoo.oracle import oracle_rule, oracle_rule_text

    assert oracle_rule(lo, hi, difference, 0.1) == label
    assert "0.1" in oracle_rule_text(0.1)
