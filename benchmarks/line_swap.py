"""A change to one evidence line measured on a whole bench without re-running the other lines:
re-decide a stored bench's audits with that line's evidence taken from two runs of the line
alone, before and after the change, and print both verdict tables.

    python benchmarks/line_swap.py FULL_BENCH LINE_BEFORE LINE_AFTER [--line relearning_attack] [--write DIR]

``FULL_BENCH``: a ``forensics bench`` output folder run with every line (``bench.json`` and
``audits/``). ``LINE_BEFORE`` / ``LINE_AFTER``: benches of the same zoo, seeds, profile and data
view run with ``--lines LINE`` only (the behaviour gate comes with it), before and after the
change (for a setting: without and with ``--set``). Every audit of ``FULL_BENCH`` (models and
perturbed copies) keeps its other lines' evidence, gets ``LINE``'s from each line bench, and is
decided by the checkout's rule (:func:`forensics.core.verdict.decide`, a pure function of the
evidence). Prints, per side: the confusion matrix (truth x verdict), the perturbed copies'
verdicts, verdict robustness (:func:`forensics.metaeval.scoring.meta_evaluation`), ``LINE``'s
votes; then every verdict that changed. Two checks are printed first, and should read 0: audits
whose unlearned model's weights differ between the benches (a copy rebuilt differently), and
audits whose verdict with ``LINE_BEFORE``'s evidence differs from ``FULL_BENCH``'s stored one
(the swap itself, or code drift between the benches, moved it). Used by
docs/results/2026-12-06-control-reads.md.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forensics.core.evidence import DELETION_BOUND, Evidence
from forensics.core.verdict import decide
from forensics.metaeval.bench import audit_tag
from forensics.metaeval.scoring import VERDICTS, confusion, meta_evaluation, verdict_score
from forensics.metaeval.stored import NotABench, audit_path, read_bench, stored_audits
from forensics.reports.bench import robustness_sentence


def line_upper(evidence: dict[str, Any]) -> float:
    """The deletion bound the line's vote reads (measure units): the largest of the per-step bounds
    (``bound_steps="every"``), else the stored deletion bound's upper end, else the CI's upper end
    (``bound_steps="read"``: the vote's ``upper`` defaults to ``ci[1]``)."""
    d = evidence["details"]
    uppers = d.get("upper_by_step") or {}
    stored = (d.get(DELETION_BOUND) or {}).get("upper")
    return float(max(uppers.values()) if uppers else stored if stored is not None else evidence["ci"][1])


def bound_shares(rows: list[dict[str, Any]]) -> str:
    """One line per kind of audit (truth, or "copy"): how many stored a deletion bound, and its
    share of O's signal (the bound the vote reads, U's one-sided 95% upper bound over the
    budget's steps, divided by O's F-minus-H signal): min / median / max, and how many fall
    under 10% and under 25%."""
    by_kind: dict[str, list[float]] = {}
    for r in rows:
        if r.get("line_bound_share") is not None:
            kind = "copy" if "perturbation" in r else str(r.get("truth"))
            by_kind.setdefault(kind, []).append(r["line_bound_share"])
    out = []
    for kind, shares in sorted(by_kind.items()):
        s = sorted(shares)
        under = {m: sum(x < m for x in s) for m in (0.10, 0.25)}
        out.append(
            f"- {kind}: {len(s)} bounds, share of O's signal {s[0]:.0%} / {s[len(s) // 2]:.0%} / {s[-1]:.0%} "
            f"(min / median / max); under 10%: {under[0.10]}, under 25%: {under[0.25]}"
        )
    return "\n".join(out)


def audit_name(row: dict[str, Any]) -> str:
    """A bench row's audit file stem: ``model`` or ``model~perturbation``."""
    return audit_tag(row["model"], row.get("perturbation"))


def line_from(part: Path, line: str, row: dict[str, Any], results: dict[str, Any]) -> tuple[list[dict], bool]:
    """``results``' evidence with ``line``'s entries taken from bench ``part``'s audit of ``row``'s
    model instead of its own, and whether that audit read the same unlearned weights. Raises
    :class:`NotABench` when ``part`` has no readable audit of it."""
    try:
        other = json.loads(audit_path(part, row).read_text())
    except (OSError, ValueError) as e:
        raise NotABench(f"{part} has no readable audit of seed {row['seed']} {audit_name(row)}") from e
    same = results["inputs"]["unlearned"]["weights_sha256"] == other["inputs"]["unlearned"]["weights_sha256"]
    evidence = [e for e in results["evidence"] if e["line"] != line]
    return evidence + [e for e in other["evidence"] if e["line"] == line], same


def swapped(
    full: Path, part: Path, line: str, write: Path | None = None
) -> tuple[list[dict], list[dict], list[str], list[str]]:
    """``full``'s model and perturbed rows re-decided with ``line``'s evidence from ``part``:
    ``(rows, perturbed, weight_mismatches, stored_differs)``. Each row gains ``line_vote``.
    ``write``: a new folder to keep the swapped bench in, as ``forensics bench`` lays one out
    (``bench.json`` with the re-decided rows, ``audits/`` with the spliced evidence and verdicts),
    so that the scripts which read a stored bench (``relearning_rule.py``) can read it."""
    read_bench(part)
    mismatch, differs = [], []
    kept: list[tuple[dict, dict]] = []

    def redo(row: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        evidence, same_weights = line_from(part, line, row, results)
        if not same_weights:
            mismatch.append(f"seed {row['seed']} {audit_name(row)}")
        verdict = decide([Evidence.from_json(e) for e in evidence], results["inputs"].get("holdout") is not None)
        stated = verdict.to_json()
        kept.append((row, results | {"evidence": evidence, "verdict": stated}))
        out = copy.deepcopy(row)
        out["verdict"], out["confidence"] = verdict.label, verdict.confidence
        out["scores"]["verdict"] = verdict_score(stated)
        entry = next((e for e in evidence if e["line"] == line), None)
        out["line_vote"] = entry["vote"] if entry is not None else None
        original = ((entry or {}).get("details") or {}).get("original_signal")
        signal = original.get("signal") if isinstance(original, dict) else None  # benign_finetune stores a number
        if entry is not None and entry.get("status") == "ok" and signal:  # a relearning attack's bound
            out["line_bound_share"] = line_upper(entry) / signal
        if verdict.label != row["verdict"]:
            differs.append(f"seed {row['seed']} {audit_name(row)}: stored {row['verdict']}, now {verdict.label}")
        return out

    rows, perturbed = redecide_all(stored_audits(full), redo)
    if write is not None:
        write.mkdir(parents=True)
        for row, results in kept:
            path = audit_path(write, row)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results))
        strip = ("line_vote", "line_bound_share")
        bench = read_bench(full) | {
            "models": [{k: v for k, v in r.items() if k not in strip} for r in rows],
            "perturbed": [{k: v for k, v in p.items() if k not in strip} for p in perturbed],
            "swapped": {"full": str(full), "line": line, "from": str(part)},
        }
        (write / "bench.json").write_text(json.dumps(bench))
    return rows, perturbed, mismatch, differs


def redecide_all(audits: list[tuple[dict, dict]], redo: Callable[[dict, dict], dict]) -> tuple[list[dict], list[dict]]:
    """``(rows, perturbed)``: ``redo(row, results)`` of every stored audit (``stored_audits``), the
    models first; each perturbed copy marked ``truth="DELETED"`` with its parent's re-decided scores
    as ``before``, as the bench scores a copy."""
    rows = [redo(r, res) for r, res in audits if "perturbation" not in r]
    parent = {(r["seed"], r["model"]): r for r in rows}
    perturbed = []
    for p, res in audits:
        if "perturbation" not in p:
            continue
        q = redo(p, res)
        q["truth"] = "DELETED"
        q["before"] = parent[(p["seed"], p["model"])]["scores"]  # the perturbed copy's parent, as the bench scores it
        perturbed.append(q)
    return rows, perturbed


def table(rows: list[dict], perturbed: list[dict]) -> str:
    """Markdown: the confusion matrix, the copies' verdicts, robustness and the line's votes."""
    m = confusion(rows)["matrix"]
    out = ["| truth \\ verdict | " + " | ".join(VERDICTS) + " |", "| --- |" + " --- |" * len(VERDICTS)]
    out += [
        f"| {t} ({sum(c.values())}) | " + " | ".join(str(c[v]) for v in VERDICTS) + " |"
        for t, c in m.items()
        if sum(c.values())
    ]
    if perturbed:
        out.append(
            "\nperturbed copies: " + ", ".join(f"{v} {sum(p['verdict'] == v for p in perturbed)}" for v in VERDICTS)
        )
        out.append(robustness_sentence(meta_evaluation(rows, perturbed)["verdict"]))
    votes: dict[str, dict[str, int]] = {}
    for r in rows + perturbed:
        kind = "copy" if "perturbation" in r else r["truth"]
        votes.setdefault(kind, {}).setdefault(str(r["line_vote"]), 0)
        votes[kind][str(r["line_vote"])] += 1
    out.append("line votes: " + "; ".join(f"{k}: {v}" for k, v in sorted(votes.items())))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("full", type=Path)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--line", default="relearning_attack")
    parser.add_argument("--write", type=Path, help="keep the after side as a bench folder here (must not exist)")
    args = parser.parse_args()
    if args.write is not None and args.write.exists():
        print(f"line_swap: {args.write} exists; --write makes a new folder")
        return 2
    sides = {}
    for side in ("before", "after"):
        try:
            keep = args.write if side == "after" else None
            rows, perturbed, mismatch, differs = swapped(args.full, getattr(args, side), args.line, keep)
        except (NotABench, KeyError) as e:  # a folder that is not a bench, or benches that do not match
            print(f"line_swap: cannot pair {args.full} with {getattr(args, side)}: {e}")
            return 2
        sides[side] = rows + perturbed
        print(f"## {side}: {getattr(args, side)}\n")
        print(f"unlearned weights differ from the full bench's: {len(mismatch)}", *mismatch[:5])
        if side == "before":
            print(f"verdicts that differ from the stored ones: {len(differs)}", *differs, sep="\n  ")
        print(table(rows, perturbed) + "\n")
        if any(r.get("line_bound_share") is not None for r in rows + perturbed):
            print(f"{args.line}'s deletion bounds:\n" + bound_shares(rows + perturbed) + "\n")
    changed = [
        f"- seed {b['seed']} {audit_name(b)}: {b['verdict']} -> {a['verdict']} ({args.line} {b['line_vote']} -> {a['line_vote']})"
        for b, a in zip(sides["before"], sides["after"])
        if b["verdict"] != a["verdict"]
    ]
    print("## verdicts that changed\n\n" + ("\n".join(changed) if changed else "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
