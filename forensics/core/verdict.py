"""The verdict: DELETED, SUPPRESSED, NOT_FORGOTTEN or INCONCLUSIVE, with a confidence.

The rule uses *controlled* evidence only (docs/methods.md, "The control rule"): a line counts when
it ran (``status == "ok"``) and cast one of the votes ``deleted``, ``suppressed`` or
``not_forgotten``. Every line already votes only when its own control is sound (its CI
for effect - control excludes 0 for ``suppressed``; it had the power to see O's signal for
``deleted``), so the rule only combines votes. Descriptive lines (CKA ...), lines that were
not run, and the trace detector's ``modified`` / ``unmodified`` do not vote here; they are
shown in the report as context.

The rule itself is written once, in :data:`RULE`: which evidence counts, then steps 1-6,
checked in order (the first step that applies decides). :func:`decide` applies it; every
report and ``results.json`` print it.

Confidence is a label, not a probability: it says how much independent evidence agrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from forensics.core.evidence import Evidence, jsonable

RULE_VERSION = 2
LABELS = ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "INCONCLUSIVE")
CONTROLLED_VOTES = ("deleted", "suppressed", "not_forgotten")

#: The rule as text, one step a string: rendered into the report and results.json.
RULE: tuple[str, ...] = (
    "Only controlled evidence counts: a line that ran and voted deleted, suppressed or not_forgotten "
    "(each line votes only when its own holdout control is sound). Descriptive lines, lines not run and "
    "the trace detector (modified / unmodified) are context, not votes.",
    "1. NOT_FORGOTTEN when the behaviour gate votes not_forgotten (U keeps at least half of O's "
    "above-control accuracy on F, CI above 0). Confidence high when U keeps at least 80% of it, else medium.",
    "2. INCONCLUSIVE when the behaviour gate did not run, when there is no holdout set (no control: "
    "neither DELETED nor SUPPRESSED can be claimed), or when O itself does not answer F above the control.",
    "3. SUPPRESSED when at least two controlled lines vote suppressed (replicated by an independent "
    "procedure). Confidence high when three or more do and none votes deleted; medium when two do and none "
    "votes deleted; low when some line votes deleted against them.",
    "4. INCONCLUSIVE when exactly one line votes suppressed: one procedure finds the knowledge beyond its "
    "control and no other confirms it (each vote is a one-sided test at about 2.5% false-positive rate over "
    "about eight lines: one stray vote on a deleted model in about one audit in six, two in about one in sixty).",
    "5. DELETED when no line votes suppressed and at least one line with power votes deleted. "
    "Confidence high with two or more deleted votes, else medium.",
    "6. INCONCLUSIVE otherwise: U forgot behaviourally, but no line found the knowledge and none had "
    "the power to rule it out.",
)


@dataclass
class Verdict:
    """One audit's verdict: the label, its confidence, the :data:`RULE` step that decided it,
    and summaries of the lines that decided it and of the controlled lines that voted otherwise."""

    label: str
    confidence: str  # "high" | "medium" | "low" | "n/a"
    step: int  # which step of RULE decided (1-6)
    reason: str  # one sentence: why
    deciding: list[dict[str, Any]] = field(default_factory=list)  # the lines that decided it
    against: list[dict[str, Any]] = field(default_factory=list)  # controlled lines that voted otherwise

    def to_json(self) -> dict[str, Any]:
        """The ``verdict`` object of ``results.json``, with :data:`RULE_VERSION` and :data:`RULE`."""
        return {
            "label": self.label,
            "confidence": self.confidence,
            "step": self.step,
            "reason": self.reason,
            "deciding_lines": jsonable(self.deciding),
            "lines_against": jsonable(self.against),
            "rule_version": RULE_VERSION,
            "rule": list(RULE),
        }


def _summary(e: Evidence) -> dict[str, Any]:
    return {
        "line": e.line,
        "vote": e.vote,
        "metric": e.metric,
        "effect": e.effect,
        "control": e.control,
        "ci": list(e.ci) if e.ci else None,
        "p_value": e.p_value,
        "reason": e.reason,
    }


def decide(evidence: Iterable[Evidence], has_holdout: bool, gate: str | None = None) -> Verdict:
    """Apply :data:`RULE` to the evidence of one audit.

    ``evidence``: every line's :class:`~forensics.core.evidence.Evidence`, the behaviour gate
    included; ``has_holdout``: whether the audit had a holdout set H; ``gate``: the name of the
    line holding the ``"gate"`` role (default: the registered one,
    :func:`forensics.core.registry.gate_of`). A missing or failed behaviour gate gives
    INCONCLUSIVE (step 2); nothing here raises for missing lines.
    """
    if gate is None:
        from forensics.core.registry import discover_lines, gate_of

        gate = gate_of(discover_lines()[0])
    evidence = list(evidence)
    by_line = {e.line: e for e in evidence}
    behaviour = by_line.get(gate) if gate is not None else None
    controlled = [e for e in evidence if e.line != gate and e.status == "ok" and e.vote in CONTROLLED_VOTES]
    suppressed = [e for e in controlled if e.vote == "suppressed"]
    deleted = [e for e in controlled if e.vote == "deleted"]

    # 1. NOT_FORGOTTEN: the behaviour gate.
    if behaviour is not None and behaviour.status == "ok" and behaviour.vote == "not_forgotten":
        share = behaviour.details.get("retained_share")
        confidence = "high" if share is not None and share >= 0.8 else "medium"
        kept = f"{share:.0%} of" if share is not None else "much of"
        return Verdict(
            "NOT_FORGOTTEN",
            confidence,
            1,
            f"U still answers the forget set: it keeps {kept} O's above-control accuracy.",
            [_summary(behaviour)],
            [_summary(e) for e in controlled],
        )

    # 2. Preconditions for a representation-level verdict.
    if behaviour is None or behaviour.status != "ok":
        why = behaviour.reason if behaviour is not None else "it is not registered"
        return Verdict("INCONCLUSIVE", "n/a", 2, f"The behaviour gate did not run ({why}).")
    if not has_holdout:
        return Verdict(
            "INCONCLUSIVE",
            "n/a",
            2,
            "No holdout set: without a control no line can tell deletion from suppression.",
            [],
            [_summary(e) for e in controlled],
        )
    margin = behaviour.details.get("original_margin")
    if margin is None:  # a gate without its own margin: exact match from its table
        table = behaviour.details.get("table", {}).get("original", {})
        o_f, o_h = table.get("forget", {}).get("accuracy"), table.get("holdout", {}).get("accuracy")
        margin = o_f - o_h if o_f is not None and o_h is not None else None
    if margin is None or not margin > 0:
        return Verdict(
            "INCONCLUSIVE",
            "n/a",
            2,
            "The original model does not answer the forget set above the holdout control: there was nothing to forget.",
            [_summary(behaviour)],
        )

    # 3. SUPPRESSED: two or more controlled lines find the knowledge beyond their controls.
    if len(suppressed) >= 2:
        if deleted:
            confidence = "low"
        else:
            confidence = "high" if len(suppressed) >= 3 else "medium"
        names = ", ".join(e.line for e in suppressed)
        return Verdict(
            "SUPPRESSED",
            confidence,
            3,
            f"U no longer answers F, but {names} still find it beyond the holdout control.",
            [_summary(e) for e in suppressed],
            [_summary(e) for e in deleted],
        )

    # 4. A single line finds it: not replicated.
    if suppressed:
        return Verdict(
            "INCONCLUSIVE",
            "n/a",
            4,
            f"U no longer answers F; {suppressed[0].line} alone finds it beyond the holdout control, "
            "and no other line confirms it (one stray vote is expected in about one audit in six of "
            "a model that really deleted F).",
            [_summary(e) for e in suppressed],
            [_summary(e) for e in deleted],
        )

    # 5. DELETED: forgotten behaviourally, nothing found, and some line had the power to find it.
    if deleted:
        names = ", ".join(e.line for e in deleted)
        return Verdict(
            "DELETED",
            "high" if len(deleted) >= 2 else "medium",
            5,
            f"U no longer answers F, no line finds it beyond the control, and {names} had the power to find it.",
            [_summary(behaviour)] + [_summary(e) for e in deleted],
        )

    # 6. Nothing decided.
    return Verdict(
        "INCONCLUSIVE",
        "n/a",
        6,
        "U no longer answers F, but no line found the knowledge and none had the power to rule it out.",
        [_summary(behaviour)],
    )


def plain_words(verdict: Verdict, behaviour: Evidence | None) -> str:
    """One paragraph for an auditor: what the verdict means, plus O's and U's accuracies from
    the behaviour gate's table when ``behaviour`` ran."""
    lines = {
        "DELETED": "The evidence is consistent with the knowledge having been removed from the model's weights: "
        "the unlearned model no longer produces the forgotten answers, and the tests able to find "
        "hidden traces of them found nothing beyond what they find for facts no model ever saw.",
        "SUPPRESSED": "The unlearned model no longer produces the forgotten answers, but the knowledge is still "
        "inside it: at least two independent tests recover it from the model's internals (or "
        "with a light attack) clearly beyond what the same tests recover for facts no model ever saw. "
        "The unlearning blocked the output; it did not remove the information.",
        "NOT_FORGOTTEN": "The unlearned model still answers the forget set much as the original does: "
        "unlearning did not take effect at the level of behaviour.",
        "INCONCLUSIVE": "The audit cannot tell whether the knowledge was deleted or merely suppressed: "
        "see the reason below and the evidence table.",
    }
    text = lines[verdict.label]
    if behaviour is not None and behaviour.status == "ok":
        table = behaviour.details.get("table", {})
        o, u = table.get("original", {}), table.get("unlearned", {})
        if "forget" in o and "forget" in u:
            text += (
                f" On the forget set, the original model answered {o['forget']['accuracy']:.0%} of the facts "
                f"and the unlearned model {u['forget']['accuracy']:.0%}"
            )
            if "holdout" in u:
                text += f" (its score on unseen holdout facts, i.e. guessing, is {u['holdout']['accuracy']:.0%})"
            if "retain" in u and "retain" in o:
                text += (
                    f"; on the retain set it answered {u['retain']['accuracy']:.0%} "
                    f"(original {o['retain']['accuracy']:.0%})"
                )
            text += "."
    return text
