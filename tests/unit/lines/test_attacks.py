"""Relearning, benign fine-tuning, quantization, membership inference and CKA: definitions checked against
independent computations, bad input refused, and behaviour on the tiny zoo's retrained
model (nothing to recover) against its original (everything known)."""

from __future__ import annotations

import zlib
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from forensics.core.context import AuditContext
from forensics.inputs.data import Fact


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    sets = {s: load_facts(tiny_zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    models = {n: load_model(tiny_zoo / "models" / n) for n in ("original", "retrain", "ga", "retrain_mentions")}
    return sets, models


def _inputs(zoo, unlearned, **overrides):
    sets, models = zoo
    return AuditContext(models["original"], models[unlearned], **(sets | overrides))


# ------------------------------------------------------------------ membership inference


def test_attack_scores_follow_the_published_definitions():
    from forensics.compute.mia import attack_scores

    lp = np.array([-0.1, -2.0, -0.5, -3.0, -0.2, -1.0, -0.3, -0.4, -0.6, -0.7])
    mu = np.full(10, -1.0)
    sigma = np.full(10, 2.0)
    text = "some text here"
    s = attack_scores([{"lp": lp, "mu": mu, "sigma": sigma}], [text], k=0.2)
    assert s["loss"][0] == pytest.approx(lp.mean())
    assert s["zlib"][0] == pytest.approx(lp.mean() / len(zlib.compress(text.encode())))
    assert s["min_k"][0] == pytest.approx(np.mean([-3.0, -2.0]))  # the 20% lowest of 10 tokens
    assert s["min_k_pp"][0] == pytest.approx(np.mean([(-3.0 + 1) / 2, (-2.0 + 1) / 2]))


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    from forensics.compute.mia import auc

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 40).round(1), rng.normal(0, 1, 30).round(1)  # with ties
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[pos, neg])
    assert auc(pos, neg) == pytest.approx(expected)


def test_membership_sees_the_original_but_not_the_retrained_model(zoo):
    from forensics.lines.membership_inference import MembershipConfig, membership_line

    cfg = MembershipConfig(n_boot=200, n_perm=200)
    retrain = membership_line(_inputs(zoo, "retrain"), cfg)
    assert retrain.status == "ok" and retrain.vote != "suppressed"
    # O "unlearned" nothing: F is plainly member-like
    sets, models = zoo
    same = membership_line(AuditContext(models["original"], models["original"], **sets), cfg)
    assert same.vote == "suppressed" and same.effect > 0.9 and same.ci[0] > 0


# -------------------------------------------------------------------------- relearning


def test_relearning_refuses_a_forget_set_too_small_to_split(zoo):
    from forensics.lines.relearning_attack import relearning_line

    sets, _ = zoo
    one_subject = [f for f in sets["forget"] if f.subject == sets["forget"][0].subject]
    ev = relearning_line(_inputs(zoo, "retrain", forget=one_subject))
    assert ev.status == "not_run" and "too small to split by subject" in ev.reason


def test_split_by_subject_is_disjoint_and_seeded():
    from forensics.lines.relearning_attack import split_by_subject

    facts = [Fact(f"p{i}", " a", subject=f"s{i % 6}") for i in range(30)]
    a, b = split_by_subject(facts, 3)
    assert {f.subject for f in a}.isdisjoint({f.subject for f in b}) and len(a) + len(b) == 30
    assert split_by_subject(facts, 3) == (a, b)


def test_relearning_recovers_ga_but_not_retrain(zoo):
    from forensics.lines.relearning_attack import RelearningConfig, model_lr, relearning_line

    cfg = RelearningConfig(seeds=(0, 1), n_boot=500, n_perm=500, positive_control=False, eval_steps=(0, 10, 30))
    retrain = relearning_line(_inputs(zoo, "retrain"), cfg)
    assert retrain.status == "ok" and retrain.vote != "suppressed"
    assert retrain.ci[0] <= 0 <= retrain.ci[1]
    ga = relearning_line(_inputs(zoo, "ga"), cfg)
    assert ga.vote == "suppressed" and ga.effect > ga.control
    budget = ga.details["budget"]
    assert budget["steps"] == cfg.steps and "AdamW" in budget["optimiser"]
    assert budget["lr"] == model_lr(64) == 1e-3  # cfg.lr None: the rate for the zoo's width
    assert set(ga.details["curves"]["forget"][0]) == set(cfg.eval_steps)
    # effect and control are the accuracies reached after the attack, not the gains
    rows = ga.details["per_seed"]
    assert ga.effect == pytest.approx(np.mean([r["acc_forget_b_after"] for r in rows]))
    assert ga.control == pytest.approx(np.mean([r["acc_holdout_b_after"] for r in rows]))
    for r in rows:
        assert r["gain_forget_b"] == pytest.approx(r["acc_forget_b_after"] - r["acc_forget_b_before"])


def test_cross_fitting_reads_every_subject_once_by_the_fine_tune_that_did_not_see_it(monkeypatch):
    """``attack_split`` with ``cross_fit``: two fine-tunes, a -> b then b -> a, their scores
    concatenated in the order of the facts it says it read; without it, one fine-tune reading b."""
    import forensics.lines.relearning_attack.line as line
    from forensics.lines.relearning_attack import RelearningConfig

    calls = []

    def fake_finetune(model, tok, train, evaluate, config, seed, device, lr, measure):
        calls.append(([f.subject for f in train], [f.subject for f in evaluate]))
        score = {0: [0.0] * len(evaluate), 30: [1.0 if f.subject.startswith("a") else 0.5 for f in evaluate]}
        per_step = {s: np.array(v) for s, v in score.items()}
        return {"per_step": per_step, "curve": {s: float(v.mean()) for s, v in per_step.items()}, "train_accuracy": 0.2}

    monkeypatch.setattr(line, "finetune", fake_finetune)
    a = [Fact(f"pa{i}", " x", subject=f"a{i}") for i in range(3)]
    b = [Fact(f"pb{i}", " y", subject=f"b{i}") for i in range(2)]
    one_way = RelearningConfig(cross_fit=False)
    run, read = line.attack_split(None, None, a, b, lambda fs: fs, one_way, 0, "cpu", 1e-3, "exact")
    assert read == b and calls == [(["a0", "a1", "a2"], ["b0", "b1"])]
    calls.clear()
    cfg = RelearningConfig()  # cross-fitted by default
    run, read = line.attack_split(None, None, a, b, lambda fs: fs, cfg, 0, "cpu", 1e-3, "exact")
    assert calls == [(["a0", "a1", "a2"], ["b0", "b1"]), (["b0", "b1"], ["a0", "a1", "a2"])]
    assert read == b + a
    assert run["per_step"][30].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert run["curve"][30] == pytest.approx(0.8) and run["train_accuracy"] == pytest.approx(0.2)
    assert "and back" in line._budget(cfg) and "and back" not in line._budget(one_way)


def test_cross_fitted_relearning_bounds_every_forget_subject(zoo):
    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    sets, _ = zoo
    cfg = RelearningConfig(seeds=(0,), n_boot=200, n_perm=200, positive_control=False, eval_steps=(0, 30))
    one_way = relearning_line(_inputs(zoo, "ga"), replace(cfg, cross_fit=False))
    crossed = relearning_line(_inputs(zoo, "ga"), cfg)  # the default
    n_forget = len({f.subject for f in sets["forget"]})
    assert crossed.details["per_seed"][0]["n_subjects_forget_b"] == n_forget
    assert one_way.details["per_seed"][0]["n_subjects_forget_b"] < n_forget
    assert crossed.vote == "suppressed" and crossed.effect > crossed.control


def test_the_peak_step_is_the_largest_recovery_after_step_0_ties_to_the_earliest():
    from forensics.compute.relearning import peak_step

    assert peak_step({0: 0.9, 5: 0.1, 10: 0.4, 30: 0.2}) == 10  # step 0 is never chosen
    assert peak_step({"0": 0.0, "5": 0.3, "10": 0.3, "30": 0.1}) == 5  # JSON keys; a tie: the earliest
    assert peak_step({"30": -0.1, "10": -0.2, "0": 0.0}) == 30
    with pytest.raises(ValueError):
        peak_step({0: 0.5})


def test_the_positive_control_curve_is_drawn_in_step_order_not_text_order():
    from forensics.compute.relearning import power_curve

    curve = {"0": 0.1, "10": 0.3, "20": 0.35, "30": 0.2, "5": 0.25}  # as stored: text keys in text order
    assert power_curve({"curve": curve}) == ([0, 5, 10, 20, 30], [0.1, 0.25, 0.3, 0.35, 0.2])


def test_the_attack_reads_u_at_the_step_where_the_positive_control_recovers_most(zoo):
    """U's F_b and H_b are read at the positive control's peak step: its recovery there is the
    largest of its curve, and U's per-seed numbers are its curves at that step; ``read_step="last"`` (the default)
    reads after the last step."""
    from dataclasses import replace

    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    cfg = RelearningConfig(seeds=(0,), n_boot=200, n_perm=200, eval_steps=(0, 4, 10, 30), read_step="peak")
    ev = relearning_line(_inputs(zoo, "ga"), cfg)
    power, step = ev.details["positive_control"], ev.details["read_step"]
    by_step = {int(k): v for k, v in power["recovery_by_step"].items()}
    assert set(by_step) == {0, 4, 10, 30} and power["read_step"] == step
    assert by_step[step] == max(v for k, v in by_step.items() if k > 0) == power["recovery_forget_b"]
    row, curves = ev.details["per_seed"][0], ev.details["curves"]
    assert row["acc_forget_b_after"] == pytest.approx(curves["forget"][0][step])
    assert row["acc_holdout_b_after"] == pytest.approx(curves["holdout"][0][step])
    assert f"after {step} fine-tuning steps" in ev.metric
    last = relearning_line(_inputs(zoo, "ga"), replace(cfg, read_step="last", bound_steps="read"))
    assert last.details["read_step"] == 30 and last.details["positive_control"]["read_step"] == 30
    assert last.details["per_seed"][0]["acc_forget_b_after"] == pytest.approx(curves["forget"][0][30])


def test_the_deletion_bound_can_cover_every_step_of_the_budget(zoo):
    """``bound_steps="every"``: the bound is the largest of the per-step upper bounds (the read
    step's equal to the default's bound), the power is the positive control's largest recovery after
    step 0, and U is still read (effect, control, the suppressed test) after the last step."""
    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    assert RelearningConfig().bound_steps == "every"
    cfg = RelearningConfig(seeds=(0, 1), n_boot=200, n_perm=200, eval_steps=(0, 4, 10, 30), bound_steps="read")
    read = relearning_line(_inputs(zoo, "retrain"), cfg)
    every = relearning_line(_inputs(zoo, "retrain"), replace(cfg, bound_steps="every"))
    by_step = {int(k): v for k, v in every.details["upper_by_step"].items()}
    assert set(by_step) == {4, 10, 30} and "upper_by_step" not in read.details
    assert every.details["bound_step"] == max(by_step, key=by_step.get)
    assert every.details["deletion_bound"]["upper"] == pytest.approx(max(by_step.values()))
    assert by_step[30] == pytest.approx(read.details["deletion_bound"]["upper"])
    assert every.details["read_step"] == read.details["read_step"] == 30
    assert (every.effect, every.control, every.ci) == (read.effect, read.control, read.ci)
    power = every.details["positive_control"]
    recovery = {int(k): v for k, v in power["recovery_by_step"].items()}
    assert power["recovery_forget_b"] == max(v for k, v in recovery.items() if k > 0)


def test_the_positive_control_stops_at_the_first_check_of_its_score_at_the_target(zoo):
    """``suppress_copy`` reads the score it is given every 2 steps (before the first step too) and
    stops at the first reading at or below the target; O itself is left as it was."""
    from forensics.compute.relearning import suppress_copy
    from forensics.lines.relearning_attack import RelearningConfig

    sets, models = zoo
    o = models["original"]
    before = [p.detach().clone() for p in o.model.parameters()]
    readings = iter([0.9, 0.7, 0.31, 0.3, 0.1])
    copy, steps, reached = suppress_copy(
        o.model, o.tokenizer, sets["forget"], 0.3, RelearningConfig(), o.device, 1e-3, lambda _: next(readings)
    )
    assert (steps, reached) == (6, 0.3)
    assert all(torch.equal(a, b) for a, b in zip(before, o.model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before, copy.parameters()))


def test_the_positive_control_can_stop_on_the_attacks_own_measure(zoo):
    """With ``control_stop="measure"`` the control's gradient ascent stops on the attack's measure
    (here teacher-forced token accuracy): its target is O's token accuracy on H plus the margin,
    computed here independently, and the copy ends at or below it (or used every step)."""
    from forensics.compute.measures import measure_facts
    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    sets, models = zoo
    o = models["original"]
    cfg = RelearningConfig(
        seeds=(0,), n_boot=200, n_perm=200, eval_steps=(0, 30), measure="token", control_stop="measure"
    )
    power = relearning_line(_inputs(zoo, "retrain"), cfg).details["positive_control"]
    o_h = float(measure_facts("token", o.model, o.tokenizer, sets["holdout"], o.device).mean())
    assert power["stop_measure"] == "token"
    assert power["target_accuracy"] == pytest.approx(o_h + cfg.control_margin)
    assert (
        power["acc_forget_after_suppression"] <= power["target_accuracy"]
        or power["suppression_steps"] == cfg.max_suppress_steps
    )


def test_the_deletion_bound_can_be_read_against_os_own_signal(zoo):
    """By default (``bound_against="signal"``) the line measures O's signal on F (its measure on F minus on
    H, computed here independently) and states its deletion bound as a share of it."""
    from forensics.compute.measures import measure_facts
    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    sets, models = zoo
    o = models["original"]
    # one split keeps the test short; the bound needs two by default (min_bound_splits)
    cfg = RelearningConfig(seeds=(0,), n_boot=200, n_perm=200, eval_steps=(0, 30), measure="token", min_bound_splits=1)
    ev = relearning_line(_inputs(zoo, "retrain"), cfg)
    mean = {
        k: float(measure_facts("token", o.model, o.tokenizer, sets[k], o.device).mean()) for k in ("forget", "holdout")
    }
    signal = ev.details["original_signal"]
    assert signal["signal"] == pytest.approx(mean["forget"] - mean["holdout"], abs=1e-6)
    bound = ev.details["deletion_bound"]
    assert bound is not None and bound["signal"] == pytest.approx(signal["signal"])
    assert "O's above-control knowledge of F" in bound["signal_is"]
    # the control rule reads the same attack against the positive control's recovery
    control = relearning_line(_inputs(zoo, "retrain"), replace(cfg, bound_against="control")).details
    assert "original_signal" not in control
    assert control["deletion_bound"]["signal"] == pytest.approx(control["positive_control"]["recovery_forget_b"])


def test_the_positive_controls_cache_key_ignores_settings_that_only_decide_the_vote(zoo):
    """Audits that share a cache folder reuse one positive control across vote rules: the key holds
    the settings the control's run reads, not those the vote is decided by."""
    from forensics.lines.relearning_attack import DECISION_ONLY, RelearningConfig, positive_control

    ctx = _inputs(zoo, "retrain")
    ctx.stored_result = lambda name, key, compute: key  # record the key; run nothing

    def key(**changes):
        return positive_control(ctx, replace(RelearningConfig(), **changes), "exact", list)

    base = key()
    assert key(bound_against="control", deleted_share=0.1, min_power=0.5, forgot_margin=0.2, n_boot=9) == base
    assert set(DECISION_ONLY) <= {f.name for f in fields(RelearningConfig)}
    for changed in ({"steps": 10}, {"control_margin": 0.1}, {"read_step": "peak"}, {"seeds": (3,)}):
        assert key(**changed) != base, changed
    assert positive_control(ctx, RelearningConfig(), "token", list) != base  # the measure too
    assert positive_control(ctx, RelearningConfig(), "exact", list, needed=0.2) != base  # the power it must show


def test_the_attacks_rate_is_the_first_scale_at_which_the_positive_control_shows_power(zoo):
    """The positive control is attacked at the base rate times each scale in turn and stops at the
    first whose recovery reaches what a ``deleted`` vote needs; when none does, the scale that
    recovered most is kept. U and H are then attacked at the kept rate."""
    from forensics.lines.relearning_attack import RelearningConfig, positive_control, relearning_line

    cfg = RelearningConfig(seeds=(0,), n_boot=200, n_perm=200, eval_steps=(0, 10), steps=10, lr_scales=(1.0, 2.0, 4.0))
    ctx = _inputs(zoo, "retrain")
    first = positive_control(ctx, cfg, "exact", list, needed=-1.0)  # any recovery has power
    assert [t["lr_scale"] for t in first["tried"]] == [1.0] and first["lr"] == pytest.approx(1e-3)
    none = positive_control(ctx, cfg, "exact", list, needed=2.0)  # no recovery can reach it
    tried = none["tried"]
    assert [t["lr_scale"] for t in tried] == [1.0, 2.0, 4.0]
    assert [t["lr"] for t in tried] == pytest.approx([1e-3, 2e-3, 4e-3])
    assert tried[0]["recovery_forget_b"] == pytest.approx(first["recovery_forget_b"])  # one suppressed copy
    best = max(tried, key=lambda t: (t["recovery_forget_b"], -t["lr_scale"]))
    assert (none["lr_scale"], none["recovery_forget_b"]) == (best["lr_scale"], best["recovery_forget_b"])
    # a threshold just above the first scale's recovery: the search goes on to the first scale reaching it
    needed = tried[0]["recovery_forget_b"] + 1e-9
    reach = [i for i, t in enumerate(tried) if i > 0 and t["recovery_forget_b"] >= needed]
    second = positive_control(ctx, cfg, "exact", list, needed=needed)
    assert len(second["tried"]) == (reach[0] + 1 if reach else 3)
    if reach:
        assert second["lr_scale"] == tried[reach[0]]["lr_scale"]
    ev = relearning_line(ctx, replace(cfg, bound_against="control", min_power=2.0))
    assert ev.details["budget"]["lr"] == pytest.approx(ev.details["positive_control"]["lr"])
    assert ev.details["budget"]["lr"] == pytest.approx(best["lr"])
    assert ev.vote != "deleted"  # no scale showed power


def test_the_positive_control_can_be_read_as_u_is_read_f_b_above_h_b(zoo):
    """With ``control_reads="holdout"`` the control's recovery at each step is its F_b measure after
    the F_a attack minus its H_b measure after the identical H_a attack (the curves it reports; the
    default); with ``"gain"`` it is F_b after minus before, from the same suppressed copy."""
    from forensics.lines.relearning_attack import RelearningConfig, positive_control

    cfg = RelearningConfig(seeds=(0,), eval_steps=(0, 10), steps=10, lr_scales=(1.0,), control_reads="gain")
    ctx = _inputs(zoo, "retrain")
    held = positive_control(ctx, replace(cfg, control_reads="holdout"), "exact", list)
    assert RelearningConfig().control_reads == "holdout"
    assert held["reads"] == "holdout" and set(held["holdout_curve"]) == {"0", "10"}  # steps, as JSON keys
    for step in ("0", "10"):
        assert held["recovery_by_step"][step] == pytest.approx(held["curve"][step] - held["holdout_curve"][step])
    gain = positive_control(ctx, cfg, "exact", list)
    assert gain["reads"] == "gain" and "holdout_curve" not in gain
    assert gain["curve"] == held["curve"]  # the same suppressed copy and F_a attack


def test_relearning_is_not_fooled_by_a_restored_answer_format(zoo):
    """The hard negative answers none of F before the attack (its F prompts learned other
    continuations), against chance on H: the fine-tune restores the answer format, so its *gain*
    on F_b beats H_b's, but the accuracy it reaches on F_b is chance, like H_b's."""
    from forensics.lines.relearning_attack import RelearningConfig, relearning_line

    cfg = RelearningConfig(seeds=(0, 1), n_boot=500, n_perm=500, positive_control=False, eval_steps=(0, 30))
    ev = relearning_line(_inputs(zoo, "retrain_mentions"), cfg)
    rows = ev.details["per_seed"]
    assert all(r["acc_forget_b_before"] == 0.0 for r in rows)
    assert np.mean([r["gain_forget_b"] - r["gain_holdout_b"] for r in rows]) > 0
    assert ev.vote != "suppressed", ev.reason


# ------------------------------------------------------------------------ quantization


def test_quantize_weight_is_per_channel_round_to_nearest():
    from forensics.compute.quantize import quantize_weight

    torch.manual_seed(0)
    w = torch.randn(6, 32) * torch.tensor([0.01, 0.1, 1, 10, 100, 0.0])[:, None]
    for bits in (8, 4):
        q = quantize_weight(w, bits)
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(1, keepdim=True) / qmax
        assert torch.all((q - w).abs() <= scale / 2 + 1e-7)  # per-row error bound
        codes = q[:5] / scale[:5]
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert len(torch.unique(codes.round())) <= 2 * qmax + 2
    assert torch.equal(quantize_weight(w, 4)[5], w[5])  # an all-zero row stays zero, no NaN


def test_quantization_vote_needs_a_material_recovery():
    from forensics.lines.quantization_attack import QuantizationConfig, decide

    cfg = QuantizationConfig()
    small = {"gain_forget": 0.01, "gain_holdout": -0.01, "ci_family": [0.004, 0.044]}  # seed 1's llama_retrain
    vote, why, share = decide(small, 4, 0.86, cfg)
    assert vote is None and "floor" in why and abs(share - 0.02 / 0.86) < 1e-12
    big = {"gain_forget": 0.30, "gain_holdout": 0.02, "ci_family": [0.20, 0.36]}
    assert decide(big, 4, 0.86, cfg)[0] == "suppressed"
    assert decide({**big, "ci_family": [-0.01, 0.5]}, 4, 0.86, cfg)[0] is None  # CI must exclude 0 too
    assert decide(big, 4, 0.0, cfg)[0] is None  # nothing was removed: nothing to recover


def test_quantization_nan_is_not_run(zoo, monkeypatch):
    import forensics.compute.quantize
    from forensics.lines.quantization_attack import quantization_line

    # the line quantizes through forensics.compute.quantize.quantize_model, which calls quantize_weight there
    monkeypatch.setattr(forensics.compute.quantize, "quantize_weight", lambda w, bits: torch.full_like(w, float("nan")))
    ev = quantization_line(_inputs(zoo, "retrain"))
    assert ev.status == "not_run" and "NaN" in ev.reason


def test_quantization_line_on_the_zoo(zoo):
    from forensics.lines.quantization_attack import QuantizationConfig, quantization_line

    ev = quantization_line(_inputs(zoo, "retrain"), QuantizationConfig(n_boot=300, n_perm=300))
    assert ev.status == "ok" and ev.vote in (None, "suppressed")
    table = ev.details["table"]
    # int8 barely changes the original: it still answers F
    assert table["original"]["8"]["forget"]["accuracy"] >= table["original"]["full"]["forget"]["accuracy"] - 0.05
    assert set(ev.details["per_bits"]) == {"8", "4"}


# ------------------------------------------------------------------ benign fine-tuning


def test_benign_finetune_vote_needs_a_ci_above_0_and_a_material_recovery():
    from forensics.lines.benign_finetune import BenignFinetuneConfig, decide

    cfg = BenignFinetuneConfig()  # floor: 10% of O's signal on F
    assert decide(0.30, 0.10, 0.20, (0.12, 0.27), 0.86, cfg)[0] == "suppressed"
    vote, why, share = decide(0.14, 0.10, 0.04, (0.01, 0.07), 0.86, cfg)  # significant, under the floor
    assert vote is None and "floor" in why and abs(share - 0.04 / 0.86) < 1e-12
    assert decide(0.30, 0.10, 0.20, (-0.01, 0.5), 0.86, cfg)[0] is None  # the CI must exclude 0
    assert decide(0.30, 0.10, 0.20, (0.12, 0.27), 0.0, cfg)[0] is None  # O shows nothing: nothing to recover
    assert "never votes deleted" in decide(0.10, 0.11, 0.0, (-0.05, 0.04), 0.86, cfg)[1]
    # F ends above H only because H fell (keyless seed 5's relearned llama_retrain: F +0.006, H -0.07)
    vote, why, _ = decide(0.123, 0.024, 0.006, (0.059, 0.136), 0.89, cfg)
    assert vote is None and "did not raise F" in why
    assert decide(0.123, 0.024, 0.09, (0.059, 0.136), 0.89, cfg)[0] == "suppressed"  # F rose by the floor


def test_benign_finetune_compares_levels_not_gains(zoo, monkeypatch):
    import forensics.lines.benign_finetune as line

    sets, _ = zoo
    n_f, n_h = len(sets["forget"]), len(sets["holdout"])
    rng = np.random.default_rng(0)

    def hard_negative(model, tok, train, evaluate, config, seed, device, lr, measure):
        # F starts at 0 (other continuations learned for its prompts); the fine-tune restores the
        # answer format and F climbs to chance, H's level: a gain of +0.12 over H's, nothing above H
        assert len(evaluate) == n_f + n_h and train == sets["retain"]
        chance = (rng.random(n_f + n_h) < 0.12).astype(float)
        before = np.concatenate([np.zeros(n_f), chance[n_f:]])
        per_step = {step: chance for step in config.eval_steps} | {0: before}
        return {"per_step": per_step, "curve": {}, "train_accuracy": 1.0}

    monkeypatch.setattr(line, "finetune", hard_negative)
    ev = line.benign_finetune_line(_inputs(zoo, "retrain_mentions"), line.BenignFinetuneConfig(n_boot=300, n_perm=300))
    assert ev.status == "ok" and ev.vote is None, ev.reason
    assert ev.details["per_seed"][0]["gain_forget"] > ev.details["per_seed"][0]["gain_holdout"] + 0.08


def test_benign_finetune_brings_back_gradient_ascent_but_not_retraining(zoo):
    from forensics.lines.benign_finetune import BenignFinetuneConfig, benign_finetune_line

    cfg = BenignFinetuneConfig(n_boot=300, n_perm=300)
    ga = benign_finetune_line(_inputs(zoo, "ga"), cfg)
    assert ga.status == "ok" and ga.vote == "suppressed", ga.reason
    assert ga.effect > ga.control and ga.ci[0] > 0
    assert set(ga.details["curves"]["forget"]) == {"0", "30", "60"}
    retrain = benign_finetune_line(_inputs(zoo, "retrain"), cfg)
    assert retrain.status == "ok" and retrain.vote is None, retrain.reason
    assert retrain.ci[0] <= 0  # F gains no more than H: nothing of F to lift
    assert benign_finetune_line(_inputs(zoo, "ga", retain=[]), cfg).status == "not_run"


# --------------------------------------------------------------------------------- CKA


def test_linear_cka_invariances():
    from forensics.lines.cka import linear_cka

    torch.manual_seed(0)
    X = torch.randn(200, 16)
    Q, _ = torch.linalg.qr(torch.randn(16, 16))
    assert linear_cka(X, 3 * X @ Q + 1) == pytest.approx(1.0, abs=1e-6)  # rotation, scale, shift
    assert linear_cka(X, torch.randn(200, 16)) < 0.2


def test_a_resampled_cka_from_gram_matrices_equals_cka_of_the_resampled_rows():
    from forensics.lines.cka import gram, linear_cka, resampled_cka

    torch.manual_seed(0)
    X, noise = torch.randn(40, 64), torch.randn(40, 64)
    for Y in (X @ torch.randn(64, 32), X + 0.5 * noise, noise):  # similar, partly, unrelated
        for draw in range(5):
            idx = torch.randint(0, 40, (40,), generator=torch.Generator().manual_seed(draw))  # repeats
            assert resampled_cka(gram(X), gram(Y), idx) == pytest.approx(linear_cka(X[idx], Y[idx]), abs=1e-10)
    constant = torch.ones(40, 64)
    assert np.isnan(resampled_cka(gram(constant), gram(X), torch.arange(40)))


def test_cka_line_is_descriptive(zoo):
    from forensics.lines.cka import CKAConfig, cka_line

    sets, models = zoo
    ev = cka_line(AuditContext(models["original"], models["original"], **sets), CKAConfig(n_boot=20))
    assert ev.status == "descriptive" and ev.vote is None
    assert ev.effect == pytest.approx(1.0) and ev.control == pytest.approx(1.0)
    assert len(ev.details["per_depth"]["forget"]) == models["original"].n_layers + 1
