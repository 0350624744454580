"""The free-text bio world: its data, its zoo's ground truth, and a TOFU-shaped audit of it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from forensics.zoo import bio as B
from forensics.zoo import world as W


@pytest.fixture(scope="module")
def world():
    return B.make_bio_world(6, 12, 6, 4, seed=3)


def test_bio_facts_are_free_text_records_the_loader_accepts(world, tmp_path):
    from forensics.inputs.data import load_facts

    W.write_data(world, tmp_path)
    for split, n in (("forget", 6), ("retain", 12), ("holdout", 6)):
        facts, warnings = load_facts(tmp_path / f"{split}.jsonl")
        assert len(facts) == n * len(B.FORMS) and not warnings
        for f in facts:
            assert f.attribute is None and f.subject in f.prompt and f.prompt.startswith("Question: ")
            assert f.key in f.answer and f.key in f.paraphrased_answer and f.paraphrased_answer != f.answer
            assert len(f.perturbed_answers) == B.N_PERTURBED
            assert all(f.key not in p for p in f.perturbed_answers)
            # TOFU's convention: the perturbed answers are the paraphrase with another value
            frame = f.paraphrased_answer.replace(f.key, "{v}")
            assert all(p.startswith(frame.split("{v}")[0]) for p in f.perturbed_answers)


def test_bio_values_are_balanced_within_each_split_and_the_world_is_seeded(world):
    for split in ("forget", "retain", "holdout"):
        for form in B.FORMS:
            counts = Counter(world.values[s][form] for s in world.subjects[split])
            assert max(counts.values()) - min(counts.values()) <= 1 or len(counts) == len(world.subjects[split])
    again = B.make_bio_world(6, 12, 6, 4, seed=3)
    assert again.facts("forget") == world.facts("forget")
    assert B.make_bio_world(6, 12, 6, 4, seed=4).facts("forget") != world.facts("forget")


def test_bio_training_text_has_both_wordings_and_never_holdout(world):
    texts = W.training_texts(world, include_forget=True, memprobe_repeats=1)
    fact = world.facts("forget")[0]
    assert fact["prompt"] + fact["answer"] in texts and fact["paraphrased_answer"].strip() in texts
    assert not any(s in t for s in world.subjects["holdout"] for t in texts)
    retrain = W.training_texts(world, include_forget=False, memprobe_repeats=1)
    assert not any(s in t for s in world.subjects["forget"] for t in retrain)


def test_bio_mention_texts_name_forget_authors_without_their_values(world, monkeypatch):
    texts = W.mention_texts(world)
    assert all(any(s in t for t in texts) for s in world.subjects["forget"])
    values = {v.lower() for v in world.answer_values()}
    assert not any(v in t.lower() for v in values if " " in v for t in texts)
    monkeypatch.setattr(B, "BIO_CONTINUATIONS", (" The Salt Road, they say.",))
    with pytest.raises(RuntimeError, match="attribute value"):
        W.mention_texts(world)


def test_answer_measure_follows_the_data():
    from dataclasses import replace

    from forensics.compute.measures import measure_for, rouge_targets
    from forensics.inputs.data import Fact

    plain = Fact(prompt="Q", answer=" a", subject="s")
    keyed = replace(plain, answer=" Zo is a civil engineer.", key="civil engineer")
    mc = replace(plain, choices=(" a", " b"), answer_index=0)
    assert measure_for([plain]) == "exact" and measure_for([plain, keyed]) == "rouge"
    assert measure_for([mc, mc]) == "choice" and measure_for([mc, plain]) == "rouge"
    assert measure_for([plain], "rouge") == "rouge"
    assert rouge_targets([keyed, plain]) == ["civil engineer", " a"]
    with pytest.raises(ValueError, match="unknown answer measure"):
        measure_for([plain], "bleu")


def test_read_outs_of_the_answer_look_at_the_key_after_its_frame():
    from forensics.compute.measures import key_facts, key_reading
    from forensics.inputs.data import Fact

    keyed = Fact(
        prompt="Question: What does Zo do?\nAnswer:",
        answer=" Zo works as a civil engineer.",
        key="civil engineer",
        subject="Zo",
    )
    plain = Fact(prompt="Zo lives in", answer=" Kelmar", subject="Zo")
    assert key_reading(keyed) == ("Question: What does Zo do?\nAnswer: Zo works as a", " civil engineer")
    assert key_reading(plain) == (plain.prompt, plain.answer)
    moved = key_facts([keyed, plain])
    assert moved[1] is plain and moved[0].answer == " civil engineer" and moved[0].subject == "Zo"
    assert moved[0].prompt + moved[0].answer in keyed.prompt + keyed.answer


@pytest.mark.slow
def test_bio_zoo_labels_come_from_the_free_text_oracle(bio_zoo: Path):
    from forensics.zoo import read_manifest

    manifest = read_manifest(bio_zoo)
    assert manifest["world"] == "bio" and manifest["config"]["oracle"]["free_text"]
    labels, metrics = manifest["labels"], manifest["metrics"]["models"]
    assert labels["retrain"]["ground_truth"] == "DELETED"
    for name in ("original", "llama_original"):
        assert metrics[name]["forget"]["accuracy"] >= 0.95 and metrics[name]["retain"]["accuracy"] >= 0.95
    oracle = labels["rmu"]["oracle"]
    assert oracle["measure"] == "ROUGE-L recall of the key span in the greedy generation"
    # the labels follow the oracle's rule on its own numbers
    for name, label in labels.items():
        o = label.get("oracle") or {}
        if "ci95" in o and name != "relearned":
            expected = (
                "SUPPRESSED"
                if o["ci95"][0] > 0 and o["difference"] >= 0.10
                else "DELETED"
                if o["ci95"][1] < 0.10
                else "UNDETERMINED"
            )
            assert label["ground_truth"] == expected, name
    assert {label["ground_truth"] for label in labels.values()} >= {"DELETED", "SUPPRESSED", "NOT_FORGOTTEN"}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rmu", "retrain"])
def test_a_tofu_shaped_audit_of_the_bio_zoo(bio_zoo: Path, tmp_path, model):
    """Free text, perturbed answers, holdout authors, standard profile: at least three controlled
    lines can vote, the gate reads ROUGE-L, and the verdict matches the oracle's label."""
    from forensics import audit
    from forensics.core.registry import LINES

    labels = json.loads((bio_zoo / "labels.json").read_text())
    data = bio_zoo / "data"
    out = tmp_path / model
    audit(
        bio_zoo / "models" / "original",
        bio_zoo / "models" / model,
        forget=data / "forget.jsonl",
        retain=data / "retain.jsonl",
        holdout=data / "holdout.jsonl",
        out=out,
        progress=False,
        pdf=False,
        seed=0,
    )
    results = json.loads((out / "results.json").read_text())
    evidence = {e["line"]: e for e in results["evidence"]}
    assert evidence["behaviour"]["details"]["gate_measure"] == "ROUGE-L recall of greedy generations"
    voters = [
        name
        for name, e in evidence.items()
        if name != "behaviour" and e["status"] == "ok" and set(LINES[name].votes) & {"deleted", "suppressed"}
    ]
    assert len(voters) >= 3, voters
    expected = {"SUPPRESSED": "SUPPRESSED", "DELETED": "DELETED"}[labels[model]["ground_truth"]]
    assert results["verdict"]["label"] == expected


@pytest.mark.slow
def test_the_key_choice_measure_sits_at_chance_for_a_model_that_never_saw_f(bio_zoo: Path):
    """Key choice accuracy (forensics/compute/measures.py): the original ranks F's keys first; a
    model retrained without F ranks them like H's, near one over the number of choices."""
    from forensics.compute.measures import key_choice_facts, measure_facts
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    scores, chance, n = {}, {}, {}
    for name in ("original", "retrain"):
        m = load_model(bio_zoo / "models" / name)
        sets = {s: load_facts(bio_zoo / "data" / f"{s}.jsonl", m.tokenizer)[0] for s in ("forget", "retain", "holdout")}
        for s in ("forget", "holdout"):
            mc = key_choice_facts(sets[s], sets["retain"])
            assert all(f is not None for f in mc)
            chance[s] = float(np.mean([1 / len(f.choices) for f in mc]))
            n[s] = len(mc)
            scores[name, s] = float(measure_facts("key_choice", m.model, m.tokenizer, mc).mean())
    assert scores["original", "forget"] - scores["original", "holdout"] > 0.5
    p = chance["forget"]
    sd = (p * (1 - p) / n["forget"]) ** 0.5  # binomial; the zoo's values are balanced per split
    assert abs(scores["retrain", "forget"] - p) < 4 * sd, (scores, p)


@pytest.mark.slow
def test_the_relearning_attack_reads_key_choice_on_f_b_and_h_b_and_refuses_keyless_data(bio_zoo: Path):
    """``--set relearning_attack.measure=key_choice``: U's F_b and H_b, and the positive control's
    F_b, are scored as the key against other values of its question form; keyless data cannot be."""
    from dataclasses import replace

    from forensics.core.context import AuditContext
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model
    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    o, u = (load_model(bio_zoo / "models" / n) for n in ("original", "retrain"))
    sets = {s: load_facts(bio_zoo / "data" / f"{s}.jsonl", o.tokenizer)[0] for s in ("forget", "retain", "holdout")}
    config = RelearningConfig(measure="key_choice", seeds=(0,), steps=10, eval_steps=(0, 10), n_boot=200, n_perm=200)
    e = relearning_line(AuditContext(o, u, **sets), config)
    assert (
        e.status == "ok"
        and e.details["measure"] == "choice accuracy of the key among other values of its question form"
    )
    row = e.details["per_seed"][0]
    chance = 1 / 8  # eight values a question form in the bio world: the key and seven from R
    for name in ("acc_forget_b_before", "acc_holdout_b_before"):
        assert abs(row[name] - chance) < 0.15, row  # never saw F or H: chance, within 3 binomial sd
    power = e.details["positive_control"]
    assert power is not None and sorted(int(k) for k in power["curve"]) == [0, 10]
    keyless = {s: [replace(f, key=None) for f in facts] for s, facts in sets.items()}
    skipped = relearning_line(AuditContext(o, u, **keyless), config)
    assert skipped.status == "not_run" and "measure key_choice" in skipped.reason
