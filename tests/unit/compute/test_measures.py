"""The "token" answer measure (forensics/compute/measures.py): teacher-forced token accuracy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from forensics.compute.measures import measure_facts


def test_token_accuracy_agrees_with_exact_match(tiny_zoo):
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    facts = load_facts(tiny_zoo / "data" / "forget.jsonl")[0][:40]
    for name in ("original", "retrain"):
        m = load_model(tiny_zoo / "models" / name)
        token = measure_facts("token", m.model, m.tokenizer, facts)
        exact = measure_facts("exact", m.model, m.tokenizer, facts)
        assert token.shape == (40,) and np.all((token >= 0) & (token <= 1))
        assert np.all(token[exact == 1] == 1)  # every token right is exact match
        assert np.all(token >= exact)
    # a key that is the whole answer reads the same tokens as no key
    m = load_model(tiny_zoo / "models" / "original")
    keyed = [replace(f, key=f.answer.strip()) for f in facts]
    assert np.array_equal(
        measure_facts("token", m.model, m.tokenizer, keyed), measure_facts("token", m.model, m.tokenizer, facts)
    )


def _bio_fact(subject: str, value: str, form: str = "born", key: bool = True):
    from forensics.inputs.data import Fact

    prompt = f"Question: Where was {subject} {form}?\nAnswer:"
    return Fact(prompt, f" {subject} was {form} in {value}.", subject=subject, key=value if key else None)


def test_key_choice_puts_the_key_among_other_values_of_its_question_form_from_the_pool():
    from forensics.compute.measures import key_choice_facts

    pool = [_bio_fact(s, v) for s, v in [("Ana", "Port Lune"), ("Bo", "Old Dravos"), ("Cy", "Fort Quillon")]]
    pool += [_bio_fact("Di", "Mars", form="raised")]  # another question form: never a distractor
    fact = _bio_fact("Eve", "Port Lune")
    (mc,) = key_choice_facts([fact], pool, n_distractors=7, seed=0)
    assert mc is not None and mc.prompt == fact.prompt + " Eve was born in"
    assert mc.choices[mc.answer_index] == " Port Lune" == mc.answer
    assert sorted(mc.choices) == [" Fort Quillon", " Old Dravos", " Port Lune"]  # its own value once
    again = key_choice_facts([fact] * 40, pool, seed=1)
    assert len({m.answer_index for m in again if m}) == 3  # the key's place is random, not first
    no_key, lone = key_choice_facts(
        [_bio_fact("Eve", "Port Lune", key=False), _bio_fact("Fay", "Mars", "raised")], pool
    )
    assert no_key is None and lone is None  # no key; no other value of the form in the pool
