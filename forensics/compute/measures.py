"""The answer measure: how well a model answers each fact, on closed-vocabulary, free-text and
multiple-choice data alike (docs/methods.md, "Free-text knowledge"). A set is free text when a
fact carries a free-text field or its answers are sentences (:func:`is_free_text`).

One measure per audit, chosen from the forget set (:func:`measure_for`):

- ``"exact"``: greedy exact match of every answer token under teacher forcing
  (:func:`forensics.compute.scoring.score_facts`); 1 or 0 per fact;
- ``"rouge"``: ROUGE-L recall of the greedy generation (:mod:`forensics.compute.freetext`) against the
  fact's ``key`` span where it has one, else against the whole answer (TOFU's measure). The key
  is preferred because the rest of a sentence answer is its frame, which a model writes whether
  or not it knows the fact: against the whole answer a model that knows nothing scores the
  frame's share of words, and a recovery is diluted by the same share;
- ``"choice"``: whether the highest-log-prob choice is the correct one (WMDP);
- ``"token"``: teacher-forced token accuracy, the share of the key's tokens (after the prompt
  and the answer's frame; the whole answer without a key: :func:`key_facts`) that the model
  predicts by arg-max given the true earlier tokens. Never chosen by "auto"; a line asks for it
  (``measure=token``): it moves as soon as the answer's probability returns, long before a
  greedy generation reproduces the answer, so it is the sensitive measure for attacks.
- ``"key_choice"``: whether the key has the highest log-probability, after the prompt and the
  answer's frame, among itself and up to seven other values of the same question form taken
  from the retain set (:func:`key_choice_facts`); chance is one over the number of choices, so a
  model that never knew the fact sits at chance, where the token measure sits far above it
  (a key's later tokens follow from its first). Never chosen by "auto"; a line asks for it.

The behaviour gate votes on it, and the relearning and quantization attacks re-measure with it,
so a recovery is stated in the gate's units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, cast

import numpy as np

from forensics.inputs.data import Fact

#: A line's choice of answer measure: "auto" (:func:`measure_for`) or one of :data:`NAMES`.
MeasureChoice = Literal["auto", "exact", "rouge", "choice", "token", "key_choice"]

#: Data fields that mark a free-text or multiple-choice set.
FREE_TEXT_FIELDS = ("paraphrased_answer", "perturbed_answers", "choices", "key")
#: Measure name -> what reports call it.
NAMES = {
    "exact": "greedy answer accuracy",
    "rouge": "ROUGE-L recall of greedy generations",
    "choice": "choice accuracy",
    "token": "teacher-forced token accuracy of the key",
    "key_choice": "choice accuracy of the key among other values of its question form",
}
#: Measure name -> a short word for sentences ("U keeps 80% of O's ... on F").
SHORT = {
    "exact": "accuracy",
    "rouge": "ROUGE-L recall",
    "choice": "choice accuracy",
    "token": "token accuracy",
    "key_choice": "key choice accuracy",
}


#: A set whose median answer has at least this many words is free text even without any of
#: :data:`FREE_TEXT_FIELDS` (TOFU's forget10.json: question and sentence answer only).
SENTENCE_WORDS = 4


def is_free_text(facts: Sequence[Fact]) -> bool:
    """Whether the set is free text or multiple choice: some fact carries a field of
    :data:`FREE_TEXT_FIELDS`, or the median answer is a sentence (at least
    :data:`SENTENCE_WORDS` words). A closed-vocabulary answer is one or two words."""
    if any(getattr(f, name) is not None for f in facts for name in FREE_TEXT_FIELDS):
        return True
    return bool(facts) and float(np.median([len(f.answer.split()) for f in facts])) >= SENTENCE_WORDS


def measure_for(facts: Sequence[Fact], mode: str = "auto") -> str:
    """The measure for a set: ``mode`` "exact", "rouge" or "choice" as given; "auto": "choice"
    when every fact is multiple choice, "rouge" when some fact carries a free-text field,
    else "exact". Raises ``ValueError`` for another mode."""
    if mode in NAMES:
        return mode
    if mode != "auto":
        raise ValueError(f"unknown answer measure {mode!r}; choose auto, exact, rouge, choice or token")
    if facts and all(f.choices for f in facts):
        return "choice"
    return "rouge" if is_free_text(facts) else "exact"


def key_reading(fact: Fact) -> tuple[str, str]:
    """Where a read-out of the answer looks: ``(text, target)``. With a ``key``, the text is the
    prompt plus the answer up to the key (its space moved into the target) and the target is
    the key: ``("Q: ...\nAnswer: Zo works as a", " civil engineer")``; the sentence frame
    before the key says nothing about the fact (it often starts by repeating the subject's name,
    which familiarity alone predicts). Without a key: ``(prompt, answer)``."""
    if not fact.key or fact.key not in fact.answer:
        return fact.prompt, fact.answer
    start = fact.answer.index(fact.key)
    head = fact.answer[:start]
    stripped = head.rstrip()
    return fact.prompt + stripped, head[len(stripped) :] + fact.key


def key_facts(facts: Sequence[Fact]) -> list[Fact]:
    """The facts as :func:`key_reading` reads them: a fact with a ``key`` becomes prompt = its
    prompt plus the answer's frame up to the key, answer = the key (with its space); others
    are unchanged. For lines that score "the answer's tokens given the prompt"."""
    from dataclasses import replace

    out = []
    for f in facts:
        text, target = key_reading(f)
        out.append(f if text == f.prompt and target == f.answer else replace(f, prompt=text, answer=target))
    return out


def question_form(fact: Fact) -> str | None:
    """The fact's prompt with its subject's name blanked: facts of one form ask the same question
    of different subjects. None without a subject, or when the prompt does not name it."""
    if not fact.subject or fact.subject not in fact.prompt:
        return None
    return fact.prompt.replace(fact.subject, "\x00")


def answer_frames(tokenizer, pool: Sequence[Fact]) -> dict[str, frozenset[int]]:
    """Per :func:`question_form`, the token ids of its answer *frame*: the ids that occur in more
    than half of ``pool``'s answers of that form (answers tokenised alone, as
    :func:`forensics.compute.scoring.encode_facts` does). Only forms with at least two answers in
    the pool get a frame: with one, its value would count as frame. ``pool`` is the retain set in
    the lines: a model that learned R's answers writes their shared phrasing for any subject."""
    from collections import Counter

    by_form: dict[str, list[set[int]]] = {}
    for fact in pool:
        form = question_form(fact)
        if form is not None:
            by_form.setdefault(form, []).append(set(tokenizer(fact.answer, add_special_tokens=False)["input_ids"]))
    return {
        form: frozenset(t for t, n in Counter(t for ids in sets for t in ids).items() if n > len(sets) / 2)
        for form, sets in by_form.items()
        if len(sets) >= 2
    }


def value_positions(
    prompt_ids: Sequence[int], answer_ids: Sequence[int], frame: frozenset[int] = frozenset()
) -> list[int]:
    """Indices into ``answer_ids`` of the answer's *value* tokens: those the prompt does not contain
    (a model can copy the subject's name and the question's words) and that are not in the
    question form's ``frame`` (:func:`answer_frames`). The counterpart of reading the ``key`` for
    a sentence answer without one. Every index when no token is left (the whole answer is read)."""
    left_out = set(prompt_ids) | frame
    kept = [j for j, t in enumerate(answer_ids) if t not in left_out]
    return kept or list(range(len(answer_ids)))


def value_span(fact: Fact, prompt_ids: Sequence[int], answer_ids: Sequence[int], frames: dict) -> list[int]:
    """Indices into ``answer_ids`` a line reads for ``fact``: every index for a keyed fact (its
    answer is already the key's reading), else :func:`value_positions` with its question form's
    frame from ``frames`` (:func:`answer_frames`)."""
    if fact.key is not None:
        return list(range(len(answer_ids)))
    return value_positions(prompt_ids, answer_ids, frames.get(question_form(fact) or "", frozenset()))


def key_choice_facts(
    facts: Sequence[Fact], pool: Sequence[Fact], n_distractors: int = 7, seed: int = 0
) -> list[Fact | None]:
    """``facts`` as multiple-choice facts over their key (the ``"key_choice"`` measure): prompt =
    the prompt plus the answer's frame (:func:`key_reading`), choices = the key and up to
    ``n_distractors`` other keys of the same :func:`question_form` among ``pool``'s facts of other
    subjects, each with the key's leading space, in a seeded random order (``answer_index`` marks
    the key). ``pool`` is the retain set in the lines: values U was trained on, which no attack
    on F or H trains on, drawn alike for F and H. None for a fact without a key, without a
    question form, or with no other value in the pool. Deterministic in ``seed``."""
    from dataclasses import replace

    values: dict[str, set[str]] = {}
    for g in pool:
        form = question_form(g)
        if form is not None and g.key:
            values.setdefault(form, set()).add(g.key.strip())
    rng = np.random.default_rng(seed)
    out: list[Fact | None] = []
    for f in facts:
        form = question_form(f)
        if not f.key or form is None:
            out.append(None)
            continue
        others = sorted(values.get(form, set()) - {f.key.strip()})
        if not others:
            out.append(None)
            continue
        chosen = [str(v) for v in rng.permutation(others)[:n_distractors]]
        text, target = key_reading(f)
        if not target.endswith(f.key):  # the key is not in the answer as written
            out.append(None)
            continue
        lead = target[: len(target) - len(f.key)]
        choices = [lead + v for v in chosen]
        index = int(rng.integers(len(choices) + 1))
        choices.insert(index, target)
        out.append(replace(f, prompt=text, answer=target, choices=tuple(choices), answer_index=index))
    return out


#: Facts as a measure reads them (:func:`measure_reader`).
Measured = Callable[[list[Fact]], list[Fact]]


def value_keys(tokenizer, facts: Sequence[Fact], pool: Sequence[Fact]) -> list[Fact]:
    """``facts`` with each unkeyed answer's *value* as its ``key``: the decoded tokens of
    :func:`value_positions` (not in the prompt, so not the subject's name; not in the question
    form's frame among ``pool``'s answers, :func:`answer_frames`), what "rouge" then scores against
    (:func:`rouge_targets`). Keyed facts, and answers with no token left out, are unchanged. The
    reading membership inference gives an unkeyed answer (forensics/lines/membership_inference.py)."""
    from dataclasses import replace

    from forensics.compute.scoring import encode_facts

    frames = answer_frames(tokenizer, pool)
    out = []
    for f, (p, a) in zip(facts, encode_facts(tokenizer, list(facts))):
        picked = value_span(f, p, a, frames)
        out.append(f if len(picked) == len(a) else replace(f, key=tokenizer.decode([a[j] for j in picked])))
    return out


def measure_reader(
    measure: str,
    forget: Sequence[Fact],
    holdout: Sequence[Fact],
    retain: Sequence[Fact],
    tokenizer=None,
    unkeyed_span: Literal["answer", "value"] = "answer",
) -> Measured | str:
    """How a line's evaluation facts are read under ``measure``: as they are, as multiple-choice
    facts over their key for "key_choice" (:func:`key_choice_facts`, distractors from ``retain``),
    or for "rouge" with ``unkeyed_span="value"`` with each unkeyed answer's value tokens as its key
    (:func:`value_keys`, frames from ``retain``; needs ``tokenizer``). Returns a function from a
    list of F or H facts to the facts to score, or a one-line reason when some F or H fact cannot
    be read that way (no key, no question form, no other value in the retain set)."""
    facts = list(forget) + list(holdout)
    if measure == "rouge" and unkeyed_span == "value":
        valued = dict(zip(facts, value_keys(tokenizer, facts, retain)))
        return lambda fs: [valued[f] for f in fs]
    if measure != "key_choice":
        return lambda facts: facts
    mc = dict(zip(facts, key_choice_facts(facts, retain)))
    missing = sum(1 for v in mc.values() if v is None)
    if missing:
        return (
            f"measure key_choice: {missing} of {len(mc)} F and H facts have no key, no question form naming "
            "their subject, or no other value of that form in the retain set"
        )
    return lambda fs: [cast(Fact, mc[f]) for f in fs]


def rouge_targets(facts: Sequence[Fact]) -> list[str]:
    """What "rouge" scores each generation against: the key span, else the whole answer."""
    return [f.key or f.answer for f in facts]


def line_measure(facts: Sequence[Fact], mode: str, line: str) -> str:
    """:func:`measure_for` for a line's ``measure`` config field; an unknown mode raises
    :class:`~forensics.core.errors.ForensicsInputError` naming ``line``."""
    from forensics.core.errors import ForensicsInputError

    try:
        return measure_for(facts, mode)
    except ValueError as exc:
        raise ForensicsInputError(f"{line}.measure: {exc}") from None


def measure_facts(
    name: str,
    model,
    tokenizer,
    facts: Sequence[Fact],
    device="cpu",
    batch_size: int = 64,
    max_new_tokens: int = 32,
    generations: Sequence[str] | None = None,
) -> np.ndarray:
    """Per-fact score of measure ``name`` (:data:`NAMES`) of a TransformerLens or ``transformers``
    model, float ``[n]`` in [0, 1]. ``max_new_tokens`` bounds the greedy generation of "rouge";
    ``generations`` (the model's greedy generations for ``facts``) skips generating. A fact
    without choices scores NaN under "choice"."""
    from forensics.compute.freetext import choice_correct, greedy_generations, rouge_l_recall
    from forensics.compute.scoring import EncodedFacts, logits_fn_for, score_facts

    facts = list(facts)
    if name == "token":
        return EncodedFacts(tokenizer, key_facts(facts), batch_size).token_accuracy(logits_fn_for(model), device)
    if name == "exact":
        return score_facts(logits_fn_for(model), tokenizer, facts, batch_size, device).correct.astype(float)
    if name in ("choice", "key_choice"):  # key_choice: facts made by key_choice_facts
        return choice_correct(model, tokenizer, facts, device)
    if name == "rouge":
        if generations is None:
            generations = greedy_generations(model, tokenizer, facts, max_new_tokens, batch_size, device)
        return rouge_l_recall(rouge_targets(facts), generations)
    raise ValueError(f"unknown answer measure {name!r}")
