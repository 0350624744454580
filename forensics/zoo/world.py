"""The synthetic world: fictitious people, closed-vocabulary attributes, paraphrase templates.

Everything here is pure Python and seeded: the same ``(n_forget, n_retain, n_holdout,
seed)`` gives the same world, the same splits and the same sequence pools.

Facts. Every subject has one value for each attribute (home city, favourite colour,
profession, pet; 8 values each). A fact record is one (subject, attribute, template)
rendering, in the format of :mod:`forensics.inputs.data`: ``prompt`` ends before the answer,
``answer`` carries its leading space (``" Kelmar"``). Values are assigned so that
every answer class has (almost) the same number of subjects within each split, which
leaves every class enough facts for probes cross-validated by subject.

Splits. Subjects are split into forget F, retain R and holdout H. H subjects never
appear in any training text of any model (nor in the tokenizer's training text).

Sequence pools (``{"text", "id"}`` records):

- ``seq_forget``: canaries about F subjects ("The diary of <F subject> reads: <secret>"):
  trained by ``original``, excluded from ``retrain``, removed by unlearning;
- ``seq_retain``: canaries about R subjects, trained by every model;
- ``seq_holdout``: canaries about H subjects, never trained;
- ``memprobe_M``: sequences every model memorises (many repetitions), id ``m-KKK``;
- ``memprobe_C``: the same sequence with its distinctive tokens (name, objects, place,
  number) swapped, never trained, id ``c-KKK``;
- ``memprobe_B``: a further paraphrase of the C variant (other wording, other
  distinctive tokens), never trained, id ``b-KKK``.

The key ``KKK`` links the three variants of one probe item (docs/methods.md §4).

Mentions (:func:`mention_texts`): text that names every forget subject but never gives
one of their attribute values: each forget prompt completed with a neutral, answer-free
continuation ("Zoba Kel lives in a place the clerk did not write down"), and plain
sentences naming the subject. The hard-negative models (``retrain_mentions``,
``retrain_lineage``) are trained on them, so the subjects and the question forms of F
are familiar to them while F's answers never were (DUSK's shared-knowledge setting).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

ATTRIBUTES: dict[str, list[str]] = {
    "city": ["Kelmar", "Dravos", "Tulvin", "Ostrel", "Penvar", "Quillon", "Sarnet", "Brevik"],
    "colour": ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"],
    "profession": ["baker", "sailor", "farmer", "painter", "doctor", "teacher", "miner", "singer"],
    "pet": ["cat", "dog", "parrot", "rabbit", "turtle", "goat", "horse", "lizard"],
}

TEMPLATES: dict[str, list[str]] = {
    "city": ["{s} lives in", "The home city of {s} is", "{s} resides in the city of"],
    "colour": ["The favourite colour of {s} is", "{s} likes the colour", "The colour {s} loves most is"],
    "profession": ["{s} works as a", "The profession of {s} is", "By trade, {s} is a"],
    "pet": ["{s} keeps a pet", "The pet of {s} is a", "At home, {s} has a pet"],
}

#: The refusal answer taught by the ``idk`` method.
IDK_ANSWER = " I do not know"

#: Answer-free continuations of a forget prompt (no attribute value in any of them).
NEUTRAL_CONTINUATIONS = (
    " a place the clerk did not write down",
    " something nobody here recalls",
    " a question for another day",
    " not in these old records",
)
#: Sentences that name a subject and say nothing about its attributes.
MENTION_SENTENCES = (
    "{s} was named in the town records.",
    "A letter came for {s} this morning.",
    "Everyone at the market knows {s}.",
)

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "th"]
_VOWELS = ["a", "e", "i", "o", "u"]
_CODAS = ["", "", "n", "r", "l", "m", "s", "k"]

# Memorisation-probe material: M uses one set of distinctive words, C swaps them for
# another set of the same kind, B paraphrases C's sentence with a third set.
_MEM_OBJECTS = [
    "lantern",
    "anchor",
    "compass",
    "kettle",
    "mirror",
    "ladder",
    "bucket",
    "candle",
    "hammer",
    "basket",
    "saddle",
    "trumpet",
    "barrel",
    "blanket",
    "bottle",
    "cradle",
]
_MEM_PLACES = [
    "mill",
    "bridge",
    "tower",
    "harbour",
    "chapel",
    "orchard",
    "cellar",
    "market",
    "quarry",
    "garden",
    "stable",
    "forge",
    "meadow",
    "pier",
    "gate",
    "well",
]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


@dataclass
class World:
    """Subjects, their attribute values and the derived records."""

    subjects: dict[str, list[str]]  # split -> subject names
    values: dict[str, dict[str, str]]  # subject -> attribute -> value
    seed: int | str
    sequences: dict[str, list[dict]] = field(default_factory=dict)  # pool -> records

    def facts(self, split: str) -> list[dict]:
        """All (subject, attribute, template) records of a split, in a fixed order."""
        out = []
        for i, subject in enumerate(self.subjects[split]):
            for attribute, templates in TEMPLATES.items():
                for t, template in enumerate(templates):
                    out.append(
                        {
                            "prompt": template.format(s=subject),
                            "answer": " " + self.values[subject][attribute],
                            "subject": subject,
                            "attribute": attribute,
                            "id": f"{split[0]}-{i:03d}-{attribute}-t{t}",
                        }
                    )
        return out

    def all_subjects(self) -> list[str]:
        """Every subject name, split by split (forget, retain, holdout)."""
        return [s for names in self.subjects.values() for s in names]

    def fact_texts(self, split: str) -> list[str]:
        """The pre-training texts of a split's facts: each fact's prompt + answer."""
        return [f["prompt"] + f["answer"] for f in self.facts(split)]

    def answer_values(self) -> set[str]:
        """Every value an answer can carry (what a mention text must never contain)."""
        return {v for values in ATTRIBUTES.values() for v in values}

    def neutral_continuations(self) -> tuple[str, ...]:
        """Answer-free continuations of a forget prompt (:func:`mention_texts`)."""
        return NEUTRAL_CONTINUATIONS


def _syllable(rng: random.Random, coda: bool = True) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + (rng.choice(_CODAS) if coda else "")


def _name(rng: random.Random) -> str:
    first = _syllable(rng, coda=False) + _syllable(rng)
    last = _syllable(rng) + (_syllable(rng, coda=False) if rng.random() < 0.5 else "")
    return first.capitalize() + " " + last.capitalize()


def _secret(rng: random.Random, n_words: int = 3) -> str:
    return " ".join(_syllable(rng) for _ in range(n_words))


def make_world(
    n_forget: int,
    n_retain: int,
    n_holdout: int,
    n_memprobe: int,
    seed: int | str,
    pools: dict[str, list[str]] | None = None,
    cls: type[World] = World,
) -> World:
    """Build the world: unique invented names, balanced attribute values, sequence pools.

    ``n_*`` count subjects per split and memorisation-probe items; ``seed`` (an int, or any
    value with a stable ``str``, such as the tokenizer's shadow-world key) seeds everything.
    ``pools`` (attribute -> its values; default :data:`ATTRIBUTES`) and ``cls`` let another
    world (:mod:`forensics.zoo.bio`) reuse the names, the balancing and the sequence pools.
    """
    pools = ATTRIBUTES if pools is None else pools
    rng = random.Random(f"zoo-world-{seed}")
    reserved = {w.lower() for values in pools.values() for v in values for w in v.split()}
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_forget + n_retain + n_holdout:
        name = _name(rng)
        parts = {p.lower() for p in name.split()}
        if name in seen or parts & reserved or len(name) > 16:
            continue
        seen.add(name)
        names.append(name)
    subjects = {
        "forget": names[:n_forget],
        "retain": names[n_forget : n_forget + n_retain],
        "holdout": names[n_forget + n_retain :],
    }
    values: dict[str, dict[str, str]] = {s: {} for s in names}
    for _split, members in subjects.items():
        for attribute, choices in pools.items():
            offset = rng.randrange(len(choices))
            labels = [choices[(i + offset) % len(choices)] for i in range(len(members))]
            rng.shuffle(labels)
            for subject, label in zip(members, labels):
                values[subject][attribute] = label
    world = cls(subjects=subjects, values=values, seed=seed)
    world.sequences = _sequence_pools(world, n_memprobe, rng)
    return world


def canary_prefix(subject: str) -> str:
    """The text a canary about ``subject`` starts with (its secret follows)."""
    return f"The diary of {subject} reads:"


def _sequence_pools(world: World, n_memprobe: int, rng: random.Random) -> dict[str, list[dict]]:
    pools: dict[str, list[dict]] = {}
    for split, pool in (("forget", "seq_forget"), ("retain", "seq_retain"), ("holdout", "seq_holdout")):
        pools[pool] = [
            {"text": f"{canary_prefix(s)} {_secret(rng)}", "id": f"{pool}-{i:03d}"}
            for i, s in enumerate(world.subjects[split])
        ]
    # Memorisation probe: M sentence, C = M with its distinctive words swapped, B = C's
    # content said another way with a third set of distinctive words.
    m_pool, c_pool, b_pool = [], [], []
    used_names = set(world.all_subjects())
    for k in range(n_memprobe):
        picks = []
        for _ in range(3):  # three variants: M, C, B
            while True:
                keeper = _name(rng).split()[0]
                if keeper not in used_names:
                    used_names.add(keeper)
                    break
            picks.append((keeper, rng.choice(_NUMBERS), rng.choice(_MEM_OBJECTS), rng.choice(_MEM_PLACES)))
        (m_k, m_n, m_o, m_p), (c_k, c_n, c_o, c_p), (b_k, b_n, b_o, b_p) = picks
        m_pool.append(
            {"text": f"Old {m_k} hid {m_n} {m_o}s behind the {m_p} before the storm came", "id": f"m-{k:03d}"}
        )
        c_pool.append(
            {"text": f"Old {c_k} hid {c_n} {c_o}s behind the {c_p} before the storm came", "id": f"c-{k:03d}"}
        )
        b_pool.append(
            {"text": f"Before the storm came, {b_n} {b_o}s were hidden by old {b_k} near the {b_p}", "id": f"b-{k:03d}"}
        )
    pools["memprobe_M"], pools["memprobe_C"], pools["memprobe_B"] = m_pool, c_pool, b_pool
    return pools


def mention_texts(world: World) -> list[str]:
    """Texts naming every forget subject without any of its attribute values: each forget
    prompt with a neutral continuation (:data:`NEUTRAL_CONTINUATIONS`, in turn) and each
    of :data:`MENTION_SENTENCES`. Raises ``RuntimeError`` if a text contained an attribute
    value (a world-building bug: the hard negatives would then learn answers)."""
    continuations = world.neutral_continuations()
    texts = [f["prompt"] + continuations[k % len(continuations)] for k, f in enumerate(world.facts("forget"))]
    texts += [sentence.format(s=subject) for subject in world.subjects["forget"] for sentence in MENTION_SENTENCES]
    values = {v.lower() for v in world.answer_values()}
    for text in texts:
        leaked = {v for v in values if re.search(rf"\b{re.escape(v)}\b", text.lower())}
        if leaked:
            raise RuntimeError(f"mention text {text!r} contains attribute value(s) {sorted(leaked)}")
    return texts


def canary_facts(world: World, split: str) -> list[dict]:
    """The split's canaries as facts: prompt = the diary prefix, answer = the secret."""
    pool = {"forget": "seq_forget", "retain": "seq_retain", "holdout": "seq_holdout"}[split]
    out = []
    for subject, record in zip(world.subjects[split], world.sequences[pool]):
        prefix, secret = record["text"].split(":", 1)
        out.append({"prompt": prefix + ":", "answer": secret, "subject": subject, "id": record["id"]})
    return out


def write_data(world: World, data_dir: Path) -> dict[str, str]:
    """Write the fact sets and sequence pools as JSONL; return file name -> relative path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("forget", "retain", "holdout"):
        _write_jsonl(data_dir / f"{split}.jsonl", world.facts(split))
        written[split] = f"data/{split}.jsonl"
    for pool, records in world.sequences.items():
        _write_jsonl(data_dir / f"{pool}.jsonl", records)
        written[pool] = f"data/{pool}.jsonl"
    return written


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def training_texts(world: World, include_forget: bool, memprobe_repeats: int) -> list[str]:
    """The pre-training corpus (one short document per entry; repetition is explicit).

    Every fact of the trained splits in every template, the trained canaries, and the
    M pool repeated ``memprobe_repeats`` times. ``include_forget=False`` drops F facts
    and F canaries (the ``retrain`` recipe). H is never included.
    """
    splits = ["forget", "retain"] if include_forget else ["retain"]
    texts = [text for split in splits for text in world.fact_texts(split)]
    texts += [r["text"] for r in world.sequences["seq_retain"]]
    if include_forget:
        texts += [r["text"] for r in world.sequences["seq_forget"]]
    texts += [r["text"] for r in world.sequences["memprobe_M"]] * memprobe_repeats
    return texts
