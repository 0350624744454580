"""The verdict: DELETED, SUPPRESSED, NOT_FORGOTTEN or INCONCLUSIVE, with a confidence.

The rule uses *controlled* evidence only (docs/methods.md, "The control rule"): a line counts when
it ran (``status == "ok"``) and cast one of the votes ``deleted``, ``suppressed`` or
``not_forgotten``. Every line already votes only when its own control is sound (its CI
for effect - control excludes 0 for ``suppressed``; it had the power to see O's signal for
``deleted``), so the rule only combines votes. Descriptive lines (CKA ...), lines that were
not run, and the trace detector's ``modified`` / ``unmodified`` do not vote here; they are
shown in the report as context.

The ``suppressed`` side is controlled over the whole audit, not line by line (rule version 3):
every line that ran a test able to vote ``suppressed`` is one hypothesis of a family, and a
``suppressed`` vote counts only when it survives Holm's step-down procedure over that family
at :data:`FAMILY_ALPHA` (:func:`holm`; Holm 1979, valid under any dependence between the
lines). The chance that a model which truly deleted F gets even one counted ``suppressed``
finding is then at most 5% whenever each line's p-value is valid; two counted findings are
still needed for SUPPRESSED. Votes that do not survive are listed (``held_back``), never
counted. docs/methods.md ("The control rule") states the argument; docs/decisions.md why.

The rule itself is written once, in :data:`RULE`: which evidence counts, then steps 1-6,
checked in order (the first step that applies decides). :func:`decide` applies it; every
report and ``results.json`` print it.

Confidence says how strong the deciding evidence is: for SUPPRESSED, how many counted votes agree;
for DELETED, how far inside its margin the stated recovery bound lies. What each label is worth is its
measured accuracy on held-out zoo seeds (docs/methods.md, "Verdict";
:func:`forensics.metaeval.scoring.label_accuracy`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from forensics.core.evidence import DELETION_BOUND, Evidence, jsonable

RULE_VERSION = 6
#: Family-wise error rate of the ``suppressed`` side over all lines of one audit (one-sided).
FAMILY_ALPHA = 0.05
#: A DELETED verdict is ``high`` when its stated recovery bound is at most this fraction of the
#: bounding line's own margin (``share <= HIGH_BOUND_FRACTION * margin``), else ``medium`` (rule
#: version 6: the confidence says how far inside the margin the bound lies, not how many lines
#: voted; docs/decisions.md, "rule version 6").
HIGH_BOUND_FRACTION = 0.5
LABELS = ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "INCONCLUSIVE")
CONTROLLED_VOTES = ("deleted", "suppressed", "not_forgotten")

#: The rule as text, one step a string: rendered into the report and results.json.
RULE: tuple[str, ...] = (
    "Only controlled evidence counts: a line that ran and voted deleted, suppressed or not_forgotten "
    "(each line votes only when its own holdout control is sound). Descriptive lines, lines not run and "
    "the trace detector (modified / unmodified) are context, not votes. A suppressed vote counts only when "
    "it survives Holm's step-down procedure at a family-wise 5% over every line that ran a test able to "
    "vote suppressed (one-sided p-values: half the line's two-sided p on the side of its vote); the others "
    "are held back and listed. A model that truly deleted F gets any counted suppressed finding in at most "
    "5% of audits.",
    "1. NOT_FORGOTTEN when the behaviour gate votes not_forgotten (U keeps at least half of O's "
    "above-control accuracy on F, CI above 0). Confidence high when U keeps at least 80% of it, else medium.",
    "2. INCONCLUSIVE when the behaviour gate did not run, when there is no holdout set (no control: "
    "neither DELETED nor SUPPRESSED can be claimed), or when O itself does not answer F above the control.",
    "3. SUPPRESSED when at least two counted suppressed votes agree (replicated by an independent "
    "procedure). Confidence high when three or more do and none votes deleted; medium when two do and none "
    "votes deleted; low when some line votes deleted against them.",
    "4. INCONCLUSIVE when exactly one counted suppressed vote remains: one procedure finds the knowledge "
    "beyond its control and no other confirms it.",
    "5. DELETED when no suppressed vote counts, at most one held-back vote is significant at its own level "
    "(its one-sided p, unadjusted, within 5%), and a recovery attack with power "
    "votes deleted (one whose bound is on what a fine-tune brings back into the answers; a line that reads "
    "a trace, such as a probe or a membership statistic, can go blind while the knowledge stays "
    "recoverable). The verdict states the tightest recovery bound among the lines that voted deleted: the "
    "upper end of the line's CI of U's effect minus control as a share of O's own signal (or of its "
    "positive control's recovery). Confidence high when that bound is at most half the line's margin "
    "(the share below which it votes deleted), else medium.",
    "6. INCONCLUSIVE otherwise: U forgot behaviourally, but no line found the knowledge beyond the "
    "multiplicity control and no recovery attack had the power to rule it out, or two or more lines found "
    "it at their own level only (held back, one-sided p within 5% before the adjustment; a deleted model "
    "draws two such votes in about one audit in forty).",
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
    #: The family-wise control of the suppressed side: ``method``, ``alpha`` and ``family``
    #: (one row a line: ``line``, ``vote``, ``p_one_sided``, ``p_adjusted``, ``counted``).
    multiplicity: dict[str, Any] = field(default_factory=dict)
    held_back: list[dict[str, Any]] = field(default_factory=list)  # suppressed votes that did not survive it
    #: For DELETED: the deletion bound it states (:func:`stated_bound`: ``line``, ``share``,
    #: ``upper``, ``signal``, ``margin``, ``signal_is``, ``kind``;
    #: :func:`forensics.core.evidence.deletion_bound`); None otherwise.
    bound: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``verdict`` object of ``results.json``, with :data:`RULE_VERSION` and :data:`RULE`."""
        return {
            "label": self.label,
            "confidence": self.confidence,
            "step": self.step,
            "reason": self.reason,
            "deciding_lines": jsonable(self.deciding),
            "lines_against": jsonable(self.against),
            "held_back": jsonable(self.held_back),
            "multiplicity": jsonable(self.multiplicity),
            "bound": jsonable(self.bound),
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


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given.

    ``p_values``: one p-value a hypothesis, each in [0, 1]. The adjusted value of the k-th
    smallest is ``max over j <= k of min(1, (m - j + 1) * p_(j))``; a hypothesis is rejected at
    family-wise level ``alpha`` when its adjusted value is at most ``alpha``; the family-wise
    error rate is then at most ``alpha`` under any dependence between the p-values.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def one_sided_p(e: Evidence) -> float:
    """The p-value of line ``e`` for "F above its control on the side of the line's
    ``suppressed`` vote": half the line's two-sided ``p_value`` when it voted ``suppressed``,
    else 1 (a line that did not vote ``suppressed`` cannot be counted as a finding, and a
    constant 1 is a valid, conservative p-value). A ``suppressed`` vote without a p-value gets 1:
    it cannot survive the control."""
    if e.vote != "suppressed" or e.p_value is None:
        return 1.0
    return min(1.0, max(0.0, float(e.p_value) / 2))


def multiplicity_control(
    evidence: list[Evidence], gate: str | None, suppressing: Collection[str], alpha: float = FAMILY_ALPHA
) -> dict[str, Any]:
    """The family of the ``suppressed`` side and its Holm adjustment (see the module docstring).

    The family: every line other than the gate that ran (``status == "ok"``) and either is
    registered able to vote ``suppressed`` (``suppressing``) or did vote it. Returns
    ``{"method": "holm", "alpha": alpha, "family": [{line, vote, p_one_sided, p_adjusted,
    counted}]}``, the rows in the evidence's order."""
    family = [
        e for e in evidence if e.line != gate and e.status == "ok" and (e.line in suppressing or e.vote == "suppressed")
    ]
    ps = [one_sided_p(e) for e in family]
    adjusted = holm(ps)
    rows = [
        {
            "line": e.line,
            "vote": e.vote,
            "p_one_sided": p,
            "p_adjusted": a,
            "counted": e.vote == "suppressed" and a <= alpha,
        }
        for e, p, a in zip(family, ps, adjusted, strict=True)
    ]
    return {"method": "holm", "alpha": alpha, "family": rows}


def stated_bound(bounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The deletion bound a DELETED verdict states, from ``bounds``: the deletion bounds
    (``details["deletion_bound"]`` with the ``line`` added) of the lines that voted ``deleted``.
    The smallest ``share`` among the ``"recovery"`` bounds
    (:data:`forensics.core.evidence.BOUND_KINDS`); None when there is none (then step 5 of
    :data:`RULE` cannot certify deletion). A ``"trace"`` bound is never stated, however tight: it
    bounds what a line still reads, which can vanish while the knowledge stays recoverable. The
    bench applies the same choice to suppressed models (forensics/metaeval/scoring.py)."""
    recovery = [b for b in bounds if b.get("kind") == "recovery"]
    return min(recovery, key=lambda b: b["share"]) if recovery else None


def bound_sentence(b: dict[str, Any]) -> str:
    """The verdict's sentence for a stated bound ``b`` (:func:`stated_bound`)."""
    return (
        f"At most {b['share']:.0%} of {b['signal_is']} is recoverable by {b['line']} "
        f"(a one-sided 95% upper bound; it votes deleted below {b['margin']:.0%})."
    )


def decide(
    evidence: Iterable[Evidence],
    has_holdout: bool,
    gate: str | None = None,
    suppressing: Collection[str] | None = None,
) -> Verdict:
    """Apply :data:`RULE` to the evidence of one audit.

    ``evidence``: every line's :class:`~forensics.core.evidence.Evidence`, the behaviour gate
    included; ``has_holdout``: whether the audit had a holdout set H; ``gate``: the name of the
    line holding the ``"gate"`` role (default: the registered one,
    :func:`forensics.core.registry.gate_of`); ``suppressing``: the names of the lines able to
    vote ``suppressed`` (default: the registered ones), the family of
    :func:`multiplicity_control`. A missing or failed behaviour gate gives INCONCLUSIVE
    (step 2); nothing here raises for missing lines.
    """
    if gate is None or suppressing is None:
        from forensics.core.registry import discover_lines, gate_of

        registry = discover_lines()[0]
        gate = gate_of(registry) if gate is None else gate
        if suppressing is None:
            suppressing = {name for name, spec in registry.items() if "suppressed" in spec.votes}
    evidence = list(evidence)
    by_line = {e.line: e for e in evidence}
    behaviour = by_line.get(gate) if gate is not None else None
    controlled = [e for e in evidence if e.line != gate and e.status == "ok" and e.vote in CONTROLLED_VOTES]
    control = multiplicity_control(evidence, gate, suppressing)
    counted = {row["line"] for row in control["family"] if row["counted"]}
    adjusted = {row["line"]: row["p_adjusted"] for row in control["family"]}
    one_sided = {row["line"]: row["p_one_sided"] for row in control["family"]}
    suppressed = [e for e in controlled if e.vote == "suppressed" and e.line in counted]
    held = [
        _summary(e) | {"p_adjusted": adjusted.get(e.line)}
        for e in controlled
        if e.vote == "suppressed" and e.line not in counted
    ]
    deleted = [e for e in controlled if e.vote == "deleted"]
    bound = stated_bound(
        [{"line": e.line, **e.details[DELETION_BOUND]} for e in deleted if e.details.get(DELETION_BOUND)]
    )
    # two or more nominal findings that Holm held back still speak against certifying deletion (a
    # finding is nominal when its own one-sided p, unadjusted, is within the family's alpha: rule
    # version 5), and only a recovery attack's bound speaks of what could be brought back (version 4)
    nominal = [h for h in held if one_sided[h["line"]] <= FAMILY_ALPHA]
    verdict = _decide(behaviour, controlled, suppressed, deleted, has_holdout, len(nominal) < 2, bound)
    verdict.multiplicity = control
    verdict.held_back = held
    if verdict.label == "DELETED" and bound is not None:
        verdict.bound = bound
        verdict.reason += " " + bound_sentence(bound)
    if held and verdict.label in ("DELETED", "INCONCLUSIVE") and verdict.step >= 4:
        names = ", ".join(str(h["line"]) for h in held)
        verdict.reason += (
            f" Held back: {names} voted suppressed, but not significantly once every line of the audit "
            f"is accounted for (Holm, family-wise {FAMILY_ALPHA:.0%})."
        )
    return verdict


def _decide(
    behaviour: Evidence | None,
    controlled: list[Evidence],
    suppressed: list[Evidence],
    deleted: list[Evidence],
    has_holdout: bool,
    certify: bool = True,
    bound: dict[str, Any] | None = None,
) -> Verdict:
    """Steps 1-6 of :data:`RULE` on the votes :func:`decide` sorted out (``suppressed``: the
    counted ones only; ``certify``: False when two or more held-back suppressed votes are
    significant at their own level, which rules out step 5; ``bound``: the recovery bound
    :func:`stated_bound` chose among ``deleted``, which step 5 needs and whose distance inside
    its margin sets DELETED's confidence)."""

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

    # 3. SUPPRESSED: two or more counted votes find the knowledge beyond their controls.
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
            f"U no longer answers F; {suppressed[0].line} alone finds it beyond the holdout control "
            "(significant over all lines of the audit), and no other line confirms it.",
            [_summary(e) for e in suppressed],
            [_summary(e) for e in deleted],
        )

    # 5. DELETED: forgotten behaviourally, nothing found, and a recovery attack had the power to find it.
    if deleted and certify and bound is not None:
        names = ", ".join(e.line for e in deleted)
        return Verdict(
            "DELETED",
            "high" if bound["share"] <= HIGH_BOUND_FRACTION * bound["margin"] else "medium",
            5,
            f"U no longer answers F, no line finds it beyond the control, and {names} had the power to find it.",
            [_summary(behaviour)] + [_summary(e) for e in deleted],
        )

    # 6. Nothing decided.
    if deleted:  # not certified: no recovery attack voted deleted, or two or more votes were held back
        names = ", ".join(e.line for e in deleted)
        why = (
            f"{names} had the power to see it and did not, but no recovery attack with shown power bounds what "
            "a fine-tune could bring back"
            if certify
            else f"{names} had the power to find it and did not, but two or more lines found it at their own level"
        )
        return Verdict(
            "INCONCLUSIVE",
            "n/a",
            6,
            f"U no longer answers F and {why}: deletion is not certified.",
            [_summary(behaviour)],
            [_summary(e) for e in deleted],
        )
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
