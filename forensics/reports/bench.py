"""The bench's outputs: plain-text tables (what ``forensics bench`` prints) and ``bench.html``."""

from __future__ import annotations

import html
from typing import Any

from forensics.metaeval.scoring import TRUTHS, VERDICTS


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def confusion_blocks(bench: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, confusion) for the pooled matrix, each seed's, and the perturbed models'."""
    blocks = [("pooled", bench["confusion"]["pooled"])] + [
        (f"seed {s}", c) for s, c in bench["confusion"]["per_seed"].items()
    ]
    if bench["perturbed"]:
        blocks.append(("perturbed deleted models (4-bit, relearned on R)", bench["perturbed_confusion"]))
    return blocks


def text_tables(bench: dict[str, Any]) -> str:
    """The confusion matrices and the line table as plain text (what the CLI prints)."""
    lines = []
    for title, conf in confusion_blocks(bench):
        lines.append(
            f"confusion ({title}): accuracy {_fmt(conf['accuracy'])} ({conf['correct']}/{conf['n']}), "
            f"deleted called SUPPRESSED: {conf['deleted_called_suppressed']}"
        )
        header = "truth / verdict"
        lines.append(f"  {header:<16}" + "".join(f"{v:>14}" for v in VERDICTS))
        for t in TRUTHS:
            lines.append(f"  {t:<16}" + "".join(f"{conf['matrix'][t][v]:>14}" for v in VERDICTS))
    for row in bench.get("undetermined", []):
        lines.append(f"not scored (oracle UNDETERMINED): seed {row['seed']} {row['model']}: verdict {row['verdict']}")
    hard: dict[str, Any] = bench.get("hard_negatives") or {"n": 0}
    if hard["n"]:
        lines.append(
            f"hard negatives (DELETED, know F's subjects): {hard['n']}, called SUPPRESSED: "
            f"{hard['called_suppressed']} ("
            + ", ".join(f"seed {m['seed']} {m['model']}: {m['verdict']}" for m in hard["models"])
            + ")"
        )
    if bench.get("reliability"):
        lines.append("reliability (models and perturbed copies): verdict, confidence, audits, share right")
        for r in bench["reliability"]:
            share = (
                f"{_fmt(r['share_right'])} ({r['right']}/{r['n']}), 95% lower bound {_fmt(r.get('lower_95'))}"
                if r["right"] is not None
                else "(claims nothing)"
            )
            lines.append(f"  {r['verdict']:<14} {r['confidence']:<7} {r['n']:>4}  {share}")
        for r in bench.get("label_accuracy", []):
            lines.append(
                f"  any decisive   {r['confidence']:<7} {r['n']:>4}  {_fmt(r['share_right'])} ({r['right']}/{r['n']}), "
                f"95% lower bound {_fmt(r['lower_95'])}"
            )
    honesty = bench.get("bound_honesty") or {}
    if honesty:
        lines.append("deletion bounds on suppressed models (share of O's signal) below the oracle's recovery:")
        for name, row in honesty.items():
            missed = ", ".join(
                f"seed {c['seed']} {c['model']} {c['share']:.0%} < {c['oracle_share']:.0%}"
                + (f" from {c['from_line']}" if c.get("from_line") else "")
                for c in row["missed"]
            )
            lines.append(f"  {name:<22} {row['below_oracle']} of {row['bounds']}" + (f" ({missed})" if missed else ""))
    lines.append("")
    lines.append(
        f"{'line':<22} {'faithful':>9} {'w/o HN':>7} {'robust':>8} {'Q':>7} {'R':>7} {'robust*':>8} {'n+':>4} {'n-':>4}"
    )
    without = bench.get("lines_without_hard_negatives", {})
    for name, row in bench["lines"].items():
        lines.append(
            f"{name:<22} {_fmt(row['faithfulness']):>9} "
            f"{_fmt(without.get(name, {}).get('faithfulness')):>7} {_fmt(row['robustness']):>8} "
            f"{_fmt(row['stability_q4']):>7} {_fmt(row['stability_relearn']):>7} "
            f"{_fmt(row['robustness_scaled']):>8} {row['n_positive']:>4} {row['n_negative']:>4}"
        )
    lines.append(
        "(w/o HN: faithfulness without the hard negatives; robust: UDS stability formula; robust*: "
        "stability scaled by the line's P/N gap)"
    )
    verdict = bench["lines"].get("verdict")
    if verdict and verdict.get("robustness") is not None:
        lines.append(robustness_sentence(verdict))
    return "\n".join(lines)


def robustness_sentence(row: dict[str, Any]) -> str:
    """The verdict's robustness with its bootstrap interval, one line, from a
    :func:`forensics.metaeval.scoring.meta_evaluation` row."""
    ci = row.get("robustness_ci")
    interval = f", 95% bootstrap interval {ci[0]:.3f}-{ci[1]:.3f} (deleted models resampled)" if ci else ""
    return (
        f"verdict robustness {_fmt(row['robustness'])} (Q {_fmt(row['stability_q4'])} / "
        f"R {_fmt(row['stability_relearn'])}){interval}"
    )


def render_html(bench: dict[str, Any], definitions: str = "") -> str:
    """``bench.html``: a self-contained page with the confusion matrices, the line table, the
    published figures, every audited model and ``definitions`` (the bench module's docstring)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>forensics bench</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        "<h1>Meta-evaluation bench</h1>",
        f"<p>Zoo {e(bench['config']['zoo'])}, size {e(bench['config']['size'])}, seeds "
        f"{e(', '.join(map(str, bench['config']['seeds'])))}, profile {e(bench['config']['profile'])}; "
        f"{bench['seconds']:.0f} s.</p>",
    ]
    for title, conf in confusion_blocks(bench):
        parts.append(
            f"<h2>{e(title.capitalize())}: accuracy {_fmt(conf['accuracy'])} ({conf['correct']}/{conf['n']}), "
            f"deleted called SUPPRESSED: {conf['deleted_called_suppressed']}</h2>"
        )
        parts.append("<table><tr><th>truth \\ verdict</th>" + "".join(f"<th>{v}</th>" for v in VERDICTS) + "</tr>")
        for t in TRUTHS:
            parts.append(f"<tr><td>{t}</td>" + "".join(f"<td>{conf['matrix'][t][v]}</td>" for v in VERDICTS) + "</tr>")
        parts.append("</table>")
    if bench.get("reliability"):
        parts.append(
            "<h2>Reliability of the confidence labels</h2><table><tr><th>verdict</th><th>confidence</th>"
            "<th>audits</th><th>right</th><th>share right</th><th>95% lower bound</th></tr>"
        )
        pooled = [{**r, "verdict": "any decisive"} for r in bench.get("label_accuracy", [])]
        for r in bench["reliability"] + pooled:
            parts.append(
                f"<tr><td>{e(r['verdict'])}</td><td>{e(r['confidence'])}</td><td>{r['n']}</td>"
                f"<td>{'' if r['right'] is None else r['right']}</td><td>{_fmt(r['share_right'])}</td>"
                f"<td>{_fmt(r.get('lower_95'))}</td></tr>"
            )
        parts.append("</table>")
    hard: dict[str, Any] = bench.get("hard_negatives") or {"n": 0}
    if hard["n"]:
        parts.append(
            f"<h2>Hard negatives: {hard['n']} deleted models that know F's subjects, called SUPPRESSED: "
            f"{hard['called_suppressed']}</h2><p>"
            + e(", ".join(f"seed {m['seed']} {m['model']}: {m['verdict']} ({m['confidence']})" for m in hard["models"]))
            + "</p>"
        )
    parts.append(
        "<h2>Evidence lines: faithfulness and robustness</h2><table><tr><th>line</th><th>faithfulness "
        "(AUC)</th><th>faithfulness without hard negatives</th><th>robustness (UDS)</th><th>Q</th><th>R</th>"
        "<th>robustness (gap-scaled)</th><th>n+</th><th>n-</th></tr>"
    )
    without = bench.get("lines_without_hard_negatives", {})
    for name, row in bench["lines"].items():
        parts.append(
            f"<tr><td>{e(name)}</td><td>{_fmt(row['faithfulness'])}</td>"
            f"<td>{_fmt(without.get(name, {}).get('faithfulness'))}</td>"
            + "".join(
                f"<td>{_fmt(row[k])}</td>"
                for k in (
                    "robustness",
                    "stability_q4",
                    "stability_relearn",
                    "robustness_scaled",
                    "n_positive",
                    "n_negative",
                )
            )
            + "</tr>"
        )
    parts.append("</table>")
    verdict = bench["lines"].get("verdict")
    if verdict and verdict.get("robustness") is not None:
        parts.append(f"<p>{e(robustness_sentence(verdict))}.</p>")
    parts.append(
        "<h3>Published (UDS meta-evaluation, TOFU)</h3><table><tr><th>metric</th>"
        "<th>faithfulness</th><th>robustness</th></tr>"
    )
    for name, row in bench["published"].items():
        parts.append(f"<tr><td>{e(name)}</td><td>{row['faithfulness']:.3f}</td><td>{row['robustness']:.3f}</td></tr>")
    parts.append(
        "</table><h2>Models</h2><table><tr><th>seed</th><th>model</th><th>truth</th><th>verdict</th>"
        "<th>confidence</th></tr>"
    )
    for row in bench["models"] + [
        dict(p, model=f"{p['model']}~{p['perturbation']}", truth="DELETED") for p in bench["perturbed"]
    ]:
        parts.append(
            f"<tr><td>{row['seed']}</td><td>{e(row['model'])}</td><td>{row['truth']}</td>"
            f"<td>{e(row['verdict'])}</td><td>{e(str(row['confidence']))}</td></tr>"
        )
    parts.append("</table><h2>Definitions</h2><pre>" + e(definitions) + "</pre></body></html>")
    return "\n".join(parts)
