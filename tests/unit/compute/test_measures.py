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


def _word_tokenizer():
    """A tokenizer stand-in: one id per distinct word (leading spaces dropped), ids stable."""
    vocab: dict[str, int] = {}

    def tokenize(text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [vocab.setdefault(w, len(vocab)) for w in text.replace("?", " ?").split()]}

    return tokenize, vocab


def test_value_tokens_leave_out_what_the_prompt_and_the_forms_frame_give():
    from forensics.compute.measures import answer_frames, question_form, value_positions

    tok, vocab = _word_tokenizer()
    pool = [_bio_fact(s, v, key=False) for s, v in [("Ana", "Lune"), ("Bo", "Dravos"), ("Cy", "Lune")]]
    pool += [_bio_fact("Di", "Mars", form="raised", key=False)]  # one answer: no frame for its form
    frames = answer_frames(tok, pool)
    assert list(frames) == [question_form(pool[0])]
    # "was", "born", "in" and "Lune." are in all three or two of three answers: more than half
    assert {k for k, v in vocab.items() if v in frames[question_form(pool[0])]} == {"was", "born", "in", "Lune."}
    fact = _bio_fact("Eve", "Port Dravos", key=False)
    prompt, answer = tok(fact.prompt)["input_ids"], tok(fact.answer)["input_ids"]
    kept = value_positions(prompt, answer, frames[question_form(fact)])
    # "Eve" is copied from the prompt, "was born in" is the frame: the value is what is left
    assert [answer[j] for j in kept] == tok("Port Dravos.")["input_ids"]
    assert value_positions(prompt, answer) == [j for j, t in enumerate(answer) if t not in set(prompt)]
    # nothing left: the whole answer is read rather than nothing
    assert value_positions([1, 2], [2, 1]) == [0, 1]


def test_an_unkeyed_answer_is_scored_against_its_value_tokens_with_unkeyed_span_value(test_tokenizer):
    from forensics.compute.measures import measure_reader, rouge_targets, value_keys
    from forensics.inputs.data import Fact

    def fact(subject: str, value: str, key: bool = False) -> Fact:  # in the test tokenizer's words
        answer = f" the {subject} jumps over the {value}"
        return Fact(f"while {subject} jumps over", answer, subject=subject, key=f" {value}" if key else None)

    pool = [fact("quick fox", "lazy dog"), fact("brown fox", "calm water"), fact("seven stars", "glow above")]
    unkeyed, keyed = fact("lazy fox", "bright water"), fact("lazy fox", "calm dog", key=True)
    valued, same = value_keys(test_tokenizer, [unkeyed, keyed], pool)
    # the subject's name and "jumps over" are in the prompt, "the" is the frame: the value is left
    assert valued.key == " bright water" and (valued.prompt, valued.answer) == (unkeyed.prompt, unkeyed.answer)
    assert same is keyed  # a keyed fact keeps its key
    read = measure_reader("rouge", [unkeyed], [keyed], pool, test_tokenizer, "value")
    assert not isinstance(read, str) and rouge_targets(read([unkeyed, keyed])) == [" bright water", " calm dog"]
    whole = measure_reader("rouge", [unkeyed], [keyed], pool, test_tokenizer)
    assert not isinstance(whole, str) and rouge_targets(whole([unkeyed])) == [unkeyed.answer]
