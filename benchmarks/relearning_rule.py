"""A change to the relearning attack's vote rule measured on stored evidence: re-decide the line's
vote in every audit a bench stored, under two sets of its decision settings, then each audit's
verdict, and print both verdict tables.

    python benchmarks/relearning_rule.py BENCH_OUT [BENCH_OUT ...] \\
        [--before power_against=margin,suppressed_end=plain] [--after ""]

``BENCH_OUT``: a ``forensics bench`` output folder (``bench.json`` and ``audits/``) whose audits ran
the relearning attack. The line's vote (:func:`forensics.lines.relearning_attack.decide`) is a pure
function of numbers its evidence stores: the CI, the deletion bound (``upper_by_step``), the
positive control's recovery, O's signal, U's accuracy on F_b and H_b before the attack (per split,
so ``forgot_margin`` can be re-applied), the splits and the subjects per half. Each side
re-decides it from them with the stored ``config`` overridden by that side's settings
(``DECISION_ONLY`` settings of :class:`RelearningConfig`, ``name=value`` pairs; ``n_boot`` and
``n_perm`` have no effect, the CIs are not recomputed), puts the new vote and the deletion bound
the line would state in the evidence and decides the verdict with the checkout's rule
(:func:`forensics.core.verdict.decide`). Printed first, and should read 0: audits whose
before-side vote or deletion bound differs from the stored one (the before settings are not what
the bench ran). Then, per
bench and pooled: the confusion matrix, the perturbed copies' verdicts and verdict robustness
(as ``benchmarks/line_swap.py`` prints them) and the line's votes, before and after; the
line's deletion bounds as shares of O's signal, by truth; then every vote and verdict that
changed, with the numbers that moved it; pooled over several benches, also what each confidence
label is worth (:func:`forensics.metaeval.scoring.label_accuracy`). Used by docs/results/2026-12-07-relearning-tests.md,
docs/results/2026-12-07-deletion-margin.md and docs/results/2026-12-07-trace-recovery.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from forensics.core.config import parse_value
from forensics.core.evidence import DELETION_BOUND, Evidence
from forensics.core.verdict import decide as verdict_of
from forensics.lines.relearning_attack import DECISION_ONLY, RelearningConfig, decide
from forensics.lines.relearning_attack.line import forgot_before_attack, line_deletion_bound, suppressed_lower
from forensics.metaeval.scoring import label_accuracy, scored_audits, verdict_score
from forensics.metaeval.stored import NotABench, stored_audits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_swap import audit_name, bound_shares, line_upper, redecide_all, table  # a sibling script

LINE = "relearning_attack"


def settings(text: str) -> dict[str, Any]:
    """``"a=x,b=y"`` -> ``{"a": x, "b": y}``, each a decision-only setting, typed as the field
    (:func:`forensics.core.config.parse_value`, as ``--set`` parses it: ``none`` for None)."""
    hints = typing.get_type_hints(RelearningConfig)
    out: dict[str, Any] = {}
    for pair in filter(None, text.split(",")):
        name, _, value = pair.partition("=")
        if name not in DECISION_ONLY:
            raise SystemExit(f"relearning_rule: {name!r} is not a decision-only setting ({', '.join(DECISION_ONLY)})")
        out[name] = parse_value(value, hints[name], name)
    return out


def config_of(stored: dict[str, Any], overrides: dict[str, Any]) -> RelearningConfig:
    """The line's config as the audit stored it (lists back to tuples), with ``overrides``."""
    known = {f.name for f in fields(RelearningConfig)}
    kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    return replace(RelearningConfig(**kw), **overrides)


def revote(evidence: dict[str, Any], overrides: dict[str, Any]) -> tuple[str | None, str, float, dict | None]:
    """The relearning attack's ``(vote, reason, lower end, deletion bound)`` re-decided from
    ``evidence`` (a results.json entry) under its stored config with ``overrides``; the bound is
    the ``details["deletion_bound"]`` the line would store (the verdict states it and needs it to
    certify deletion)."""
    d = evidence["details"]
    config = config_of(evidence["config"], overrides)
    ci = (float(evidence["ci"][0]), float(evidence["ci"][1]))
    upper = line_upper(evidence)
    control = d.get("positive_control")
    power = control["recovery_forget_b"] if control else None
    signal = (d.get("original_signal") or {}).get("signal")
    n_half = min(min(r["n_subjects_forget_b"], r["n_subjects_holdout_b"]) for r in d["per_seed"])
    lower = suppressed_lower(ci, evidence["effect"] - evidence["control"], n_half, config)
    ref = tuple(d["reference_ci"]) if d.get("reference_ci") else None
    splits = len(d["per_seed"])
    forgot = forgot_before_attack(d["per_seed"], config)
    vote, why = decide(
        ci, ref, power, forgot, evidence["effect"], evidence["control"], config, upper, signal, splits, lower
    )
    return vote, why, lower, line_deletion_bound(upper, power, signal, forgot, d["measure"], config, splits)


def redecided(bench: Path, overrides: dict[str, Any]) -> tuple[list[dict], list[dict], list[str]]:
    """``bench``'s model and perturbed rows with the line re-voted under ``overrides`` and the
    verdict re-decided: ``(rows, perturbed, differs)``, ``differs`` naming the audits whose new
    vote is not the stored one. Each row gains ``line_vote`` and ``line_numbers``."""
    differs: list[str] = []

    def redo(row: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        evidence = copy.deepcopy(results["evidence"])
        out = copy.deepcopy(row)
        out["line_vote"], out["line_numbers"] = None, ""
        for e in evidence:
            if e["line"] == LINE and e.get("status") == "ok":
                stored_bound = e["details"].get(DELETION_BOUND)
                vote, why, lower, e["details"][DELETION_BOUND] = revote(e, overrides)
                if vote != e["vote"]:
                    differs.append(f"seed {row['seed']} {audit_name(row)}: stored {e['vote']}, now {vote}")
                elif e["details"][DELETION_BOUND] != stored_bound:
                    differs.append(
                        f"seed {row['seed']} {audit_name(row)}: the deletion bound differs from the stored one"
                    )
                d = e["details"]
                bound = (d.get(DELETION_BOUND) or {}).get("upper")
                control = (d.get("positive_control") or {}).get("recovery_forget_b")
                signal = (d.get("original_signal") or {}).get("signal")
                out["line_numbers"] = (
                    f"CI [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}], widened lower {lower:+.3f}, p {e['p_value']:.3f}; "
                    + (f"bound {bound:+.3f}" if bound is not None else "no bound")
                    + (f", control {control:.3f}" if control is not None else "")
                    + (
                        f", margin {config_of(e['config'], overrides).deleted_share * signal:.3f}"
                        if signal is not None
                        else ""
                    )
                )
                e["vote"], e["reason"] = vote, why
                out["line_vote"] = vote
                if signal:
                    out["line_bound_share"] = line_upper(e) / signal
        verdict = verdict_of([Evidence.from_json(e) for e in evidence], results["inputs"].get("holdout") is not None)
        out["verdict"], out["confidence"] = verdict.label, verdict.confidence
        out["scores"]["verdict"] = verdict_score(verdict.to_json())
        return out

    rows, perturbed = redecide_all(stored_audits(bench), redo)
    return rows, perturbed, differs


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("benches", type=Path, nargs="+")
    parser.add_argument("--before", default="power_against=margin,suppressed_end=plain")
    parser.add_argument("--after", default="")
    args = parser.parse_args()
    before, after = settings(args.before), settings(args.after)
    pooled: dict[str, list[list[dict]]] = {"before": [[], []], "after": [[], []]}
    for bench in args.benches:
        try:
            b_rows, b_pert, differs = redecided(bench, before)
            a_rows, a_pert, _ = redecided(bench, after)
        except NotABench as e:
            print(f"relearning_rule: {e}")
            return 2
        print(f"# {bench}\n\nbefore-side votes that differ from the stored ones: {len(differs)}", *differs, sep="\n  ")
        for side, rows, pert in (("before", b_rows, b_pert), ("after", a_rows, a_pert)):
            print(f"\n## {side} ({args.before if side == 'before' else args.after or 'the checkout defaults'})\n")
            print(table(rows, pert))
            pooled[side][0] += rows
            pooled[side][1] += pert
        print("\n## the line's deletion bounds (the same on both sides)\n\n" + bound_shares(b_rows + b_pert))
        print("\n## changed\n")
        for b, a in zip(b_rows + b_pert, a_rows + a_pert):
            if b["line_vote"] != a["line_vote"] or b["verdict"] != a["verdict"]:
                truth = b.get("truth") if "perturbation" not in b else "DELETED (copy)"
                print(
                    f"- seed {b['seed']} {audit_name(b)} [{truth}]: vote {b['line_vote']} -> {a['line_vote']}, "
                    f"verdict {b['verdict']} -> {a['verdict']} ({a['line_numbers']})"
                )
        print()
    if len(args.benches) > 1:
        for side in ("before", "after"):
            scored = scored_audits(*pooled[side])
            labels = "; ".join(
                f"{c['confidence']} {c['right']} of {c['n']} right (95% lower bound {c['lower_95']:.3f})"
                for c in label_accuracy(scored)
            )
            inconclusive = sum(r["verdict"] == "INCONCLUSIVE" for r in scored)
            print(f"# pooled, {side}\n\n" + table(*pooled[side]))
            print(f"confidence labels (models and copies): {labels}; INCONCLUSIVE {inconclusive}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
