"""Free-text and multiple-choice behaviour measures on the tiny zoo."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from forensics.compute.freetext import choice_correct, greedy_generations, rouge_l_recall, truth_ratios
from forensics.compute.scoring import logits_fn_for, score_facts


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    sets = {s: load_facts(tiny_zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "holdout")}
    return sets, load_model(tiny_zoo / "models" / "original")


def _with_alternatives(facts, k=3):
    """Each fact with up to ``k`` other answers to the same attribute (wrong for it)."""
    out = []
    for f in facts:
        others = sorted({g.answer for g in facts if g.attribute == f.attribute and g.answer != f.answer})[:k]
        out.append(replace(f, perturbed_answers=tuple(others), choices=(f.answer, *others), answer_index=0))
    return out


def test_rouge_l_recall_is_measured_against_the_answer():
    recall = rouge_l_recall(["the father is a civil engineer", "Kelmar"], ["he is an engineer", "Kelmar, of course"])
    assert recall == pytest.approx([2 / 6, 1.0])


def test_greedy_generations_agree_with_exact_match_and_do_not_depend_on_batching(zoo):
    sets, o = zoo
    facts = sets["forget"][:40]
    generations = greedy_generations(o.model, o.tokenizer, facts, max_new_tokens=4, batch_size=32)
    assert generations == greedy_generations(o.model, o.tokenizer, facts, max_new_tokens=4, batch_size=1)
    correct = score_facts(logits_fn_for(o.model), o.tokenizer, facts).correct
    recall = rouge_l_recall([f.answer for f in facts], generations)
    assert correct.any() and np.all(recall[correct] == 1.0)  # a greedy exact match is generated word for word


def test_truth_ratio_and_choice_accuracy_separate_known_from_unseen_facts(zoo):
    sets, o = zoo
    forget, holdout = _with_alternatives(sets["forget"]), _with_alternatives(sets["holdout"])
    ratio_f, ratio_h = truth_ratios(o.model, o.tokenizer, forget), truth_ratios(o.model, o.tokenizer, holdout)
    assert np.nanmean(ratio_f) < 0.5 * np.nanmean(ratio_h)
    choice_f, choice_h = choice_correct(o.model, o.tokenizer, forget), choice_correct(o.model, o.tokenizer, holdout)
    assert np.nanmean(choice_f) > 0.9 and np.nanmean(choice_f) > np.nanmean(choice_h) + 0.3
    plain = sets["forget"][:3]
    assert np.isnan(truth_ratios(o.model, o.tokenizer, plain)).all()
    assert np.isnan(choice_correct(o.model, o.tokenizer, plain)).all()


def test_behaviour_reports_free_text_measures_only_for_free_text_sets(zoo, tiny_zoo):
    from forensics.core.context import AuditContext
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model
    from forensics.lines.behaviour import BehaviourConfig, behaviour_line

    sets, o = zoo
    retain = load_facts(tiny_zoo / "data" / "retain.jsonl")[0]
    u = load_model(tiny_zoo / "models" / "idk")
    config = BehaviourConfig(n_boot=50, n_perm=20, max_new_tokens=4)
    plain = behaviour_line(AuditContext(original=o, unlearned=u, retain=retain, **sets), config)
    assert "free_text" not in plain.details
    rich = {name: _with_alternatives(facts) for name, facts in sets.items()}
    result = behaviour_line(AuditContext(original=o, unlearned=u, retain=retain, **rich), config)
    table = result.details["free_text"]
    assert table["original"]["forget"]["choice_accuracy"] > 0.9
    assert table["original"]["forget"]["rouge_l_recall"] > table["unlearned"]["forget"]["rouge_l_recall"]
    assert table["original"]["retain"]["truth_ratio"] is None  # R carries no perturbed answers here
    # every fact is multiple choice: the gate reads choice accuracy; with perturbed answers
    # only, ROUGE-L recall (against the answer: these facts have no key)
    assert result.details["gate_measure"] == "choice accuracy"
    assert result.effect == pytest.approx(table["unlearned"]["forget"]["choice_accuracy"])
    free = {name: [replace(f, choices=None, answer_index=None) for f in facts] for name, facts in rich.items()}
    rouge = behaviour_line(AuditContext(original=o, unlearned=u, retain=retain, **free), config)
    assert rouge.details["gate_measure"] == "ROUGE-L recall of greedy generations"
    assert rouge.effect == pytest.approx(rouge.details["free_text"]["unlearned"]["forget"]["rouge_l_recall"])
    assert plain.details["gate_measure"] == "greedy answer accuracy"


def test_a_free_text_audit_reports_the_measures_in_html_and_json(zoo, tiny_zoo, tmp_path):
    from forensics import audit
    from forensics.inputs.data import load_facts, write_jsonl
    from forensics.reports.results_json import check_results

    sets, _ = zoo
    paths = {}
    for name in ("forget", "holdout"):
        paths[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(paths[name], _with_alternatives(sets[name]))
    assert load_facts(paths["forget"])[0][0].perturbed_answers  # the fields survive the file
    out = tmp_path / "report"
    audit(
        tiny_zoo / "models" / "original",
        tiny_zoo / "models" / "idk",
        forget=paths["forget"],
        retain=tiny_zoo / "data" / "retain.jsonl",
        holdout=paths["holdout"],
        out=out,
        profile="quick",
        progress=False,
        lines=["behaviour"],
        pdf=False,
        settings={"behaviour": {"max_new_tokens": 4}},
    )
    html = (out / "report.html").read_text()
    assert "ROUGE-L O" in html and "truth ratio U" in html
    results = json.loads((out / "results.json").read_text())
    check_results(results)
    behaviour = next(e for e in results["evidence"] if e["line"] == "behaviour")
    assert behaviour["details"]["free_text"]["unlearned"]["forget"]["choice_accuracy"] is not None


def test_sentence_answers_are_free_text_without_any_free_text_field():
    """TOFU's forget10.json has a question and a sentence answer, nothing else: the answer
    measure must still be ROUGE-L, not exact match of a whole sentence."""
    from forensics.compute.measures import is_free_text, measure_for
    from forensics.inputs.data import Fact

    tofu = [Fact("Where was the author born?", " The author was born in Kelmar, a city by the sea.")] * 3
    closed = [Fact("Volem Mum resides in the city of", " Tulvin"), Fact("Her colour is", " pale green")]
    assert is_free_text(tofu) and measure_for(tofu) == "rouge"
    assert not is_free_text(closed) and measure_for(closed) == "exact"
    assert not is_free_text([])
