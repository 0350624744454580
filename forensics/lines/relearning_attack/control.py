"""The relearning attack's positive control (a copy of O made to forget F by gradient ascent, then
attacked as U is) and O's own signal on F, which its deletion bound is read against
(:mod:`forensics.lines.relearning_attack.line`; docs/methods.md §8)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from forensics.compute.measures import Measured, measure_facts
from forensics.compute.relearning import finetune, peak_step, split_by_subject, suppress_copy
from forensics.core.context import AuditContext
from forensics.core.keys import model_identity
from forensics.lines.relearning_attack.config import DECISION_ONLY, RelearningConfig, attack_lr


def positive_control(
    ctx: AuditContext, config: RelearningConfig, measure: str, measured: Measured, needed: float | None = None
) -> dict:
    """Build a GA-suppressed copy of O and run the identical attack on it (first seed's split),
    at the learning rate the attack then uses on U.

    The copy is made once, by gradient ascent at the attack's base rate (:func:`attack_lr`). It is
    attacked at the base rate times each of ``config.lr_scales`` in turn, stopping at the first
    whose recovery of F_b (measure units, at the read step) is at least ``needed``, the recovery a
    ``deleted`` vote needs the attack to show (:func:`forensics.lines.relearning_attack.line.power_needed`;
    None: only the first scale is run). Without such a scale the one that recovered most is kept
    (ties: the smaller). The rate is chosen on O's suppressed copy alone, never on U, so it cannot
    favour either vote; the holdout control is attacked at the same rate as U.

    Returns ``{"lr", "lr_scale", "tried": [{"lr_scale", "lr", "recovery_forget_b"}], "read_step",
    "recovery_forget_b", "recovery_by_step", "curve", "suppression_steps",
    "acc_forget_after_suppression", "target_accuracy", "stop_measure", "reads"}`` for the kept
    scale, plus ``"holdout_curve"`` (the H_a attack's H_b measure by step) when the control reads
    ``"holdout"``.

    Kept by the audit context (:meth:`AuditContext.stored_result`), keyed by O's weights, the
    forget and holdout sets, the budget, the recovery needed, the device and the measure: several
    audits of one O that share a cache folder build and attack the suppressed copy once."""
    from forensics.inputs.data import content_hash

    assert ctx.holdout is not None
    key = {
        "original": repr(sorted(model_identity(ctx.original).items())),
        "forget": content_hash(ctx.forget),
        "holdout": content_hash(ctx.holdout),
        "config": repr({k: v for k, v in asdict(config).items() if k not in DECISION_ONLY}),
        "device": str(ctx.original.device),
        "measure": measure,
        "needed": needed,
    }

    def compute() -> dict:
        assert ctx.holdout is not None
        o_tok, device = ctx.original.tokenizer, ctx.original.device
        lr = attack_lr(config, ctx.original.model.cfg.d_model)

        f_all = measured(list(ctx.forget))

        def forget_score(model) -> float:
            values = measure_facts(measure, model, o_tok, f_all, device, config.eval_batch_size, config.max_new_tokens)
            return float(np.nanmean(values))

        by_measure = config.control_stop == "measure"
        if by_measure:  # O's own scores come from the audit context, which the gate has often filled
            o_h = original_mean(ctx, ctx.holdout, config, measure, measured)
        else:
            o_h = ctx.fact_scores(ctx.original, ctx.holdout).accuracy
        suppressed_o, n_steps, acc_f = suppress_copy(
            ctx.original.model,
            o_tok,
            ctx.forget,
            o_h + config.control_margin,
            config,
            device,
            lr,
            forget_score if by_measure else None,
        )
        f_a, f_b, h_a, h_b = halves(ctx, config.seeds[0])  # U's first split
        gain = config.control_reads == "gain"
        f_b, h_b = measured(f_b), (h_b if gain else measured(h_b))  # H_b is scored only when read
        before = (
            measure_facts(measure, suppressed_o, o_tok, f_b, device, config.eval_batch_size, config.max_new_tokens)
            if gain
            else None
        )
        runs = []
        for scale in config.lr_scales if needed is not None else config.lr_scales[:1]:
            pc = finetune(suppressed_o, o_tok, f_a, f_b, config, config.seeds[0], device, lr * scale, measure)
            run = {"lr_scale": scale, "lr": lr * scale, "curve": pc["curve"]}
            if not gain:  # read as U is read: F_b after minus H_b after the identical H_a attack
                hc = finetune(suppressed_o, o_tok, h_a, h_b, config, config.seeds[0], device, lr * scale, measure)
                recovery = {
                    step: float(pc["per_step"][step].mean() - hc["per_step"][step].mean()) for step in pc["per_step"]
                }
                run["holdout_curve"] = hc["curve"]
            else:  # F_b's gain over the suppressed copy's own F_b
                recovery = {step: float((values - before).mean()) for step, values in pc["per_step"].items()}
            peak = config.read_step == "peak" or config.bound_steps == "every"
            step = peak_step(recovery) if peak else config.steps
            runs.append(run | {"read_step": step, "recovery": recovery})
            if needed is not None and recovery[step] >= needed:
                break
        del suppressed_o
        # the search stops at the first scale with power, so that scale is also the largest recovery
        kept = max(runs, key=lambda r: (r["recovery"][r["read_step"]], -r["lr_scale"]))
        step = kept["read_step"]
        return {
            "suppression_steps": n_steps,
            "acc_forget_after_suppression": acc_f,
            "target_accuracy": o_h + config.control_margin,
            "stop_measure": measure if by_measure else "exact",
            "lr": kept["lr"],
            "lr_scale": kept["lr_scale"],
            "tried": [
                {"lr_scale": r["lr_scale"], "lr": r["lr"], "recovery_forget_b": r["recovery"][r["read_step"]]}
                for r in runs
            ],
            "read_step": step,
            "recovery_forget_b": kept["recovery"][step],
            "recovery_by_step": kept["recovery"],
            "curve": kept["curve"],
            "reads": config.control_reads,
            **({"holdout_curve": kept["holdout_curve"]} if "holdout_curve" in kept else {}),
        }

    return ctx.stored_result("relearning_positive_control", key, compute)


def halves(ctx: AuditContext, seed: int) -> tuple[list, list, list, list]:
    """One seed's split of the attack: ``(F_a, F_b, H_a, H_b)``, F's and H's subjects each cut
    into halves (:func:`forensics.compute.relearning.split_by_subject`; H with the seed offset by
    10,000, so that F's and H's splits are drawn apart). U's attack and the positive control both
    split here."""
    assert ctx.holdout is not None
    f_a, f_b = split_by_subject(ctx.forget, seed)
    h_a, h_b = split_by_subject(ctx.holdout, seed + 10_000)
    return f_a, f_b, h_a, h_b


def original_signal(ctx: AuditContext, config: RelearningConfig, measure: str, measured: Measured) -> dict:
    """O's own signal on F in the attack's measure, before any attack: ``{"forget", "holdout",
    "signal"}``, the mean measure (0..1) on all of F, on all of H, and their difference. The
    scores come from the audit context (:meth:`AuditContext.answer_scores`), which the behaviour
    gate has usually filled with the same generations."""
    assert ctx.holdout is not None
    mean = {
        name: original_mean(ctx, facts, config, measure, measured)
        for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout))
    }
    return mean | {"signal": mean["forget"] - mean["holdout"]}


def original_mean(ctx: AuditContext, facts, config: RelearningConfig, measure: str, measured: Measured) -> float:
    """O's mean score (0..1) on ``facts`` in the attack's measure, from the audit context's
    :meth:`AuditContext.answer_scores`."""
    return float(np.nanmean(ctx.answer_scores(ctx.original, measured(list(facts)), measure, config.max_new_tokens)))
