"""A verdict-rule change measured on the same evidence: re-decide every audit a bench stored
under two versions of ``forensics/core/verdict.py`` and print both verdict tables.

    python benchmarks/rule_change.py BENCH_OUT [BENCH_OUT ...] --before REV [--revote-probes] [--json out.json]

``BENCH_OUT``: a ``forensics bench`` output folder (``bench.json`` and ``audits/``). ``REV``: a git
revision whose ``forensics/core/verdict.py`` is the rule before (read with ``git show``, loaded
as a module of its own); the rule after is the checkout's. Every stored audit's evidence is
re-read (:meth:`forensics.core.evidence.Evidence.from_json`) and decided by both rules; the
stored verdict should equal one of them (the rule the bench ran): those that equal neither are
listed and the script exits 1. The verdict rule is a pure function of the evidence, so this is
the bench's before/after without re-running any line. ``--revote-probes``: the rule after also
re-decides the attribute probes' vote (:func:`forensics.lines.attribute_probes.decided_cell`, a
pure function of the per-depth rows the line stores) before the verdict; the rule before keeps
the stored vote unless ``--revote-probes-before`` (a rule before of version 5 or later, which came
with that vote, on benches run before it). Prints, per bench and pooled: the confusion matrix before -> after, the perturbed deleted copies' verdicts, verdict
robustness (:func:`forensics.metaeval.scoring.meta_evaluation`), the deleted models called
SUPPRESSED, every audit whose verdict or confidence changed with the reason, and pooled, what
each confidence label is worth (:func:`forensics.metaeval.scoring.label_accuracy`). ``--splice
LINE DIR [DIR ...]`` (one ``DIR`` per ``BENCH_OUT``, in order: benches of the same zoo, seeds,
profile and models run with ``--lines LINE``): the after side also takes ``LINE``'s evidence from
``DIR``'s audit of the same model, so with ``--before HEAD`` the tables show what adding (or
changing) that line does to the verdicts; a spliced ``benign_finetune`` vote is re-decided by the
checkout's rule from the numbers it stored (:func:`revote_benign`). Used by docs/results/2026-12-07-standard-held-out.md
and docs/results/2026-12-08-benign-finetune.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from forensics.core.evidence import Evidence
from forensics.core.registry import discover_lines, gate_of
from forensics.core.verdict import Verdict, decide
from forensics.lines.attribute_probes import AttributeProbeConfig, decided_cell
from forensics.lines.benign_finetune import BenignFinetuneConfig
from forensics.lines.benign_finetune import decide as decide_benign
from forensics.metaeval.scoring import (
    TRUTHS,
    VERDICTS,
    confusion,
    label_accuracy,
    meta_evaluation,
    scored_audits,
    verdict_score,
)
from forensics.metaeval.stored import NotABench, read_bench, stored_audits
from forensics.reports.bench import robustness_sentence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from line_swap import audit_name, line_from, redecide_all  # a sibling script

PROBE_LINE = "attribute_probes"


def load_rule(rev: str) -> Any:
    """``forensics/core/verdict.py`` at git revision ``rev``, as a module."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:forensics/core/verdict.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "verdict_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("verdict_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def revote_probes(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``evidence`` (a results.json's list) with the attribute probes' vote re-decided by the
    checkout's :func:`forensics.lines.attribute_probes.decided_cell` from the rows of the deciding curve
    the line stored; the reported cell's numbers (effect, control, CI, p-value) follow the vote, as
    the line reports them. Other lines' entries are returned as they are."""
    known = {f.name for f in fields(AttributeProbeConfig)} - {"probe"}
    out = []
    for e in evidence:
        if e["line"] == PROBE_LINE and e.get("status") == "ok":
            stored: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in e["config"].items() if k in known
            }
            config = AttributeProbeConfig(**stored)
            d = decided_cell(e["details"]["curves"][config.curves[0]], config)
            e = copy.deepcopy(e) | {k: d[k] for k in ("vote", "reason", "effect", "control", "p_value")}
            e |= {"difference": d["effect"] - d["control"], "ci": list(d["ci"])}
        out.append(e)
    return out


def spliced(results: dict[str, Any], part: Path, line: str, row: dict[str, Any]) -> dict[str, Any]:
    """``results`` with ``line``'s evidence taken from bench ``part``'s audit of ``row``'s model
    (its own entry for ``line``, if any, dropped). Raises :class:`NotABench` when ``part`` has no
    readable audit of it or its unlearned weights differ (:func:`line_swap.line_from`); a
    ``benign_finetune`` entry taken is re-decided (:func:`revote_benign`)."""
    evidence, same_weights = line_from(part, line, row, results)
    if not same_weights:
        raise NotABench(f"{part}: seed {row['seed']} {audit_name(row)} audited other weights")
    return results | {"evidence": [revote_benign(e) if e["line"] == BENIGN_LINE == line else e for e in evidence]}


BENIGN_LINE = "benign_finetune"


def revote_benign(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored benign fine-tuning entry with its vote and reason re-decided by the checkout's
    :func:`forensics.lines.benign_finetune.decide` from the numbers it stored (F's and H's means
    after the fine-tune, its CI, O's signal, F's per-seed gains); other entries as they are."""
    if entry.get("status") != "ok":
        return entry
    d = entry["details"]
    gain_f = sum(s["gain_forget"] for s in d["per_seed"]) / len(d["per_seed"])
    known = {f.name for f in fields(BenignFinetuneConfig)}
    config = BenignFinetuneConfig(
        **{k: v for k, v in entry["config"].items() if k in known and not isinstance(v, list)}
    )
    vote, reason, _ = decide_benign(
        entry["effect"], entry["control"], gain_f, tuple(entry["ci"]), d["original_signal"], config
    )
    return copy.deepcopy(entry) | {"vote": vote, "reason": reason}


def redecide(results: dict[str, Any], rule: Any, gate: str | None, probes: bool = False) -> Verdict:
    """The verdict of one stored audit under ``rule`` (a verdict module); ``probes``: re-decide the
    attribute probes' vote first (:func:`revote_probes`)."""
    evidence = revote_probes(results["evidence"]) if probes else results["evidence"]
    return rule.decide(
        [Evidence.from_json(e) for e in evidence], results["inputs"].get("holdout") is not None, gate=gate
    )


def matrix_text(rows_before: list[dict], rows_after: list[dict]) -> str:
    """Markdown confusion matrix, each cell ``before -> after``."""
    b, a = confusion(rows_before)["matrix"], confusion(rows_after)["matrix"]
    out = ["| truth \\ verdict | " + " | ".join(VERDICTS) + " |", "| --- |" + " --- |" * len(VERDICTS)]
    for t in TRUTHS:
        n = sum(b[t].values())
        if not n:
            continue
        cells = [f"{b[t][v]} → {a[t][v]}" if b[t][v] != a[t][v] else str(b[t][v]) for v in VERDICTS]
        out.append(f"| {t} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


def summary(rows: list[dict], perturbed: list[dict]) -> str:
    """The perturbed copies' verdicts and verdict robustness, one line (empty without copies)."""
    if not perturbed:
        return ""
    counts = ", ".join(f"{v} {sum(p['verdict'] == v for p in perturbed)}" for v in VERDICTS)
    return f"perturbed deleted copies: {counts}; {robustness_sentence(meta_evaluation(rows, perturbed)['verdict'])}"


def side(verdicts: dict[tuple, Verdict], rule: Any, gate: str | None, probes: bool) -> Callable[[dict, dict], dict]:
    """A ``redo`` for :func:`line_swap.redecide_all`: the row re-decided under ``rule`` (see
    :func:`redecide`), its verdict kept in ``verdicts`` under ``(seed, audit name)``."""

    def redo(row: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        verdict = redecide(results, rule, gate, probes)
        verdicts[(row["seed"], audit_name(row))] = verdict
        out = copy.deepcopy(row)
        out["verdict"], out["confidence"] = verdict.label, verdict.confidence
        out["scores"]["verdict"] = verdict_score(verdict.to_json())
        return out

    return redo


def with_line(redo: Callable[[dict, dict], dict], part: Path, line: str) -> Callable[[dict, dict], dict]:
    """``redo`` applied to each audit with ``line``'s evidence spliced in from ``part`` (:func:`spliced`)."""
    return lambda row, results: redo(row, spliced(results, part, line, row))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("benches", nargs="+", type=Path)
    parser.add_argument("--before", required=True, help="git revision of the rule before")
    parser.add_argument("--revote-probes", action="store_true", help="re-decide the attribute probes' vote after")
    parser.add_argument(
        "--revote-probes-before",
        action="store_true",
        help="re-decide the attribute probes' vote before too (a before rule of version 5 or later)",
    )
    parser.add_argument("--json", type=Path, help="write every re-decided audit here")
    parser.add_argument(
        "--splice", nargs="+", metavar=("LINE", "DIR"), help="after: LINE's evidence from these benches, one a bench"
    )
    args = parser.parse_args()
    splice_line, parts = (args.splice[0], [Path(p) for p in args.splice[1:]]) if args.splice else (None, [])
    if splice_line is not None and len(parts) != len(args.benches):
        print(f"rule_change: --splice needs one bench per BENCH_OUT ({len(args.benches)}), got {len(parts)}")
        return 2
    rule_before, rule_after = load_rule(args.before), sys.modules[decide.__module__]
    gate = gate_of(discover_lines()[0])
    pooled: dict[str, list[list[dict]]] = {"before": [[], []], "after": [[], []]}
    changed, dump, unmatched = [], [], []
    for k, bench_dir in enumerate(args.benches):
        verdicts: dict[str, dict[tuple, Verdict]] = {"before": {}, "after": {}}
        try:
            bench, audits = read_bench(bench_dir), stored_audits(bench_dir)
            after = side(verdicts["after"], rule_after, gate, args.revote_probes)
            if splice_line is not None:
                after = with_line(after, parts[k], splice_line)
            sides = {
                "before": redecide_all(audits, side(verdicts["before"], rule_before, gate, args.revote_probes_before)),
                "after": redecide_all(audits, after),
            }
        except NotABench as e:
            print(f"rule_change: {e}", file=sys.stderr)
            return 2
        for row, results in audits:
            key = (row["seed"], audit_name(row))
            old, new = verdicts["before"][key], verdicts["after"][key]
            if results["verdict"]["label"] not in (old.label, new.label):  # the bench ran neither rule
                unmatched.append(f"{bench_dir.name} seed {key[0]} {key[1]}: stored {results['verdict']['label']}")
            truth = "DELETED" if row.get("perturbation") else row["truth"]
            dump.append(
                {
                    "bench": str(bench_dir),
                    "seed": key[0],
                    "model": key[1],
                    "truth": truth,
                    "before": old.label,
                    "after": new.label,
                    "confidence": [old.confidence, new.confidence],
                    "step": new.step,
                    "held_back": [h["line"] for h in new.held_back],
                }
            )
            if (old.label, old.confidence) != (new.label, new.confidence):
                changed.append(
                    f"- {bench_dir.name} seed {key[0]} {key[1]} (truth {truth}): {old.label} ({old.confidence}) → "
                    f"{new.label} ({new.confidence}): {new.reason}"
                )
        rows_b, rows_a = sides["before"][0], sides["after"][0]
        config = bench["config"]
        print(f"## {bench_dir} ({config['world']}, {config['size']}, {config['profile']}, seeds {config['seeds']})\n")
        print(matrix_text(rows_b, rows_a) + "\n")
        cb, ca = confusion(rows_b), confusion(rows_a)
        print(
            f"accuracy {cb['correct']}/{cb['n']} → {ca['correct']}/{ca['n']}; deleted called SUPPRESSED "
            f"{cb['deleted_called_suppressed']} → {ca['deleted_called_suppressed']}"
        )
        for name, (rows, pert) in sides.items():
            if pert:
                print(f"{name}: {summary(rows, pert)}")
            pooled[name][0] += rows
            pooled[name][1] += [dict(p, bench=str(bench_dir)) for p in pert]  # a model is (bench, seed, model)
        print()
    if len(args.benches) > 1:
        print("## pooled\n\n" + matrix_text(pooled["before"][0], pooled["after"][0]) + "\n")
        for name, (rows, pert) in pooled.items():
            labels = "; ".join(
                f"{c['confidence']} {c['right']} of {c['n']} right (95% lower bound {c['lower_95']:.3f})"
                for c in label_accuracy(scored_audits(rows, pert))
            )
            print(f"{name}: {summary(rows, pert)}\n  confidence labels (models and copies): {labels}")
        print()
    print(f"stored verdicts neither rule gives (should be none): {len(unmatched)}", *unmatched, sep="\n  ")
    print("\n## verdicts that changed\n\n" + ("\n".join(changed) if changed else "none"))
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))
    return 1 if unmatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
