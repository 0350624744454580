"""The audit report as one self-contained HTML page (figures inline, no external assets).

The page is rendered from the result's ``to_json()`` dictionary (so ``--redact`` applies
to the report exactly as to ``results.json``) plus the lines' figures. Every piece of
text that is not a literal of this module goes through :func:`html.escape`: prompts,
answers, paths, reasons, details and the lines' method texts.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from forensics.core.verdict import RULE

COLOURS = {"DELETED": "#1a7f37", "SUPPRESSED": "#c2410c", "NOT_FORGOTTEN": "#b91c1c", "INCONCLUSIVE": "#57606a"}
VOTE_COLOURS = {"deleted": "#1a7f37", "suppressed": "#c2410c", "not_forgotten": "#b91c1c"}

CSS = """
@page { size: A4; margin: 15mm 13mm 16mm 13mm;
        @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 8pt; color: #666; }
        @bottom-left { content: "unlearning-forensics audit report"; font-size: 8pt; color: #666; } }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 10pt; line-height: 1.4;
       color: #1f2328; max-width: 60em; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 17pt; margin: 0 0 0.2em 0; }
h2 { font-size: 13pt; border-bottom: 1px solid #d0d7de; padding-bottom: 2px; margin-top: 1.4em;
     break-after: avoid; page-break-after: avoid; }
h3 { font-size: 11pt; margin: 1.1em 0 0.3em 0; break-after: avoid; page-break-after: avoid; }
p { margin: 0.4em 0; }
.sub { color: #57606a; font-size: 9pt; }
.verdict { border: 2px solid; border-radius: 6px; padding: 0.6em 0.9em; margin: 0.8em 0;
           break-inside: avoid; page-break-inside: avoid; }
.verdict .label { font-size: 18pt; font-weight: bold; }
.verdict .conf { font-size: 11pt; margin-left: 0.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 8.5pt; width: 100%;
        break-inside: auto; }
tr { break-inside: avoid; page-break-inside: avoid; }
th, td { border: 1px solid #d0d7de; padding: 2px 5px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num, th.num { text-align: right; white-space: nowrap; }
.mono { font-family: "DejaVu Sans Mono", monospace; font-size: 7.5pt; word-break: break-all; }
.vote { font-weight: bold; }
figure { margin: 0.6em 0; text-align: center; break-inside: avoid; page-break-inside: avoid; }
figure img { max-width: 100%; max-height: 120mm; image-resolution: 150dpi; }
thead { display: table-header-group; }
table.keep { break-inside: avoid; page-break-inside: avoid; }
table.fixed { table-layout: fixed; }
table.fixed td { overflow-wrap: break-word; }
table.fixed td.num, table.fixed th.num { white-space: normal; }
table.fixed td { word-break: normal; }
figcaption { font-size: 8pt; color: #57606a; }
.line { break-before: auto; }
.method { font-size: 8.5pt; color: #3d444d; border-left: 3px solid #d0d7de; padding-left: 0.7em; margin: 0.5em 0; }
.method p { margin: 0.3em 0; }
.method ul { margin: 0.2em 0 0.2em 1.2em; padding: 0; }
.notrun { color: #57606a; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 0.92em; }
ol.rule li, ul.plain li { margin: 0.2em 0; }
"""


def e(value: Any) -> str:
    """Escape anything for HTML text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


def num(x: Any, digits: int = 3, signed: bool = False) -> str:
    """A number with ``digits`` decimals (a sign with ``signed``), escaped; a dash for None and
    the escaped text for anything that is not a number."""
    if x is None:
        return "&mdash;"
    try:
        value = float(x)
    except (TypeError, ValueError):
        return e(x)
    return e(f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}")


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal (0.5 -> "50.0%"); a dash for None."""
    return "&mdash;" if x is None else e(f"{float(x):.1%}")


def ci_text(ci: Any) -> str:
    """A ``[low, high]`` interval as signed numbers; a dash when it or either bound is missing."""
    if not ci or ci[0] is None or ci[1] is None:
        return "&mdash;"
    return f"[{num(ci[0], signed=True)}, {num(ci[1], signed=True)}]"


def p_text(p: Any) -> str:
    """A p-value with three decimals ("< 0.001" below that); a dash for None."""
    if p is None:
        return "&mdash;"
    return e("< 0.001" if float(p) < 0.001 else f"{float(p):.3f}")


def multiplicity_html(control: dict[str, Any]) -> list[str]:
    """The family-wise control of the suppressed side (``verdict.multiplicity`` of
    ``results.json``, :func:`forensics.core.verdict.multiplicity_control`) as a short paragraph
    and table; nothing for results written before rule version 3."""
    family = control.get("family")
    if not family:
        return []
    alpha = control.get("alpha", 0.05)
    return [
        f"<p class='sub'>Multiplicity control: a suppressed vote counts only when its one-sided p-value "
        f"survives Holm's step-down procedure over the {len(family)} lines that tested for suppression "
        f"(family-wise {alpha:.0%}).</p>",
        table(
            ["line", "vote", "one-sided p", "Holm-adjusted p", "counted"],
            [
                [
                    e(r["line"]),
                    vote_html(r["vote"]),
                    p_text(r["p_one_sided"]),
                    p_text(r["p_adjusted"]),
                    "yes" if r["counted"] else "no",
                ]
                for r in family
            ],
            widths=[30, 16, 18, 18, 18],
            numeric={2, 3},
        ),
    ]


def vote_html(vote: Any, status: str = "ok") -> str:
    """A line's vote, coloured by :data:`VOTE_COLOURS`; "not run", "descriptive" or "no vote"
    in grey for a line that did not vote."""
    if status == "not_run":
        return '<span class="notrun">not run</span>'
    if status == "descriptive":
        return '<span class="notrun">descriptive</span>'
    if not vote:
        return '<span class="notrun">no vote</span>'
    colour = VOTE_COLOURS.get(vote, "#1f2328")
    return f'<span class="vote" style="color:{colour}">{e(vote)}</span>'


def table(
    headers: list[str],
    rows: list[list[str]],
    widths: list[int] | None = None,
    keep: bool = False,
    numeric: set[int] | frozenset[int] = frozenset(),
) -> str:
    """An HTML table; headers and cells are already-escaped HTML. ``widths`` in percent."""
    classes = (["keep"] if keep else []) + (["fixed"] if widths else [])
    cls = f' class="{" ".join(classes)}"' if classes else ""
    num_cls = ' class="num"'
    cols = "".join(f'<col style="width:{w}%">' for w in widths) if widths else ""
    head = "".join(f"<th{num_cls if i in numeric else ''}>{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{num_cls if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    colgroup = f"<colgroup>{cols}</colgroup>" if cols else ""
    return f"<table{cls}>{colgroup}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


def _line_method(line_name: str) -> str | None:
    """The method text a line declared in the registry (None for a line not registered)."""
    from forensics.core.registry import LINES

    line = LINES.get(line_name)
    return line.method if line is not None and line.method else None


def _scalar_details(details: dict[str, Any]) -> list[tuple[str, Any]]:
    """The top-level scalar entries of a line's details (tables and curves stay in results.json)."""
    rows = []
    for key, value in details.items():
        if isinstance(value, (int, float, str, bool)) or value is None:
            rows.append((key, value))
        elif (
            isinstance(value, dict)
            and all(isinstance(v, (int, float, str, bool)) or v is None for v in value.values())
            and len(value) <= 8
        ):
            rows.append((key, ", ".join(f"{k}: {_short(v)}" for k, v in value.items())))
    return rows


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_html(result) -> str:
    """The full report for an :class:`~forensics.reports.results.AuditResult`."""
    from forensics.core.registry import discover_lines, gate_of
    from forensics.core.verdict import Verdict, plain_words

    data = result.to_json()
    verdict, run, inputs = data["verdict"], data["run"], data["inputs"]
    figures = {ev.line: ev.figures for ev in result.evidence}
    gate = gate_of(discover_lines()[0])
    behaviour_ev = next((ev for ev in result.evidence if ev.line == gate), None)
    v = Verdict(verdict["label"], verdict["confidence"], verdict["step"], verdict["reason"])
    colour = COLOURS.get(verdict["label"], "#1f2328")
    title = f"{inputs['unlearned']['name']} vs {inputs['original']['name']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Unlearning audit: {e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Unlearning audit: {e(title)}</h1>",
        f'<p class="sub">Was the knowledge of the forget set deleted from the unlearned model, or only suppressed? '
        f"Audited {e(run['started'])} &middot; profile {e(run['profile'])} &middot; seed {e(run['seed'])}"
        f"{' &middot; fact text redacted' if run['redact'] else ''}</p>",
        # ---------------------------------------------------------------- summary
        "<h2>Executive summary</h2>",
        f'<div class="verdict" style="border-color:{colour}">'
        f'<span class="label" style="color:{colour}">{e(verdict["label"])}</span>'
        f'<span class="conf">confidence: <b>{e(verdict["confidence"])}</b></span>'
        f"<p>{e(plain_words(v, behaviour_ev))}</p>"
        f"<p><b>Why this verdict</b> (step {e(verdict['step'])} of the rule below): {e(verdict['reason'])}</p></div>",
    ]
    deciding = (
        [("decided", r) for r in verdict["deciding_lines"]]
        + [("against", r) for r in verdict["lines_against"]]
        + [("held back", r) for r in verdict.get("held_back", [])]
    )
    if deciding:
        parts.append(
            table(
                ["line", "role", "vote", "effect", "control", "95% CI of difference", "p", "why"],
                [
                    [
                        e(r["line"]),
                        role,
                        vote_html(r["vote"]),
                        num(r["effect"]),
                        num(r["control"]),
                        ci_text(r["ci"]),
                        p_text(r["p_value"]),
                        e(r["reason"]),
                    ]
                    for role, r in deciding
                ],
                widths=[18, 8, 12, 8, 8, 14, 8, 24],
                numeric={3, 4, 5, 6},
            )
        )
    parts.extend(multiplicity_html(verdict.get("multiplicity") or {}))

    # -------------------------------------------------------------------- behaviour
    parts.append("<h2>Behaviour: original (O) vs unlearned (U)</h2>")
    behaviour = data["behaviour"]
    if behaviour:
        names = {"forget": "forget (F)", "retain": "retain (R)", "holdout": "holdout (H, never trained on)"}
        rows = []
        for name in behaviour.get("original", {}):
            o, u = behaviour["original"][name], behaviour["unlearned"][name]
            rows.append(
                [
                    e(names.get(name, name)),
                    e(o["n"]),
                    pct(o["accuracy"]),
                    pct(u["accuracy"]),
                    num(o["mean_logprob"], 2),
                    num(u["mean_logprob"], 2),
                ]
            )
        parts.append(
            table(
                ["set", "n", "accuracy O", "accuracy U", "answer log-prob O", "answer log-prob U"],
                rows,
                keep=True,
                numeric={1, 2, 3, 4, 5},
            )
        )
        parts.append(
            "<p class='sub'>Accuracy: greedy exact match of the answer. Log-prob: mean "
            "log P(answer | prompt). The holdout accuracy is what guessing achieves.</p>"
        )
        free = next((ev["details"].get("free_text") for ev in data["evidence"] if ev["line"] == gate), None)
        if free:
            rows = [
                [e(names.get(name, name))]
                + [
                    num(free[role][name][m], 2)
                    for m in ("rouge_l_recall", "truth_ratio", "choice_accuracy")
                    for role in ("original", "unlearned")
                ]
                for name in free.get("original", {})
            ]
            parts.append(
                table(
                    [
                        "set",
                        "ROUGE-L O",
                        "ROUGE-L U",
                        "truth ratio O",
                        "truth ratio U",
                        "choice acc. O",
                        "choice acc. U",
                    ],
                    rows,
                    keep=True,
                    numeric={1, 2, 3, 4, 5, 6},
                )
            )
            parts.append(
                "<p class='sub'>Free text: ROUGE-L recall of greedy generations against the answer; truth "
                "ratio of perturbed to paraphrased answers (near 0: the true answer is preferred); accuracy "
                "of the likeliest choice. Reported, not voted on.</p>"
            )
    else:
        parts.append("<p class='notrun'>The behaviour gate did not run.</p>")
    if data["examples"]:
        mark = {True: " &#10003;", False: " &#10007;"}
        parts.append("<h3>Examples from the forget set</h3>")
        parts.append(
            table(
                ["id", "prompt", "answer", "O's next token", "U's next token"],
                [
                    [
                        f"<span class='mono'>{e(r['id'])}</span>",
                        e(r["prompt"]),
                        e(r["answer"]),
                        e(r["original"]) + mark[bool(r["original_correct"])],
                        e(r["unlearned"]) + mark[bool(r["unlearned_correct"])],
                    ]
                    for r in data["examples"]
                ],
                widths=[18, 40, 14, 14, 14],
                keep=True,
            )
        )

    # -------------------------------------------------------------------- evidence table
    parts.append(
        "<h2>Evidence</h2><p class='sub'>Effect: the line's score on the forget set F. Control: the "
        "identical procedure on the holdout set H (facts no model saw). The interval is a 95% "
        "bootstrap CI of effect &minus; control (some lines adjust it for many comparisons; see each "
        "line). Only lines that ran and voted deleted / suppressed / not_forgotten enter the verdict.</p>"
    )
    parts.append(
        table(
            ["line", "effect (F)", "control", "difference", "95% CI", "p", "vote", "time"],
            [
                [
                    f"<a href='#line-{e(ev['line'])}'>{e(ev['line'])}</a>",
                    num(ev["effect"]),
                    num(ev["control"]),
                    num(ev["difference"], signed=True),
                    ci_text(ev["ci"]),
                    p_text(ev["p_value"]),
                    vote_html(ev["vote"], ev["status"]),
                    f"{num(ev.get('seconds'), 1)} s" + (" (cached)" if ev.get("cached") else ""),
                ]
                for ev in data["evidence"]
            ],
            widths=[20, 10, 10, 10, 17, 7, 12, 14],
            numeric={1, 2, 3, 4, 5, 7},
        )
    )
    not_run = [ev for ev in data["evidence"] if ev["status"] == "not_run"]
    if not_run:
        parts.append(
            "<p class='sub'>Not run: " + "; ".join(f"{e(ev['line'])} ({e(ev['reason'])})" for ev in not_run) + ".</p>"
        )

    # -------------------------------------------------------------------- per line
    parts.append("<h2>The evidence, line by line</h2>")
    for ev in data["evidence"]:
        parts.append(f"<div class='line' id='line-{e(ev['line'])}'><h3>{e(ev['line'])}</h3>")
        parts.append(f"<p><i>{e(ev['question'])}</i></p>")
        if ev["status"] == "not_run":
            parts.append(f"<p class='notrun'>Not run: {e(ev['reason'])}</p>")
        else:
            parts.append(f"<p><b>Measure:</b> {e(ev['metric'])}.</p>")
            parts.append(
                f"<p><b>Result:</b> effect {num(ev['effect'])}, control {num(ev['control'])}, difference "
                f"{num(ev['difference'], signed=True)} (95% CI {ci_text(ev['ci'])}, p {p_text(ev['p_value'])}). "
                f"Vote: {vote_html(ev['vote'], ev['status'])}. {e(ev['reason'])}</p>"
            )
            scalars = _scalar_details(ev["details"])
            if scalars:
                parts.append(
                    table(
                        ["detail", "value"],
                        [[e(k), e(_short(val))] for k, val in scalars],
                        widths=[30, 70],
                        keep=len(scalars) < 12,
                    )
                )
            for name, png in figures.get(ev["line"], {}).items():
                parts.append(_figure(png, f"{ev['line']}: {name}"))
        method = _line_method(ev["line"])
        if method:
            parts.append(f"<div class='method'><b>Method.</b> {e(method)}</div>")
        parts.append("</div>")

    # -------------------------------------------------------------------- rule, methods, limitations
    parts.append("<h2>The verdict rule</h2><ol class='rule' style='list-style:none;padding-left:0'>")
    parts.extend(f"<li>{e(step)}</li>" for step in RULE)
    parts.append("</ol>")
    parts.append(
        "<h2>Methods and limitations</h2><ul class='plain'>"
        "<li><b>The control rule.</b> Every recovery test runs the identical procedure on the holdout set H: "
        "facts of the same form that no model ever saw. What a test recovers on H is what the procedure "
        "itself injects or guesses; only recovery on F beyond H, with a confidence interval, is evidence.</li>"
        '<li><b>Deleted means "not found by these tests".</b> A DELETED verdict says that lines with the '
        "power to find O's knowledge did not find it in U; a method these lines do not cover could still "
        "recover it.</li>"
        "<li><b>Intervals.</b> Percentile bootstrap, over subjects where facts share a subject (paraphrases "
        "are not independent). With few facts or subjects the intervals are wide and lines abstain rather "
        "than vote.</li>"
        "<li><b>Lines not run</b> (listed above with their reasons) do not vote; an audit with few lines "
        "run is weaker than its confidence label alone suggests.</li>"
        "<li><b>Descriptive lines</b> (such as CKA similarity) have no sound control and never vote.</li>"
        "<li><b>Profiles.</b> The quick profile uses few resamples and a fixed probe strength: a smoke test, "
        "not an audit to act on.</li>"
        "</ul>"
    )
    if data["warnings"]:
        parts.append(
            "<h3>Data warnings</h3><ul class='plain'>"
            + "".join(f"<li>{e(w)}</li>" for w in data["warnings"][:50])
            + "</ul>"
        )
        if len(data["warnings"]) > 50:
            parts.append(f"<p class='sub'>... and {len(data['warnings']) - 50} more in results.json.</p>")
    if data["skipped_modules"]:
        parts.append(
            "<h3>Evidence modules that failed to load</h3><ul class='plain'>"
            + "".join(f"<li><code>{e(m)}</code>: {e(r)}</li>" for m, r in data["skipped_modules"].items())
            + "</ul>"
        )

    # -------------------------------------------------------------------- reproducibility
    parts.append("<h2>Reproducibility</h2>")
    parts.append(f"<p><b>Command:</b> <code class='mono'>{e(run['command'])}</code></p>")
    parts.append(
        f"<p>Seed {e(run['seed'])}, profile {e(run['profile'])}, device {e(run['device'])}, "
        f"dtype {e(run['dtype'])}, total {num(run['seconds'], 1)} s. Results schema "
        f"{e(data['schema'])} version {e(data['schema_version'])}.</p>"
    )
    placement = run.get("placement")
    if placement:
        parts.append(
            f"<p>Placement: original on {e(placement['original'])}, unlearned on {e(placement['unlearned'])}, "
            f"each model over {e(placement['n_devices'])} device(s).</p>"
        )
    template = run.get("chat_template")
    if template:
        parts.append(
            f"<p><b>Chat template:</b> every fact prompt was rendered as a user turn in the template of "
            f"<span class='mono'>{e(template['source'])}</span> (sha256 "
            f"<span class='mono'>{e(template['sha256'][:16])}</span>): "
            f"<code class='mono'>{e(template['example'])}</code></p>"
        )
    else:
        parts.append("<p><b>Chat template:</b> none; fact prompts were fed as written.</p>")
    if run.get("signing_key"):
        parts.append(
            "<p><b>Signed:</b> every file of this report folder is listed with its SHA-256, beside the "
            "inputs' hashes and the code version, in <code>attestation.dsse.json</code>, signed with the "
            f"Ed25519 key <span class='mono'>{e(run['signing_key'])}</span>. Check it with "
            "<code>forensics verify FOLDER --key PUBLIC_KEY</code>.</p>"
        )
    rows = []
    for role, rec in inputs.items():
        if rec is None:
            rows.append([e(role), "<span class='notrun'>not given</span>", "", ""])
        elif "weights_sha256" in rec:
            rows.append(
                [
                    e(role),
                    f"<span class='mono'>{e(rec['path'])}</span>",
                    e(
                        f"{rec['architecture']}, {rec['n_layers']} layers"
                        + (
                            f"; {rec['source']['format']}, {rec['source']['quantization']}, "
                            f"{rec['source']['loaded_as']}"
                            if rec.get("source")
                            else ""
                        )
                    ),
                    f"<span class='mono'>{'file' if rec.get('source') else 'weights'} {e(rec['weights_sha256'])}</span>",
                ]
            )
        else:
            digest = f"content {rec['content_sha256']}" + (f"; file {rec['file_sha256']}" if rec["file_sha256"] else "")
            rows.append(
                [
                    e(role),
                    f"<span class='mono'>{e(rec['path'])}</span>",
                    e(f"{rec['n']} items"),
                    f"<span class='mono'>{e(digest)}</span>",
                ]
            )
    parts.append(table(["input", "path", "size", "SHA-256"], rows, widths=[11, 30, 17, 42]))
    parts.append(
        table(
            ["package", "version"], [[e(k), e(val)] for k, val in data["versions"].items()], widths=[30, 70], keep=True
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)
