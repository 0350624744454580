"""Behaviour scoring (forensics.compute.scoring) agrees with an independent greedy-generation loop; the behaviour
line on the tiny zoo."""

from __future__ import annotations

import math

import torch

from forensics.compute.scoring import EncodedFacts, logits_fn_for, score_facts
from forensics.inputs.data import Fact
from forensics.inputs.loading import load_hf_model


def _greedy(model, ids: list[int], n: int) -> list[int]:
    tokens = list(ids)
    for _ in range(n):
        with torch.no_grad():
            tokens.append(int(model(torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(ids) :]


def test_greedy_accuracy_and_logprob_match_a_manual_loop(tiny_checkpoints, test_tokenizer):
    model = load_hf_model(tiny_checkpoints["gpt-neox"])
    tok = test_tokenizer
    prompts = ["the quick brown", "seven bright stars glow above", "a lazy dog", "calm water while the"]
    facts = []
    for prompt in prompts:  # one fact per prompt that the model answers, one it does not
        ids = tok(prompt)["input_ids"]
        own = _greedy(model, ids, 2)
        wrong = [(own[0] + 7) % len(tok), own[1]]
        for answer_ids in (own, wrong):
            answer = tok.decode(answer_ids)
            # keep answers that re-tokenise to exactly the ids they were decoded from
            if tok(answer, add_special_tokens=False)["input_ids"] == answer_ids:
                facts.append(Fact(prompt, answer))
    assert len(facts) >= 4
    scores = score_facts(logits_fn_for(model), tok, facts, batch_size=3)
    for fact, correct, logprob, predicted in zip(facts, scores.correct, scores.logprob, scores.predicted):
        p_ids = tok(fact.prompt)["input_ids"]
        a_ids = tok(fact.answer, add_special_tokens=False)["input_ids"]
        assert correct == (_greedy(model, p_ids, len(a_ids)) == a_ids)
        assert predicted == _greedy(model, p_ids, 1)[0]  # the greedy next token after the prompt
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([p_ids + a_ids])).logits[0], -1)
        manual = sum(float(lp[len(p_ids) - 1 + k, a]) for k, a in enumerate(a_ids))
        assert math.isclose(logprob, manual, abs_tol=1e-4)
    assert scores.correct.any() and not scores.correct.all()
    # tokenised once, scored again: the same numbers; the batched accuracy agrees with score()
    encoded = EncodedFacts(tok, facts, batch_size=3)
    again = encoded.score(logits_fn_for(model))
    assert (again.correct == scores.correct).all() and (again.logprob == scores.logprob).all()
    assert encoded.accuracy(logits_fn_for(model)) == scores.accuracy


def _inputs(zoo, name):
    from forensics.core.context import AuditContext
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    sets = {s: load_facts(zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    return AuditContext(
        original=load_model(zoo / "models" / "original"), unlearned=load_model(zoo / "models" / name), **sets
    )


def test_behaviour_gate_on_the_zoo(tiny_zoo):
    import json

    from forensics.lines.behaviour import BehaviourConfig, behaviour_line

    config = BehaviourConfig(n_boot=500, n_perm=500)
    labels = json.loads((tiny_zoo / "labels.json").read_text())
    for name, expect_vote in (("relearned", "not_forgotten"), ("npo", None), ("retrain", None)):
        evidence = behaviour_line(_inputs(tiny_zoo, name), config)
        assert evidence.vote == expect_vote, (name, evidence.reason)
        assert evidence.details["forgotten_behaviourally"] == (expect_vote is None)
        assert (labels[name]["ground_truth"] == "NOT_FORGOTTEN") == (expect_vote == "not_forgotten")
        json.dumps(evidence.to_json())  # the result is JSON-serialisable
        assert evidence.figures["behaviour"].startswith(b"\x89PNG")
    npo = behaviour_line(_inputs(tiny_zoo, "npo"), config)
    assert npo.effect <= 0.10 and npo.details["table"]["original"]["forget"]["accuracy"] >= 0.95
    assert npo.ci[0] < 0.15  # U's F accuracy is within reach of what it guesses on H


def test_lines_after_a_not_forgotten_gate_are_skipped_unless_asked(tiny_zoo):
    from forensics.core.pipeline import audit
    from forensics.core.runner import SKIPPED_AFTER_GATE

    data = tiny_zoo / "data"
    common = dict(
        original=tiny_zoo / "models" / "original",
        unlearned=tiny_zoo / "models" / "relearned",
        forget=data / "forget.jsonl",
        retain=data / "retain.jsonl",
        holdout=data / "holdout.jsonl",
        profile="quick",
        progress=False,
        lines=["behaviour", "tuned_lens"],
    )
    skipped = audit(**common)
    assert skipped.verdict.label == "NOT_FORGOTTEN"
    lens = next(e for e in skipped.evidence if e.line == "tuned_lens")
    assert lens.status == "not_run" and lens.reason == SKIPPED_AFTER_GATE and "--all-lines" in lens.reason
    ran = audit(**common, all_lines=True)
    assert ran.verdict.label == "NOT_FORGOTTEN" and ran.all_lines
    assert next(e for e in ran.evidence if e.line == "tuned_lens").status == "ok"
    # a model the gate does not decide on runs every line as before
    npo = audit(**(common | {"unlearned": tiny_zoo / "models" / "npo"}))
    assert next(e for e in npo.evidence if e.line == "tuned_lens").status == "ok"
