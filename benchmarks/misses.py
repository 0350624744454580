"""Why a bench's truly deleted models are not DELETED: each deleted-truth audit (zoo models and
their perturbed copies) whose verdict under the checkout's rule is not DELETED, with its cause.

    python benchmarks/misses.py BENCH_OUT [LINE_BENCH] [--line relearning_attack]

``BENCH_OUT``: a ``forensics bench`` output folder. ``LINE_BENCH`` (optional): a bench of the same
zoo and seeds run with ``--lines LINE`` only; ``LINE``'s evidence is taken from it, as
``benchmarks/line_swap.py`` does. Each audit is decided by :func:`forensics.core.verdict.decide`
(a pure function of the stored evidence) and its miss put in one class:

- ``one counted suppressed vote``: rule step 4, one ``suppressed`` vote survives Holm's procedure
  (the line is named);
- ``suppressed at its own level only``: two or more ``suppressed`` votes held back by Holm (DELETED
  allows one), or the relearning attack's own vote held back (then it states no bound);
- ``U still answers F_b``: the relearning attack gives no bound because U answered F_b above H_b
  before the attack;
- ``no power``: the relearning attack's positive control recovered no more than power needs
  (:func:`forensics.lines.relearning_attack.line.power_needed` under the audit's settings: U's
  bound, or the margin of O's signal before 2026-12-07; the recovery and what was needed are printed);
- ``bound over the margin`` and ``other``, with the line's reason.

Prints one line per miss, then the count per class. Used by docs/results/2026-12-06-bound-steps.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from forensics.core.evidence import Evidence
from forensics.core.verdict import Verdict, decide
from forensics.lines.relearning_attack import RelearningConfig
from forensics.lines.relearning_attack.line import power_needed
from forensics.metaeval.bench import audit_tag
from forensics.metaeval.stored import NotABench, audit_path, stored_audits

#: The stored settings that decide what power needs (:func:`power_needed`); the others keep their defaults.
POWER = ("bound_against", "power_against", "deleted_share", "min_power")


def cause(verdict: Verdict, evidence: list[dict[str, Any]]) -> str:
    """The class of one miss (see the module docstring), with its numbers."""
    if verdict.step == 4:
        return "one counted suppressed vote (" + ", ".join(d["line"] for d in verdict.deciding) + ")"
    held = [h["line"] for h in verdict.held_back]
    if len(held) > 1:  # DELETED allows one held-back vote
        return "suppressed at its own level only (" + ", ".join(held) + ")"
    attack = next((e for e in evidence if e["line"] == "relearning_attack"), None)
    if attack is None or attack.get("status") != "ok":
        return f"other (step {verdict.step}; no relearning evidence)"
    if attack.get("vote") == "suppressed":
        return "suppressed at its own level only (relearning_attack, so it cannot bound)"
    details = attack.get("details") or {}
    if details.get("forgot_behaviourally") is False:
        return "U still answers F_b before the attack"
    bound, control = details.get("deletion_bound"), details.get("positive_control") or {}
    signal = (details.get("original_signal") or {}).get("signal")
    if bound and signal and control.get("recovery_forget_b") is not None:
        stored = {"power_against": "margin"} | attack.get("config", {})  # absent: a bench from before the setting
        config = replace(RelearningConfig(), **{k: v for k, v in stored.items() if k in POWER})
        needed = power_needed(signal, config, bound["upper"]) or 0.0
        if control["recovery_forget_b"] <= needed:
            return f"no power (control {control['recovery_forget_b']:.2f} < {needed:.2f})"
        if bound["share"] >= bound["margin"]:
            return f"bound over the margin ({bound['share']:.0%})"
    return f"other (step {verdict.step}: {attack['reason']})"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("line_bench", type=Path, nargs="?")
    parser.add_argument("--line", default="relearning_attack")
    args = parser.parse_args()
    try:
        audits = stored_audits(args.bench)
    except NotABench as e:
        print(f"misses: {e}")
        return 2
    truth = {(r["seed"], r["model"]): r.get("truth") for r, _ in audits if "perturbation" not in r}
    counts: Counter[str] = Counter()
    n = 0
    for row, results in audits:
        if truth.get((row["seed"], row["model"])) != "DELETED":
            continue
        n += 1
        evidence = results["evidence"]
        if args.line_bench is not None:
            try:
                other = json.loads(audit_path(args.line_bench, row).read_text())["evidence"]
            except (OSError, ValueError, KeyError):
                print(f"misses: {args.line_bench} has no readable audit of seed {row['seed']} {row['model']}")
                return 2
            evidence = [e for e in evidence if e["line"] != args.line] + [e for e in other if e["line"] == args.line]
        verdict = decide([Evidence.from_json(e) for e in evidence], results["inputs"].get("holdout") is not None)
        if verdict.label == "DELETED":
            continue
        why = cause(verdict, evidence)
        counts[why.split(" (")[0]] += 1
        print(f"seed {row['seed']} {audit_tag(row['model'], row.get('perturbation'))}: {verdict.label}: {why}")
    print(f"{sum(counts.values())} of {n} deleted-truth audits not DELETED")
    for why, k in counts.most_common():
        print(f"  {why}: {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
