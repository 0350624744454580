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
