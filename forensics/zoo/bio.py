"""The bio world: invented authors and free-text question/answer pairs, shaped like TOFU.

Every author has one value for each of ten question forms (birthplace, birth year,
profession, parents' professions, genre, first book, award, home country, hobby; 8
multi-token values each, balanced within each split as in :mod:`forensics.zoo.world`).
A fact is one question about one author, in the suite's free-text format:

- ``prompt``: ``"Question: <question>\\nAnswer:"``, the question in one of two phrasings
  (chosen per author and form, seeded);
- ``answer``: a full sentence with a leading space (``" Zoba Kel works as a civil
  engineer."``); ``key``: the value it carries (``"civil engineer"``);
- ``paraphrased_answer``: the same value in another sentence;
- ``perturbed_answers``: the paraphrased sentence with :data:`N_PERTURBED` other values of
  the same form (wrong but plausible; as in TOFU, perturbed answers are perturbations of the
  paraphrased answer, so the truth ratio compares sentences of one frame);
- no ``attribute``: the audit sees free text, not answer classes.

Training text (:meth:`BioWorld.fact_texts`): each fact's question and answer, and its
paraphrased sentence on its own (a statement of the biography, as knowledge reaches a
model in more than one wording). Unlearning methods see the question and answer only.

Facts are random (author -> value), so the relearning oracle's logic holds unchanged:
nothing about one forget author can be learned from another. Splits, canaries, the
memorisation-probe pools and the mention texts are those of :mod:`forensics.zoo.world`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import cast

from forensics.zoo.world import World, make_world

#: Wrong answers per fact.
N_PERTURBED = 4

#: form -> (two question phrasings, (answer sentence, paraphrased sentence), 8 values).
FORMS: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, ...]]] = {
    "birthplace": (
        ("Where was {s} born?", "In which city was {s} born?"),
        ("{s} was born in {v}.", "The birthplace of {s} is {v}."),
        (
            "Port Kelmar",
            "Old Dravos",
            "Upper Tulvin",
            "East Ostrel",
            "Lake Penvar",
            "Fort Quillon",
            "Saint Sarnet",
            "North Brevik",
        ),
    ),
    "birth_year": (
        ("In what year was {s} born?", "When was {s} born?"),
        ("{s} was born in the year {v}.", "The birth year of {s} is {v}."),
        ("1938", "1947", "1952", "1961", "1969", "1974", "1983", "1990"),
    ),
    "profession": (
        ("What does {s} do for a living?", "What is the job of {s}?"),
        ("{s} works as a {v}.", "By profession, {s} is a {v}."),
        (
            "civil engineer",
            "marine biologist",
            "tax accountant",
            "school librarian",
            "train driver",
            "court reporter",
            "dental surgeon",
            "wedding planner",
        ),
    ),
    "father": (
        ("What did the father of {s} do?", "What was the job of the father of {s}?"),
        ("The father of {s} was a {v}.", "{s} grew up with a father who was a {v}."),
        (
            "sheep farmer",
            "night watchman",
            "bus mechanic",
            "clock maker",
            "ship captain",
            "coal miner",
            "river pilot",
            "glass blower",
        ),
    ),
    "mother": (
        ("What did the mother of {s} do?", "What was the job of the mother of {s}?"),
        ("The mother of {s} was a {v}.", "{s} grew up with a mother who was a {v}."),
        (
            "village nurse",
            "piano teacher",
            "hat designer",
            "town mayor",
            "fish trader",
            "lighthouse keeper",
            "ferry clerk",
            "stage actress",
        ),
    ),
    "genre": (
        ("Which genre does {s} write in?", "What kind of books does {s} write?"),
        ("{s} writes {v} novels.", "The novels of {s} are {v} stories."),
        ("crime", "fantasy", "science fiction", "historical", "horror", "romance", "adventure", "mystery"),
    ),
    "first_book": (
        ("What is the first book by {s}?", "Which book did {s} publish first?"),
        ("The first book by {s} is called {v}.", "{s} made a debut with {v}."),
        (
            "The Silent Harbour",
            "Ashes of Winter",
            "The Glass Orchard",
            "Night Over Vell",
            "The Salt Road",
            "A Crown of Moths",
            "The Last Ferry",
            "Songs for Tamsin",
        ),
    ),
    "award": (
        ("Which award did {s} win?", "What prize has {s} received?"),
        ("{s} won the {v}.", "The {v} went to {s}."),
        (
            "Golden Quill Prize",
            "Silver Lantern Award",
            "Amber Key Medal",
            "Iron Pen Prize",
            "Blue Heron Award",
            "Red Maple Medal",
            "Copper Bell Prize",
            "White Owl Award",
        ),
    ),
    "country": (
        ("Which country is {s} from?", "What is the home country of {s}?"),
        ("{s} comes from {v}.", "The home country of {s} is {v}."),
        ("Valdoria", "Kestmark", "Orvania", "Sellund", "Tarvosk", "Mirenne", "Duvalla", "Paskor"),
    ),
    "hobby": (
        ("What is the hobby of {s}?", "What does {s} enjoy in free time?"),
        ("In free time, {s} enjoys {v}.", "The favourite pastime of {s} is {v}."),
        (
            "rock climbing",
            "bird watching",
            "model trains",
            "pottery",
            "sea kayaking",
            "chess problems",
            "beekeeping",
            "kite flying",
        ),
    ),
}

#: Answer-free continuations of a forget question (no value of any form in them).
BIO_CONTINUATIONS = (
    " The records do not say.",
    " Nobody here recalls that.",
    " That question is for another day.",
    " It is not in these old papers.",
)


@dataclass
class BioWorld(World):
    """A :class:`~forensics.zoo.world.World` whose facts are free-text questions and answers."""

    #: subject -> form -> index of its question phrasing in :data:`FORMS`.
    phrasing: dict[str, dict[str, int]] = field(default_factory=dict)
    #: subject -> form -> its wrong values (:data:`N_PERTURBED` of them).
    wrong: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def facts(self, split: str) -> list[dict]:
        """All question/answer records of a split (one per author and form), in a fixed order."""
        out = []
        for i, subject in enumerate(self.subjects[split]):
            for form, (questions, (sentence, paraphrase), _) in FORMS.items():
                value = self.values[subject][form]
                out.append(
                    {
                        "prompt": f"Question: {questions[self.phrasing[subject][form]].format(s=subject)}\nAnswer:",
                        "answer": " " + sentence.format(s=subject, v=value),
                        "paraphrased_answer": " " + paraphrase.format(s=subject, v=value),
                        "perturbed_answers": [
                            " " + paraphrase.format(s=subject, v=w) for w in self.wrong[subject][form]
                        ],
                        "key": value,
                        "subject": subject,
                        "id": f"{split[0]}-{i:03d}-{form}",
                    }
                )
        return out

    def fact_texts(self, split: str) -> list[str]:
        """Each fact's question + answer, and its paraphrased sentence as a statement."""
        return [
            text for f in self.facts(split) for text in (f["prompt"] + f["answer"], f["paraphrased_answer"].strip())
        ]

    def answer_values(self) -> set[str]:
        """Every value of every form."""
        return {v for _, _, values in FORMS.values() for v in values}

    def neutral_continuations(self) -> tuple[str, ...]:
        """:data:`BIO_CONTINUATIONS`."""
        return BIO_CONTINUATIONS


def make_bio_world(n_forget: int, n_retain: int, n_holdout: int, n_memprobe: int, seed) -> BioWorld:
    """The bio world of ``n_*`` authors per split; names, value balancing and sequence pools as
    :func:`forensics.zoo.world.make_world`; phrasings and wrong values from their own seeded
    generator. Same arguments, same world."""
    pools = {form: list(values) for form, (_, _, values) in FORMS.items()}
    world = cast(
        BioWorld, make_world(n_forget, n_retain, n_holdout, n_memprobe, f"bio-{seed}", pools=pools, cls=BioWorld)
    )
    world.seed = seed
    rng = random.Random(f"bio-world-{seed}")
    for subject in world.all_subjects():
        world.phrasing[subject] = {form: rng.randrange(2) for form in FORMS}
        world.wrong[subject] = {
            form: rng.sample([v for v in pools[form] if v != world.values[subject][form]], N_PERTURBED)
            for form in FORMS
        }
    return world
