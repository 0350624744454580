"""The common contract every evidence line follows.

An evidence line is one question asked of an (original, unlearned) model pair. It
declares what it *needs* (which models and data sets) and returns an :class:`Evidence`:

- ``effect``: the line's score measured on the forget set F;
- ``control``: the identical procedure measured on the holdout set H (facts no model
  ever saw), or on the reference model when that is the line's control;
- ``ci``: a confidence interval for ``effect - control`` (the number that matters);
- ``p_value``: two-sided, for ``effect - control == 0``;
- ``vote``: what the line says about the verdict (``None`` when it does not vote:
  descriptive lines, lines that were not run, lines whose control failed);
- ``details``: JSON-serialisable tables (per-layer curves, per-set metrics ...);
- ``figures``: name -> PNG bytes.

A line that cannot run on the given inputs returns ``Evidence.not_run(...)`` with the
reason instead of a meaningless number. Lines are declared with
:func:`forensics.core.registry.register`.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "descriptive", "not_run"]
Vote = Literal["deleted", "suppressed", "not_forgotten", "modified", "unmodified"]


@dataclass
class Evidence:
    """What one evidence line found (see the module docstring for the fields)."""

    #: The line's name and question: stamped from its registration (:func:`forensics.core.registry.register`),
    #: so a line leaves them empty.
    line: str = ""
    question: str = ""
    status: Status = "ok"
    effect: float | None = None
    control: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    vote: Vote | None = None
    reason: str = ""
    metric: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)

    @property
    def difference(self) -> float | None:
        """``effect - control`` (None when either is missing)."""
        if self.effect is None or self.control is None:
            return None
        return self.effect - self.control

    @classmethod
    def not_run(cls, *parts: str) -> Evidence:
        """A line that could not run: ``Evidence.not_run(reason)`` (name and question are stamped
        from the registration), or ``Evidence.not_run(line, question, reason)`` (the form lines
        written before the stamping use)."""
        if len(parts) == 1:
            return cls(status="not_run", reason=parts[0])
        if len(parts) == 3:
            return cls(line=parts[0], question=parts[1], status="not_run", reason=parts[2])
        raise TypeError(f"Evidence.not_run takes (reason) or (line, question, reason), not {len(parts)} arguments")

    def to_json(self, include_figures: bool = False) -> dict[str, Any]:
        """The line's ``results.json`` entry; ``include_figures`` adds the PNGs as base64
        (``figure_data``), as the resume cache stores them."""
        out = {
            "line": self.line,
            "question": self.question,
            "status": self.status,
            "metric": self.metric,
            "effect": _finite(self.effect),
            "control": _finite(self.control),
            "difference": _finite(self.difference),
            "ci": [_finite(x) for x in self.ci] if self.ci else None,
            "p_value": _finite(self.p_value),
            "vote": self.vote,
            "reason": self.reason,
            "details": jsonable(self.details),
            "figures": sorted(self.figures),
        }
        if include_figures:
            out["figure_data"] = {k: base64.b64encode(v).decode() for k, v in self.figures.items()}
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Evidence:
        """The inverse of :meth:`to_json` (figures only when ``figure_data`` is present)."""
        return cls(
            line=obj["line"],
            question=obj["question"],
            status=obj["status"],
            effect=obj["effect"],
            control=obj["control"],
            ci=tuple(obj["ci"]) if obj["ci"] else None,
            p_value=obj["p_value"],
            vote=obj["vote"],
            reason=obj["reason"],
            metric=obj["metric"],
            details=obj["details"],
            figures={k: base64.b64decode(v) for k, v in obj.get("figure_data", {}).items()},
        )


#: ``Evidence.details`` key of a line's deletion bound (:func:`deletion_bound`).
DELETION_BOUND = "deletion_bound"


#: What a deletion bound is a bound on (``deletion_bound(..., kind=)``): ``"recovery"``, what an
#: attack brings back into U's answers, in the answer measure (the zoo oracle's quantity: the
#: relearning attack); ``"trace"``, what a read-out of U's internals, loss surface or membership
#: statistics still sees of O's signal (probes, REMIND, membership inference). A trace can vanish
#: while the knowledge is still recoverable (docs/decisions.md, "only a recovery attack's bound
#: certifies deletion").
BOUND_KINDS = ("recovery", "trace")


def deletion_bound(upper: float, signal: float, margin: float, signal_is: str, *, kind: str) -> dict[str, Any] | None:
    """What a line that can vote ``deleted`` could have missed, as an equivalence bound.

    ``upper``: the upper end of the line's CI of U's effect minus control (its largest
    recovery consistent with the data; for a two-sided equivalence test, the larger absolute
    end); ``signal``: the same quantity for the knowledge the line must be able to see (O's own
    effect minus control on F, or a positive control's recovery), in the same units;
    ``margin``: the share of ``signal`` below which the line votes ``deleted``; ``signal_is``:
    what ``signal`` is, in words; ``kind``: one of :data:`BOUND_KINDS` (ValueError otherwise).
    Returns ``{"upper", "signal", "share", "margin", "signal_is", "kind"}`` with
    ``share = max(upper, 0) / signal`` (the share of O's signal the line could have missed),
    or None when ``signal`` is not positive (no bound: nothing to compare with). The CIs behind
    ``upper`` are two-sided 95% (or wider, adjusted), so ``upper`` is at least a one-sided 95%
    upper bound.
    """
    if kind not in BOUND_KINDS:
        raise ValueError(f"unknown deletion bound kind {kind!r}: one of {', '.join(BOUND_KINDS)}")
    if not math.isfinite(signal) or signal <= 0 or not math.isfinite(upper):
        return None
    return {
        "upper": float(upper),
        "signal": float(signal),
        "share": max(float(upper), 0.0) / float(signal),
        "margin": float(margin),
        "signal_is": signal_is,
        "kind": kind,
    }


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into plain Python (and NaN/inf into None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return jsonable(value.tolist())
    if isinstance(value, float):
        return _finite(value)
    return value


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
