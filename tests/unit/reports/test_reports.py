"""Reports: user text is escaped (HTML and JSON), --redact hides fact text, HTML is self-contained."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from forensics.inputs.data import load_facts
from forensics.reports.results_json import check_results

SCRIPT = '<script>alert("pwned")</script>'
LINES = ["behaviour", "logit_lens"]


@pytest.fixture(scope="module")
def hostile(tiny_zoo, tmp_path_factory):
    """The tiny zoo's sets, with a <script> tag (and an ampersand) in the first forget prompt."""
    d = tiny_zoo / "data"
    forget = load_facts(d / "forget.jsonl")[0]
    forget[0] = replace(forget[0], prompt=f"{SCRIPT} & {forget[0].prompt}")
    sets = {
        "forget": forget,
        "retain": load_facts(d / "retain.jsonl")[0],
        "holdout": load_facts(d / "holdout.jsonl")[0],
    }
    return tiny_zoo, sets, tmp_path_factory.mktemp("reports")


def _audit(hostile, name, **kwargs):
    from forensics import audit

    zoo, sets, root = hostile
    out = root / name
    result = audit(
        zoo / "models" / "original",
        zoo / "models" / "npo",
        out=out,
        profile="quick",
        progress=False,
        lines=LINES,
        **sets,
        **kwargs,
    )
    return result, out


def test_user_text_is_inert_in_html_and_json(hostile):
    result, out = _audit(hostile, "plain")
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; " in page
    raw = (out / "results.json").read_text()
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    assert check_results(data) == []
    assert data["examples"][0]["prompt"].startswith(SCRIPT)  # same value once parsed
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"


def test_html_is_self_contained(hostile):
    result, out = _audit(hostile, "contained")
    page = (out / "report.html").read_text()
    assert "<img" in page and page.count('src="data:image/png;base64,') == page.count("<img")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page, re.I)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    for section in (
        "Executive summary",
        "Behaviour",
        "Evidence",
        "The verdict rule",
        "Methods and limitations",
        "Reproducibility",
    ):
        assert section in page
    assert result.verdict.label in page and result.inputs["forget"]["content_sha256"] in page


def test_redact_replaces_fact_text_by_ids(hostile):
    zoo, sets, _ = hostile
    result, out = _audit(hostile, "redacted", redact=True)
    page = (out / "report.html").read_text()
    raw = (out / "results.json").read_text()
    data = json.loads(raw)
    assert data["run"]["redact"] is True
    shown = sets["forget"][: len(data["examples"])]
    for fact in shown:
        for text in (fact.prompt, fact.subject):
            assert text not in json.dumps(data, ensure_ascii=False)
            assert text not in page
    assert "pwned" not in page and "pwned" not in raw
    ids = [row["prompt"] for row in data["examples"]]
    assert all(ident.startswith("forget:") for ident in ids)
    assert all(row["answer"] == "[redacted]" for row in data["examples"])
    assert ids[0] in page
    # the unredacted run of the same audit shows the text
    assert sets["forget"][1].prompt in (_audit(hostile, "shown")[1] / "report.html").read_text()
