"""Probe lines on the tiny zoo: the retrained model is never called suppressed, known
suppression is found, and bad input is "not run" with a reason."""

from __future__ import annotations

import dataclasses
import json

import pytest

from forensics.core.context import AuditContext
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model
from forensics.lines.attribute_probes import AttributeProbeConfig, attribute_probe_line
from forensics.lines.logit_lens import LogitLensConfig, logit_lens_line
from forensics.lines.trace_detector import TraceConfig, trace_line


@pytest.fixture(scope="module")
def zoo_sets(tiny_zoo):
    return {s: load_facts(tiny_zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}


@pytest.fixture(scope="module")
def pair(tiny_zoo, zoo_sets, tmp_path_factory):
    """``pair(name, **sets)``: an audit context of O and the zoo model ``name``; every context
    keeps its activations in one on-disk cache, so O's are captured once for the module."""
    original = load_model(tiny_zoo / "models" / "original")
    cache = tmp_path_factory.mktemp("acts")

    def make(name: str, **overrides) -> AuditContext:
        unlearned = original if name == "original" else load_model(tiny_zoo / "models" / name)
        return AuditContext(original=original, unlearned=unlearned, **(zoo_sets | overrides), cache_dir=cache)

    return make


def test_logit_lens_is_descriptive(pair):
    config = LogitLensConfig()
    retrain = logit_lens_line(pair("retrain"), config)
    assert retrain.status == "descriptive" and retrain.ci[0] <= 0 <= retrain.ci[1]
    npo = logit_lens_line(pair("npo"), config)  # NPO leaves the answer readable mid-network
    assert npo.vote is None and npo.ci[0] > 0 and npo.reason.startswith("the answer is readable")
    assert npo.figures["logit_lens"].startswith(b"\x89PNG")
    json.dumps(npo.to_json())


def test_tuned_lens_votes_on_suppression_and_not_on_retraining(pair):
    from forensics.lines.tuned_lens import TunedLensConfig, tuned_lens_line

    config = TunedLensConfig(n_boot=500, n_perm=500)
    retrain = tuned_lens_line(pair("retrain"), config)
    assert retrain.status == "ok" and retrain.vote is None, retrain.reason
    npo = tuned_lens_line(pair("npo"), config)
    assert npo.vote == "suppressed" and npo.ci[0] > 0, npo.reason
    kl = npo.details["kl_to_output_on_retain"]
    # the translators, fitted on R, bring every depth's read-out closer to O's own output
    assert all(tuned < raw for raw, tuned in zip(kl["raw"], kl["tuned"])), kl
    assert npo.figures["tuned_lens"].startswith(b"\x89PNG")
    json.dumps(npo.to_json())


def test_an_unfitted_tuned_lens_is_the_logit_lens(pair):
    """Zero steps leave every translator at the identity: on U = O the two lenses read the same
    ranks at every depth."""
    from forensics.lines.tuned_lens import TunedLensConfig, tuned_lens_line

    ctx = pair("original")
    tuned = tuned_lens_line(ctx, TunedLensConfig(steps=0, n_boot=50, n_perm=20))
    raw = logit_lens_line(ctx, LogitLensConfig(n_boot=50, n_perm=20))
    assert tuned.details["table"] == raw.details["table"]
    assert tuned.details["kl_to_output_on_retain"]["raw"] == tuned.details["kl_to_output_on_retain"]["tuned"]


def test_the_tuned_lens_reads_u_through_u_own_lens(pair):
    """The default reader: U's states go through U's own translators and head. Unfitted (zero
    steps) that is U's logit lens exactly, while O is still read through O's lens; fitted, NPO's
    suppression is still found, and U's own translators' fit is reported. ``reader="original"``
    reads U through O's lens: a different read-out of the same states, reported as such."""
    from forensics.lines.tuned_lens import TunedLensConfig, tuned_lens_line

    raw = logit_lens_line(pair("npo"), LogitLensConfig(n_boot=50, n_perm=20))
    unfitted = tuned_lens_line(pair("npo"), TunedLensConfig(steps=0, n_boot=50, n_perm=20))
    for metric in ("reciprocal_rank", "probability"):
        assert unfitted.details["table"][f"unlearned/{metric}"] == raw.details["table"][f"unlearned/{metric}"]
        assert unfitted.details["table"][f"original/{metric}"] == raw.details["table"][f"original/{metric}"]
    assert unfitted.details["reader"] == "own"
    through_o = tuned_lens_line(pair("npo"), TunedLensConfig(steps=0, n_boot=50, n_perm=20, reader="original"))
    assert through_o.details["reader"] == "original" and "u_kl_to_output_on_retain" not in through_o.details
    # NPO tuned every weight, its head included: O's head reads U's states differently
    assert through_o.details["table"]["unlearned/probability"] != raw.details["table"]["unlearned/probability"]
    config = TunedLensConfig(n_boot=500, n_perm=500)
    npo = tuned_lens_line(pair("npo"), config)
    assert npo.vote == "suppressed" and npo.ci[0] > 0, npo.reason
    assert "U's own tuned lens" in npo.reason
    kl = npo.details["u_kl_to_output_on_retain"]
    assert all(tuned < raw for raw, tuned in zip(kl["raw"], kl["tuned"])), kl
    retrain = tuned_lens_line(pair("retrain"), config)
    assert retrain.status == "ok" and retrain.vote is None, retrain.reason


def test_trace_detector(pair):
    config = TraceConfig()
    same = trace_line(pair("original"), config)
    assert same.vote == "unmodified" and same.effect == pytest.approx(0.5, abs=0.05)
    npo = trace_line(pair("npo"), config)
    assert npo.vote == "modified" and npo.effect > 0.9


def test_attribute_probes_retrain_is_not_suppressed_and_npo_is(pair):
    config = AttributeProbeConfig(curves=("final/linear",), n_boot=1000)
    retrain = attribute_probe_line(pair("retrain"), config)
    assert retrain.status == "ok" and retrain.vote != "suppressed", retrain.reason
    npo = attribute_probe_line(pair("npo"), config)
    assert npo.vote == "suppressed", npo.reason
    # its p is adjusted over every depth and probe and can still survive the audit's Holm control
    assert npo.p_value is not None and npo.p_value / 2 < 0.05 / 10, npo.p_value
    assert npo.figures["attribute_probes"].startswith(b"\x89PNG")


def test_attribute_probes_bad_input_is_not_run(pair, zoo_sets):
    config = AttributeProbeConfig(curves=("final/linear",))
    no_subject = [dataclasses.replace(f, subject=None) for f in zoo_sets["forget"]]
    result = attribute_probe_line(pair("npo", forget=no_subject), config)
    assert result.status == "not_run" and "'subject' on every fact" in result.reason
    one_class = [dataclasses.replace(f, answer=" same") for f in zoo_sets["holdout"]]
    result = attribute_probe_line(pair("npo", holdout=one_class), config)
    assert result.status == "not_run" and "single answer class" in result.reason
    few = [f for f in zoo_sets["forget"] if f.subject in {g.subject for g in zoo_sets["forget"][:24]}]
    result = attribute_probe_line(pair("npo", forget=few), config)
    assert result.status == "not_run" and "subjects" in result.reason
    assert result.effect is None and result.vote is None


def test_memorisation_signature_is_descriptive_with_its_twin_control(pair, zoo_sets):
    from forensics.lines.memorisation_probe import SignatureConfig, memorisation_line

    config = SignatureConfig()
    result = memorisation_line(pair("npo"), config)
    assert result.status == "descriptive" and result.vote is None
    curves = result.details["curves"]
    assert set(curves) == {"original", "unlearned", "twin"} and len(curves["twin"]) == 3
    assert result.ci[0] <= result.effect - result.control <= result.ci[1]
    assert result.figures["memorisation_signature"].startswith(b"\x89PNG")
    no_subject = [dataclasses.replace(f, subject=None) for f in zoo_sets["holdout"]]
    assert memorisation_line(pair("npo", holdout=no_subject), config).status == "not_run"


def test_leave_one_out_probe_finds_a_shared_direction_and_not_noise():
    import numpy as np

    from forensics.probing.leave_one_out import loo_accuracy

    rng = np.random.default_rng(0)
    direction = rng.normal(size=32)
    neg = rng.normal(size=(12, 3, 32))
    pos = rng.normal(size=(12, 3, 32)) + 0.8 * direction
    assert loo_accuracy(pos, neg).mean() > 0.9
    assert abs(loo_accuracy(rng.normal(size=(12, 3, 32)), neg).mean() - 0.5) < 0.2


def test_answer_probe_reads_the_distinctive_span_of_sentence_answers():
    from dataclasses import replace

    from forensics.inputs.data import Fact
    from forensics.lines.answer_probe import distinctive_spans, true_candidate

    spans = distinctive_spans([" Zo was born in Port Kelmar.", " Zo was born in Old Dravos.", " Zo was born in 1961."])
    assert spans == [
        (" Zo was born in ", "Port Kelmar"),
        (" Zo was born in ", "Old Dravos"),
        (" Zo was born in ", "1961"),
    ]
    assert distinctive_spans([" Kelmar", " Dravos"]) == [(" ", "Kelmar"), (" ", "Dravos")]
    assert distinctive_spans([" a b.", " a b."]) == [("", "a b."), ("", "a b.")]  # nothing differs
    fact = Fact(prompt="Q:", answer=" Zo is a baker.", paraphrased_answer=" By trade Zo is a baker.")
    assert true_candidate(fact) == fact.answer  # no perturbed answers of its own
    tofu = replace(fact, perturbed_answers=(" By trade Zo is a miner.",))
    assert true_candidate(tofu) == tofu.paraphrased_answer  # TOFU: perturbed answers share the paraphrase's frame


def test_answer_probe_decodes_the_answer_before_it_is_given(pair, zoo_sets):
    from forensics.lines.answer_probe import AnswerProbeConfig, answer_probe_line, candidates

    # built perturbed answers: other subjects' answers to the same attribute, never the true one
    perturbed, source = candidates(zoo_sets["forget"], 3, seed=0)
    assert source == "built"
    for fact, wrong in zip(zoo_sets["forget"], perturbed):
        assert wrong and fact.answer not in wrong
        assert all(w in {g.answer for g in zoo_sets["forget"] if g.attribute == fact.attribute} for w in wrong)
    config = AnswerProbeConfig(n_boot=300, n_perm=300)
    retrain = answer_probe_line(pair("retrain"), config)
    assert retrain.status == "ok" and retrain.vote is None, retrain.reason
    assert retrain.details["scorable_share"]["forget"] > 0.9  # one-word answers: every fact is a label
    assert retrain.ci[0] <= 0 <= retrain.ci[1]
    assert retrain.details["perturbed_answers"]["forget"].startswith("built")
    assert retrain.figures["answer_probe"].startswith(b"\x89PNG")
