"""The meta-evaluation's scores and tables, pure functions of audited rows: a line's score for
one audited model (:func:`line_score`), the verdict's combined score, the confusion matrix,
the reliability of each confidence label, faithfulness (ROC-AUC) and robustness (UDS
stability). What they mean and where they come from: :mod:`forensics.metaeval.bench`."""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from forensics.compute.stats import binomial_lower, percentile_ci
from forensics.core.evidence import DELETION_BOUND
from forensics.core.registry import discover_lines, gate_of
from forensics.core.verdict import stated_bound

TRUTHS = ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN")
#: The zoo oracle's label when its CI straddles its margin: audited and listed, but left out
#: of the accuracy and the faithfulness (there is no truth to score against).
UNDETERMINED = "UNDETERMINED"
VERDICTS = ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "INCONCLUSIVE")
POSITIVE = ("SUPPRESSED", "NOT_FORGOTTEN")
PERTURBATIONS = ("q4", "relearn")

CONFIDENCE_WEIGHT: dict[Any, float] = {"high": 1.0, "medium": 2 / 3, "low": 1 / 3}

#: Published meta-evaluation figures (UDS paper, TOFU forget10, Llama-3.2-1B): faithfulness, robustness.
PUBLISHED = {"UDS": (0.971, 0.933), "logit lens": (0.927, 0.879), "Min-K": (0.907, 0.675), "CKA": (0.648, 0.026)}


# --------------------------------------------------------------------------- scores


def line_score(entry: dict[str, Any], lines: dict | None = None) -> float | None:
    """A line's score for one audited model (see the module docstring), from its results.json
    entry, oriented by the side of the control the line declares (:data:`forensics.core.registry.Side`;
    a line not registered here scores ``|effect - control|``). ``lines``: the registry
    (:func:`forensics.core.registry.discover_lines`; discovered when not given)."""
    from forensics.core.registry import discover_lines

    if entry.get("status") == "not_run" or entry.get("effect") is None or entry.get("control") is None:
        return None
    diff = float(entry["effect"]) - float(entry["control"])
    if not math.isfinite(diff):
        return None
    spec = (lines if lines is not None else discover_lines()[0]).get(entry["line"])
    if spec is not None and spec.side == "o_side":
        o_side: Any = entry.get("details") or {}
        for key in spec.o_side_path:
            o_side = o_side.get(key, {}) if isinstance(o_side, dict) else {}
        return diff * (-1.0 if isinstance(o_side, (int, float)) and o_side < 0 else 1.0)
    return diff if spec is not None and spec.side == "above" else abs(diff)


def verdict_score(verdict: dict[str, Any]) -> float:
    """The combined score of a results.json ``verdict``: +1 for SUPPRESSED / NOT_FORGOTTEN, -1
    for DELETED, 0 for INCONCLUSIVE, times :data:`CONFIDENCE_WEIGHT` (1 for any other confidence)."""
    sign = {"SUPPRESSED": 1.0, "NOT_FORGOTTEN": 1.0, "DELETED": -1.0}.get(verdict["label"], 0.0)
    return sign * CONFIDENCE_WEIGHT.get(verdict.get("confidence"), 1.0)


def scores_of(results: dict[str, Any]) -> dict[str, float]:
    """Every line's score plus the combined ``verdict`` score of one results.json."""
    from forensics.core.registry import discover_lines

    lines = discover_lines()[0]
    out = {e["line"]: s for e in results["evidence"] if (s := line_score(e, lines)) is not None}
    out["verdict"] = verdict_score(results["verdict"])
    return out


def roc_auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(score of a positive > score of a negative), ties one half (Mann-Whitney)."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def uds_stability(before: float, after: float) -> float:
    """UDS stability of a score under a perturbation: ``1 - |after - before| / (|after| + |before|)``,
    1 when both are 0; in [0, 1]."""
    denom = abs(before) + abs(after)
    return 1.0 if denom == 0 else 1.0 - abs(after - before) / denom


def scaled_stability(before: float, after: float, gap: float | None) -> float | None:
    """Gap-scaled stability ``max(0, 1 - |after - before| / gap)``; None without a gap (None or 0)."""
    if not gap:
        return None
    return max(0.0, 1.0 - abs(after - before) / gap)


def harmonic(a: float | None, b: float | None) -> float | None:
    """Harmonic mean of two stabilities (0 when both are 0; None when either is missing)."""
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


# --------------------------------------------------------------------------- tables


def confusion(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Confusion matrix (truth -> verdict -> count), accuracy and deleted-called-suppressed count.
    Rows without a scorable truth (the oracle's UNDETERMINED) are left out."""
    rows = [row for row in rows if row["truth"] in TRUTHS]
    matrix = {t: {v: 0 for v in VERDICTS} for t in TRUTHS}
    for row in rows:
        matrix[row["truth"]][row["verdict"]] += 1
    n = len(rows)
    correct = sum(row["truth"] == row["verdict"] for row in rows)
    return {
        "matrix": matrix,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "deleted_called_suppressed": matrix["DELETED"]["SUPPRESSED"],
    }


def reliability(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reliability of each confidence label: per (verdict, confidence) of the decisive
    verdicts (DELETED, SUPPRESSED, NOT_FORGOTTEN) among ``rows`` with a scorable truth, the count
    and the share whose verdict equals the ground truth; INCONCLUSIVE rows are counted apart
    (``right`` None: they claim nothing). Ordered by verdict, then high / medium / low."""
    rows = [row for row in rows if row["truth"] in TRUTHS]
    order = {"high": 0, "medium": 1, "low": 2}
    cells: dict[tuple[str, str], list[bool]] = {}
    for row in rows:
        cells.setdefault((row["verdict"], str(row["confidence"])), []).append(row["verdict"] == row["truth"])
    out = []
    for (verdict, confidence), hits in sorted(
        cells.items(), key=lambda kv: (VERDICTS.index(kv[0][0]), order.get(kv[0][1], 3))
    ):
        decisive = verdict != "INCONCLUSIVE"
        out.append(
            {
                "verdict": verdict,
                "confidence": confidence,
                "n": len(hits),
                "right": sum(hits) if decisive else None,
                "share_right": sum(hits) / len(hits) if decisive else None,
                "lower_95": binomial_lower(sum(hits), len(hits)) if decisive else None,
            }
        )
    return out


def scored_audits(models: list[dict[str, Any]], perturbed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows :func:`reliability` and :func:`label_accuracy` score: the bench's model rows, and
    each perturbed copy of a deleted model as ``{"truth": "DELETED", "verdict", "confidence"}``."""
    return models + [{"truth": "DELETED", "verdict": p["verdict"], "confidence": p["confidence"]} for p in perturbed]


def label_accuracy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each confidence label is worth, measured: per label (high, medium, low), over the
    decisive verdicts among ``rows`` with a scorable truth, the count, the share right and its
    one-sided 95% lower bound (:func:`forensics.compute.stats.binomial_lower`, Clopper-Pearson).
    A label means "right in at least ``lower_95`` of such audits" on the zoos benched; the audits
    are treated as independent trials (models of one seed share an original, so the bound is
    optimistic where they agree for a shared reason). Labels with no audit are left out."""
    hits: dict[str, list[bool]] = {}
    for row in rows:
        if row["truth"] in TRUTHS and row["verdict"] != "INCONCLUSIVE":
            hits.setdefault(str(row["confidence"]), []).append(row["verdict"] == row["truth"])
    return [
        {
            "confidence": label,
            "n": len(hits[label]),
            "right": sum(hits[label]),
            "share_right": sum(hits[label]) / len(hits[label]),
            "lower_95": binomial_lower(sum(hits[label]), len(hits[label])),
        }
        for label in ("high", "medium", "low")
        if label in hits
    ]


def meta_evaluation(rows: list[dict[str, Any]], perturbed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Faithfulness and robustness of every line (and of the verdict score), pooled over seeds:
    ``{name: {"faithfulness", "robustness", "stability_q4", "stability_relearn", ... "gap"}}``."""
    names = sorted(
        {n for row in rows for n in row["scores"]} | {n for p in perturbed for n in p["scores"]},
        key=lambda n: (n != "verdict", n),
    )
    table = {}
    for name in names:
        pos = [r["scores"][name] for r in rows if r["truth"] in POSITIVE and name in r["scores"]]
        neg = [r["scores"][name] for r in rows if r["truth"] == "DELETED" and name in r["scores"]]
        gap = abs(statistics.median(pos) - statistics.median(neg)) if pos and neg else None
        stab: dict[str, dict[str, list[float]]] = {k: {"uds": [], "scaled": []} for k in PERTURBATIONS}
        for p in perturbed:
            before, after = p["before"].get(name), p["scores"].get(name)
            if before is None or after is None:
                continue
            stab[p["perturbation"]]["uds"].append(uds_stability(before, after))
            scaled = scaled_stability(before, after, gap)
            if scaled is not None:
                stab[p["perturbation"]]["scaled"].append(scaled)
        q, r = _mean(stab["q4"]["uds"]), _mean(stab["relearn"]["uds"])
        qs, rs = _mean(stab["q4"]["scaled"]), _mean(stab["relearn"]["scaled"])
        table[name] = {
            "faithfulness": roc_auc(pos, neg),
            "n_positive": len(pos),
            "n_negative": len(neg),
            "stability_q4": q,
            "stability_relearn": r,
            "robustness": harmonic(q, r),
            "stability_q4_scaled": qs,
            "stability_relearn_scaled": rs,
            "robustness_scaled": harmonic(qs, rs),
            "gap": gap,
            "n_perturbed": len(stab["q4"]["uds"]) + len(stab["relearn"]["uds"]),
            "robustness_ci": robustness_interval(perturbed, name),
        }
    return table


def copy_key(copy: dict[str, Any]) -> tuple:
    """The deleted model a perturbed copy was made from: ``(bench, seed, model)`` (``bench`` is
    set only where copies of several benches are pooled, else None)."""
    return (copy.get("bench"), copy.get("seed"), copy.get("model"))


def robustness_interval(
    perturbed: list[dict[str, Any]], name: str = "verdict", level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> list[float] | None:
    """Percentile bootstrap interval ``[low, high]`` at ``level`` of the robustness
    :func:`meta_evaluation` reports for score ``name`` (harmonic mean of the mean 4-bit and the
    mean relearning UDS stability), resampling the deleted models, not the copies: a model's
    4-bit and relearned copies share its evidence, so they are drawn together
    (:func:`copy_key`). ``n_boot`` draws, seeded (the same rows give the same interval); draws
    with no copy of one perturbation are skipped. None with fewer than two deleted models or
    no copy of either perturbation. With 12 deleted models one copy losing a confidence step
    moves the verdict's robustness by about 0.01: a target such as 0.95 is read against this
    interval, not the point alone."""
    clusters: dict[tuple, list[float]] = {}
    for p in perturbed:
        before, after = p["before"].get(name), p["scores"].get(name)
        if before is None or after is None:
            continue
        sums = clusters.setdefault(copy_key(p), [0.0, 0.0, 0.0, 0.0])  # q sum, q count, r sum, r count
        k = 0 if p["perturbation"] == "q4" else 2
        sums[k] += uds_stability(before, after)
        sums[k + 1] += 1
    table = np.array(list(clusters.values())).reshape(-1, 4)
    if len(table) < 2 or not table[:, 1].sum() or not table[:, 3].sum():
        return None
    draws = table[np.random.default_rng(seed).integers(0, len(table), size=(n_boot, len(table)))].sum(axis=1)
    draws = draws[(draws[:, 1] > 0) & (draws[:, 3] > 0)]
    q, r = draws[:, 0] / draws[:, 1], draws[:, 2] / draws[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        robust = np.where(q + r > 0, 2 * q * r / (q + r), 0.0)
    low, high = percentile_ci(robust, level)
    return [low, high]


def hard_negative_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The hard negatives' verdicts: ``{"n", "called_suppressed", "models": [{seed, model,
    truth, verdict, confidence}]}`` (rows flagged ``hard_negative``)."""
    models = [
        {k: r[k] for k in ("seed", "model", "truth", "verdict", "confidence")} for r in rows if r.get("hard_negative")
    ]
    return {"n": len(models), "called_suppressed": sum(m["verdict"] == "SUPPRESSED" for m in models), "models": models}


# --------------------------------------------------------------------------- bound honesty


#: ``bound_cases``' name for the bound the verdict would have stated.
STATED = "verdict"


def bound_cases(
    seed: int, model: str, oracle: dict[str, Any] | None, results: dict[str, Any], gate: str | None = None
) -> list[dict[str, Any]]:
    """For one suppressed zoo model: each line's deletion bound (``details["deletion_bound"]``,
    stated whether or not the line voted ``deleted``) beside the zoo oracle's recovery, both as
    shares of O's signal on F.

    ``oracle``: the model's oracle record from the zoo's ``labels.json`` (its ``difference``:
    recovery above ``retrain`` in the oracle's measure); ``results``: the audit's
    ``results.json``. O's signal is the ``original_margin`` of the line holding the registry's
    gate role (:func:`forensics.core.registry.gate_of`: O's F minus H in
    the gate's measure, which on the zoo's own data is the oracle's: key ROUGE-L recall on free
    text, greedy accuracy on the closed world; ``gate``: that line's name, looked up when None).
    Returns ``[{seed, model, line, share, oracle_share, vote, kind}]``, empty when the oracle or O's signal is missing; when a
    recovery attack voted ``deleted``, one more case with ``line`` ``"verdict"``: the bound the
    verdict would have stated from those votes (:func:`forensics.core.verdict.stated_bound`), the
    claim a DELETED verdict makes.
    """
    if not oracle or oracle.get("difference") is None:
        return []
    evidence = results.get("evidence", [])
    gate = gate or gate_of(discover_lines()[0])
    signal = next(
        (e["details"].get("original_margin") for e in evidence if e["line"] == gate and e.get("details")), None
    )
    if signal is None or not signal > 0:
        return []
    oracle_share = max(float(oracle["difference"]), 0.0) / float(signal)
    bounds = [
        (e.get("vote"), {"line": e["line"], **e["details"][DELETION_BOUND]})
        for e in evidence
        if (e.get("details") or {}).get(DELETION_BOUND)
    ]
    cases = [
        {
            "seed": seed,
            "model": model,
            "line": b["line"],
            "share": float(b["share"]),
            "oracle_share": oracle_share,
            "vote": vote,
            "kind": b.get("kind"),
        }
        for vote, b in bounds
    ]
    stated = stated_bound([b for vote, b in bounds if vote == "deleted" and b["line"] != gate])
    if stated is not None:
        cases.append(
            {
                "seed": seed,
                "model": model,
                "line": STATED,
                "share": float(stated["share"]),
                "oracle_share": oracle_share,
                "vote": "deleted",
                "kind": stated.get("kind"),
                "from_line": stated["line"],
            }
        )
    return cases


def bound_honesty(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per line, how its deletion bounds on suppressed models compare with the oracle's recovery
    (:func:`bound_cases`): ``{line: {"bounds", "below_oracle", "missed": [case, ...]}}``. A bound
    is honest when its share is at least the oracle's: a bound below it would have certified less
    recoverable knowledge than the oracle recovered."""
    table: dict[str, dict[str, Any]] = {}
    for c in cases:
        row = table.setdefault(c["line"], {"bounds": 0, "below_oracle": 0, "missed": []})
        row["bounds"] += 1
        if c["share"] < c["oracle_share"]:
            row["below_oracle"] += 1
            row["missed"].append(c)
    return table
