"""The warning corpus: inputs an audit accepts but must flag (token boundaries, samples too
small to vote on), through ``forensics check`` and through the audit itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forensics.cli import main


def _rows(zoo: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (zoo / "data" / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _no_leading_space(rows):
    rows[3]["answer"] = rows[3]["answer"].lstrip()
    return rows, ":4: token boundary: the answer has no leading space: it is glued to the prompt's last word"


def _prompt_ends_in_space(rows):
    rows[1]["prompt"] += " "
    rows[1]["answer"] = rows[1]["answer"].lstrip()
    return rows, ":2: token boundary: the prompt ends in a space"


def _many_boundary_problems(rows):
    for r in rows:
        r["answer"] = r["answer"].lstrip()
    return rows, f"token boundary: {len(rows) - 5} more facts like these ({len(rows)} of {len(rows)} in all)"


def _one_subject(rows):
    first = rows[0]["subject"]
    return [r for r in rows if r["subject"] == first][
        :2
    ], "sets too small to vote on: 1 forget subject, at least 8 needed"


def _no_subjects(rows):
    for r in rows:
        r.pop("subject", None)
    return rows, "forget set: no fact names a subject; each fact is its own group"


WARNINGS = {
    "answer without its leading space": _no_leading_space,
    "prompt ending in a space": _prompt_ends_in_space,
    "every answer glued to its prompt (summarised after five)": _many_boundary_problems,
    "a forget set of one subject": _one_subject,
    "a forget set without subjects (imported without --subject-field)": _no_subjects,
}


@pytest.mark.parametrize("case", list(WARNINGS))
def test_check_warns_with_file_and_line(case, tiny_zoo, tmp_path, capsys):
    rows, expected = WARNINGS[case](_rows(tiny_zoo, "forget"))
    forget = _write(tmp_path / "forget.jsonl", rows)
    code = main(
        [
            "check",
            "--original",
            str(tiny_zoo / "models" / "original"),
            "--forget",
            str(forget),
            "--holdout",
            str(tiny_zoo / "data" / "holdout.jsonl"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    warnings = [line for line in out.splitlines() if line.strip().startswith("warning:")]
    assert any(expected in w for w in warnings), (expected, warnings)
    if case not in ("a forget set of one subject", "a forget set without subjects (imported without --subject-field)"):
        assert any(str(forget) in w for w in warnings)


def test_the_zoo_data_raise_no_warning(tiny_zoo, capsys):
    data = tiny_zoo / "data"
    code = main(
        [
            "check",
            "--original",
            str(tiny_zoo / "models" / "original"),
            "--forget",
            str(data / "forget.jsonl"),
            "--retain",
            str(data / "retain.jsonl"),
            "--holdout",
            str(data / "holdout.jsonl"),
        ]
    )
    assert code == 0 and "warning" not in capsys.readouterr().out


def test_a_line_does_not_vote_on_one_subject(tiny_zoo):
    """Two facts of one subject per set: the line reports its numbers but its vote is withheld,
    and says why; with the minimum lowered the vote comes back and the multiplicity control
    holds it back (a permutation of one subject against one cannot give a small p)."""
    import forensics
    from forensics.inputs.data import Fact

    def two(name):
        rows = _rows(tiny_zoo, name)
        first = rows[0]["subject"]
        return [Fact(**r) for r in rows if r["subject"] == first][:2]

    text_span = {"span": "text"}  # the reproduction scored whole texts, which voted here
    result = forensics.audit(
        tiny_zoo / "models" / "original",
        tiny_zoo / "models" / "npo",
        two("forget"),
        two("retain"),
        two("holdout"),
        profile="quick",
        lines=["membership_inference"],
        settings={"membership_inference": text_span},
        progress=False,
    )
    evidence = result.line("membership_inference")
    assert evidence.status == "ok" and evidence.vote is None
    # its p-value permutes whole subjects, so the subject count does not withhold it (with one
    # subject per set that p cannot be small, and the multiplicity control holds the vote back);
    # two facts per set are too few for any vote
    assert evidence.details["p_test"] == "subject_permutation"
    assert evidence.reason.startswith("no vote: 2 forget facts, at least 16 needed; 2 holdout facts")
    assert "subject" not in evidence.reason.split("(")[0]
    withheld = evidence.details["vote_withheld"]
    assert withheld["why"].startswith("2 forget facts")
    assert any(w.startswith("sets too small to vote on") for w in result.warnings)
    assert result.verdict.label == "INCONCLUSIVE"
    # the minimum is the line's config: lowered, the vote comes back
    lowered = forensics.audit(
        tiny_zoo / "models" / "original",
        tiny_zoo / "models" / "npo",
        two("forget"),
        two("retain"),
        two("holdout"),
        profile="quick",
        lines=["membership_inference"],
        settings={"membership_inference": {**text_span, "min_subjects": 1, "min_facts": 1}},
        progress=False,
    )
    assert lowered.line("membership_inference").vote == withheld["vote"]
    if withheld["vote"] == "suppressed":  # one subject against one: the permutation p is at least 1/2
        assert [h["line"] for h in lowered.verdict.held_back] == ["membership_inference"]


def test_the_gate_votes_on_seven_holdout_subjects(tiny_zoo):
    """TOFU's shape has 7 holdout authors: the behaviour gate's not_forgotten vote stands there
    when its subject-permutation p is below 0.05 (the relearned model, which answers F again),
    so the verdict is NOT_FORGOTTEN, not a suppression finding from the deeper lines."""
    import forensics
    from forensics.inputs.data import Fact

    holdout_rows = _rows(tiny_zoo, "holdout")
    seven = list(dict.fromkeys(r["subject"] for r in holdout_rows))[:7]
    sets = {name: [Fact(**r) for r in _rows(tiny_zoo, name)] for name in ("forget", "retain")}
    holdout = [Fact(**r) for r in holdout_rows if r["subject"] in seven]

    def gate_audit(unlearned):
        return forensics.audit(
            tiny_zoo / "models" / "original",
            tiny_zoo / "models" / unlearned,
            sets["forget"],
            sets["retain"],
            holdout,
            profile="quick",
            lines=["behaviour"],
            progress=False,
        )

    result = gate_audit("relearned")
    gate = result.line("behaviour")
    assert gate.details["p_subjects"] < 0.05
    assert gate.vote == "not_forgotten" and result.verdict.label == "NOT_FORGOTTEN"
    # the model retrained without F does not answer it: no vote, whatever the subject count
    retrain = gate_audit("retrain")
    assert retrain.line("behaviour").vote is None and retrain.verdict.label != "NOT_FORGOTTEN"
