"""Validation of the issue-5 evidence lines on a zoo: every unlearned model against its
original, every line (remind, relearning_attack, quantization_attack,
membership_inference, cka) -> effect, control, CI, vote, plus the REMIND classifiers'
out-of-sample ROC-AUCs next to the published 82%.

    python benchmarks/attacks_zoo_table.py [--zoo zoo] [--models npo retrain ...] [--out table.json]

GPT-NeoX models are audited against ``original``, Llama models against ``llama_original``
(a pair must share an architecture). Ground-truth labels are read only to print them
next to the result, never by a line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model

LINES = ("remind", "relearning_attack", "quantization_attack", "membership_inference", "cka")


def run_lines(ctx: AuditContext) -> dict:
    from forensics.lines.cka import cka_line
    from forensics.lines.membership_inference import membership_line
    from forensics.lines.quantization_attack import quantization_line
    from forensics.lines.relearning_attack import relearning_line
    from forensics.lines.remind.line import remind_line

    fns = {
        "remind": remind_line,
        "relearning_attack": relearning_line,
        "quantization_attack": quantization_line,
        "membership_inference": membership_line,
        "cka": cka_line,
    }
    out = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        ev = fn(ctx)
        out[name] = ev.to_json() | {"seconds": round(time.perf_counter() - t, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    zoo = Path(args.zoo)
    labels = json.loads((zoo / "labels.json").read_text())
    facts = {n: load_facts(zoo / "data" / f"{n}.jsonl")[0] for n in ("forget", "retain", "holdout")}
    names = args.models or [n for n in labels if n not in ("original", "llama_original")]
    originals: dict = {}
    results = {}
    for name in names:
        o_name = "llama_original" if labels[name]["architecture"] == "llama" else "original"
        if o_name not in originals:
            originals[o_name] = load_model(zoo / "models" / o_name)
        u = load_model(zoo / "models" / name)
        ctx = AuditContext(originals[o_name], u, facts["forget"], facts["retain"], facts["holdout"])
        results[name] = {"ground_truth": labels[name]["ground_truth"], "original": o_name, "lines": run_lines(ctx)}
        print_model(name, results[name], flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))
    print()
    print_table(results)


def _f(x, fmt="{:+.3f}"):
    return "-" if x is None else fmt.format(x)


def print_model(name: str, result: dict, flush: bool = False) -> None:
    for line, ev in result["lines"].items():
        ci = ev["ci"]
        print(
            f"{name:<14} {result['ground_truth']:<13} {line:<21} {ev['status']:<11} effect {_f(ev['effect'])} "
            f"control {_f(ev['control'])} CI [{_f(ci[0]) if ci else '-'}, {_f(ci[1]) if ci else '-'}] "
            f"vote {ev['vote'] or '-':<11} ({ev['seconds']} s)",
            flush=flush,
        )


def print_table(results: dict) -> None:
    print("| model | truth | line | effect | control | CI (effect - control) | vote |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        for line, ev in r["lines"].items():
            ci = ev["ci"]
            ci_text = f"[{_f(ci[0])}, {_f(ci[1])}]" if ci else "-"
            vote = ev["vote"] or (
                "descriptive" if ev["status"] == "descriptive" else "not run" if ev["status"] == "not_run" else "-"
            )
            print(
                f"| {name} | {r['ground_truth']} | {line} | {_f(ev['effect'])} | {_f(ev['control'])} | {ci_text} | {vote} |"
            )
    print()
    print("REMIND classifiers, out of sample (published: 0.82 multi-class ROC-AUC)")
    print(
        "| model | truth | LR multi-class | LR F-vs-H | RF multi-class | RF F-vs-H | RF TPR@1%FPR (F) | "
        "LOSS F-vs-H | zlib F-vs-H | Min-K%++ F-vs-H |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        d = r["lines"]["remind"]["details"]
        if not d:
            continue
        c, b = d["classifiers"], d["baselines"]
        print(
            f"| {name} | {r['ground_truth']} | {c['logistic']['auc_multiclass_ovr']:.3f} | "
            f"{c['logistic']['auc_forget_vs_holdout']:.3f} | {c['random_forest']['auc_multiclass_ovr']:.3f} | "
            f"{c['random_forest']['auc_forget_vs_holdout']:.3f} | {c['random_forest']['tpr_at_1pct_fpr_forget']:.3f} | "
            f"{b['LOSS']['auc_forget_vs_holdout']:.3f} | {b['zlib']['auc_forget_vs_holdout']:.3f} | "
            f"{b['Min-K%++']['auc_forget_vs_holdout']:.3f} |"
        )


if __name__ == "__main__":
    main()
