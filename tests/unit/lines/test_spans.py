"""Which tokens each answer-level score reads, pinned on a hand-built example."""

from __future__ import annotations

import numpy as np
import pytest


def test_membership_scores_the_answer_span_by_default(tiny_checkpoints):
    from forensics.compute.scoring import encode_facts, logits_fn_for, score_facts, sequence_losses
    from forensics.inputs.data import Fact
    from forensics.inputs.loading import load_model
    from forensics.lines.membership_inference import MembershipConfig, fact_attack_scores

    loaded = load_model(tiny_checkpoints["gpt-neox"])
    facts = [
        Fact("the quick brown fox", " jumps over"),
        Fact("a lazy dog while seven", " bright stars glow"),
        Fact("calm water", " above"),
    ]
    assert MembershipConfig().span == "answer"
    spans = fact_attack_scores(loaded, facts)
    answer_lp = score_facts(logits_fn_for(loaded.model), loaded.tokenizer, facts).logprob
    n_answer = np.array([len(a) for _, a in encode_facts(loaded.tokenizer, facts)])
    assert (n_answer >= 1).all() and n_answer.max() > 1
    # LOSS on the answer span: the mean log-prob of the answer's tokens given the prompt
    np.testing.assert_allclose(spans["answer"]["loss"], answer_lp / n_answer, atol=1e-5)
    # LOSS on the text span: minus the mean NLL of every token of prompt + answer after the first
    ids = [p + a for p, a in encode_facts(loaded.tokenizer, facts)]
    np.testing.assert_allclose(spans["text"]["loss"], -sequence_losses(loaded.model, ids), atol=1e-5)
    # a changed prompt moves the text span but not the answer tokens' own positions in the sum
    assert not np.allclose(spans["answer"]["loss"], spans["text"]["loss"])


def test_membership_reads_the_value_tokens_of_an_answer_without_a_key(tiny_checkpoints):
    import torch

    from forensics.compute.measures import answer_frames, question_form, value_positions
    from forensics.compute.scoring import encode_facts
    from forensics.inputs.data import Fact
    from forensics.inputs.loading import load_model
    from forensics.lines.membership_inference import MembershipConfig, fact_attack_scores, span_scores

    loaded = load_model(tiny_checkpoints["gpt-neox"])

    def fact(subject, value, key=False):
        return Fact(
            f"Where was {subject} born?", f" {subject} was born in {value}.", subject, key=value if key else None
        )

    pool = [fact(s, v) for s, v in [("Ana", "Lune"), ("Bo", "Mars"), ("Cy", "Tulvin")]]
    facts = [fact("Eve", "Port Dravos"), fact("Fay", "Old Kelmar"), fact("Gus", "Brevik", key=True)]
    got = fact_attack_scores(loaded, facts, value_pool=pool, spans=("answer",))["answer"]["loss"]
    whole = fact_attack_scores(loaded, facts, spans=("answer",))["answer"]["loss"]
    frames = answer_frames(loaded.tokenizer, pool)
    for k, (f, (p, a)) in enumerate(zip(facts, encode_facts(loaded.tokenizer, facts))):
        with torch.no_grad():
            lp = torch.log_softmax(loaded.model(torch.tensor([p + a]))[0].float(), -1)
        answer_lp = np.array([float(lp[len(p) - 1 + j, t]) for j, t in enumerate(a)])
        kept = value_positions(p, a, frames[question_form(f)])
        assert len(kept) < len(a)  # the name and the frame are left out
        if f.key is None:
            assert got[k] == pytest.approx(answer_lp[kept].mean(), abs=1e-5)
        else:  # a keyed fact is read whole here (span_scores reads its key)
            assert got[k] == pytest.approx(answer_lp.mean(), abs=1e-5) == whole[k]
        if k == 0:  # "new": only what the prompt gives is left out, the frame is read
            new = span_scores(loaded, facts[:1], MembershipConfig(unkeyed_span="new"), pool)["answer"]["loss"]
            assert new[0] == pytest.approx(answer_lp[value_positions(p, a)].mean(), abs=1e-5)
            assert len(value_positions(p, a)) > len(kept)
    unkeyed = facts[:2]
    for span, expected in (("value", got[:2]), ("whole", whole[:2])):
        scores = span_scores(loaded, unkeyed, MembershipConfig(unkeyed_span=span), pool)["answer"]["loss"]
        np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_membership_line_reports_the_other_span(tiny_zoo):
    from forensics.core.context import AuditContext
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model
    from forensics.lines.membership_inference import MembershipConfig, membership_line

    data = tiny_zoo / "data"
    facts = {n: load_facts(data / f"{n}.jsonl")[0][:60] for n in ("forget", "retain", "holdout")}
    ctx = AuditContext(load_model(tiny_zoo / "models" / "original"), load_model(tiny_zoo / "models" / "npo"), **facts)
    ev = membership_line(ctx, MembershipConfig(n_boot=50, n_perm=50))
    assert ev.details["span"] == "answer" and ev.details["other_span"]["span"] == "text"
    assert set(ev.details["other_span"]["auc"]) == {"unlearned", "original"}
    text = membership_line(ctx, MembershipConfig(n_boot=50, n_perm=50, span="text"))
    assert text.details["other_span"]["span"] == "answer"
    assert text.details["attacks"]["loss"]["auc"]["unlearned"] == pytest.approx(
        ev.details["other_span"]["auc"]["unlearned"]["loss"]
    )
    bad = membership_line(ctx, MembershipConfig(span="prompt"))
    assert bad.status == "not_run" and "unknown span" in bad.reason
    bad = membership_line(ctx, MembershipConfig(unkeyed_span="key"))
    assert bad.status == "not_run" and "unknown unkeyed_span" in bad.reason


def test_remind_substitutes_the_prompt_and_scores_the_answer_by_default(tiny_checkpoints):
    from forensics.compute.scoring import encode_facts, logits_fn_for, score_facts, sequence_losses
    from forensics.core.context import AuditContext
    from forensics.inputs.data import Fact
    from forensics.inputs.loading import load_model
    from forensics.lines.remind.line import RemindConfig, prepare_scan, scan_features

    loaded = load_model(tiny_checkpoints["gpt-neox"])
    facts = [Fact(f"the quick brown fox number {k} saw", " jumps over", subject=f"s{k}") for k in range(12)]
    config = RemindConfig(min_examples=1, n_neighbours=6)
    assert config.span == "answer"
    scan = prepare_scan(AuditContext(loaded, loaded, facts, facts, facts), config)
    encoded = encode_facts(loaded.tokenizer, facts)
    prompt_len = [len(p) for p, _ in encoded]
    assert scan.starts["forget"] == prompt_len
    nbs, owner, _ = scan.neighbours["forget"]
    for nb, i in zip(nbs, owner):  # only prompt tokens are ever substituted
        changed = [p for p, (a, b) in enumerate(zip(scan.tokens["forget"][i], nb)) if a != b]
        assert changed and max(changed) < prompt_len[i]
    # the loss at radius 0 is the answer's mean NLL given the prompt
    feats = scan_features(loaded, scan, config, sets=("forget",))
    answer_lp = score_facts(logits_fn_for(loaded.model), loaded.tokenizer, facts).logprob
    n_answer = np.array([len(a) for _, a in encoded])
    np.testing.assert_allclose(feats["forget"]["features"][:, 0], -answer_lp / n_answer, atol=1e-5)
    # the text span substitutes anywhere and scores every token after the first
    text = prepare_scan(AuditContext(loaded, loaded, facts, facts, facts), RemindConfig(min_examples=1, span="text"))
    assert text.starts["forget"] is None
    whole = scan_features(loaded, text, RemindConfig(span="text"), sets=("forget",))
    np.testing.assert_allclose(
        whole["forget"]["features"][:, 0], sequence_losses(loaded.model, text.tokens["forget"]), atol=1e-5
    )
    bad = prepare_scan(AuditContext(loaded, loaded, facts, facts, facts), RemindConfig(span="prompt"))
    assert isinstance(bad, str) and "unknown span" in bad


def test_sequence_losses_from_a_start_position(tiny_checkpoints):
    import torch

    from forensics.compute.scoring import sequence_losses
    from forensics.inputs.loading import load_model

    loaded = load_model(tiny_checkpoints["gpt-neox"])
    seqs = [[5, 9, 14, 20, 31], [7, 8, 9], [4, 6, 8]]
    out = sequence_losses(loaded.model, seqs, starts=[3, 1, 2])
    for seq, start, value in zip(seqs, [3, 1, 2], out):
        with torch.no_grad():
            lp = torch.log_softmax(loaded.model(torch.tensor([seq]))[0, :-1].float(), -1)
        picked = lp.gather(1, torch.tensor(seq[1:])[:, None])[:, 0]
        assert value == pytest.approx(-float(picked[start - 1 :].mean()), abs=1e-5)
    assert np.isnan(sequence_losses(loaded.model, [[5, 9]], starts=[2])[0])  # nothing to score
