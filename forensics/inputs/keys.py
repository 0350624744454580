"""Key spans derived from the answer when the data give none (TOFU's ``forget10.json`` shape).

A fact's ``key`` is the span of its answer that carries the fact (docs/methods.md, "Free-text
knowledge"): lenses, membership inference, REMIND, patching and the free-text measures read it
instead of the whole sentence, whose frame often repeats the subject's name. A model that saw
text naming F's subjects, but never F's answers, finds that frame familiar; scored on the whole
sentence, it looks like a model that still knows F (the bench's hard negatives measure this:
docs/results/2026-12-04-keyless-bio.md).

When no fact of an audit has a key and the answers are sentences, :func:`derive_keys` gives
each fact the span of its answer from the first to the last word that its question does not
contain (words: runs of letters and digits, compared case-insensitively). The question's words,
the subject's name among them, are what the prompt already gives; what the answer adds is the
fact. "Where was Luke Sar born?" / " Luke Sar was born in Lake Penvar." -> "in Lake Penvar".
A fact whose answer adds no word keeps no key (it is scored on the whole answer). The rule has
no parameter; it is applied to every set alike, so F and its holdout control are read the same
way. ``forensics audit --no-derived-keys`` turns it off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from forensics.inputs.data import Fact

_WORD = re.compile(r"\w+")


def derive_key(question: str, answer: str) -> str | None:
    """The span of ``answer`` from its first to its last word not among ``question``'s words
    (case-insensitive), stripped; ``None`` when every word of the answer is in the question."""
    asked = {w.lower() for w in _WORD.findall(question)}
    new = [m for m in _WORD.finditer(answer) if m.group().lower() not in asked]
    if not new:
        return None
    return answer[new[0].start() : new[-1].end()].strip() or None


def needs_keys(sets: Mapping[str, list[Fact]]) -> bool:
    """Whether keys are derived: no fact of any set has a key, none is multiple choice, and
    the forget set's answers are sentences (:func:`forensics.compute.measures.is_free_text`)."""
    from forensics.compute.measures import is_free_text

    facts = [f for group in sets.values() for f in group or []]
    forget = list(sets.get("forget") or [])
    return bool(forget) and not any(f.key or f.choices for f in facts) and is_free_text(forget)


def derive_keys(facts: list[Fact]) -> tuple[list[Fact], int]:
    """``facts`` with :func:`derive_key`'s key set from each prompt and answer; also returns
    how many got one. Call it before a chat template wraps the prompts."""
    out = []
    for fact in facts:
        key = derive_key(fact.prompt, fact.answer)
        out.append(replace(fact, key=key) if key else fact)
    return out, sum(1 for f in out if f.key)
