"""SAE feature analysis (METHODS section 5): do the features that carried F in O still fire in U?

The SAE is trained on O (:mod:`saes.sae`). Units are *facts*: a latent's activation on
a fact is its maximum over the fact's prompt tokens (it "fires" on the fact when that is
above 0), from the residual stream at the SAE's hook.

Expert features
    Latents that fire on F far more than on R in O: for latent j, the firing-frequency
    log-ratio ``log((freq_F + 1/n_F) / (freq_R + 1/n_R))`` (add-one-fact smoothing) and the
    Welch t-statistic of its per-fact activation, F vs R. Experts: log-ratio >= log 2
    (fires at least twice as often on F) and t >= 3, the ``top_k`` (default 16) with the
    largest t. F and R share templates and answer vocabulary, so what is left is what is
    specific to F's subjects and facts.

Survival in U (O's SAE reading U's residual stream at the same hook)
    Per fact: the fraction of the expert features firing in O on that fact that still
    fire in U (facts where none fires in O are left out), and the activation ratio
    ``sum_j a_U / sum_j a_O`` over the experts. effect = mean survival on F; control = the
    same numbers on H (facts no model saw: how much of O's feature activity U keeps on
    unseen facts of the same form); CI of F - H by a bootstrap over subjects
    (:func:`forensics.stats.cluster_bootstrap_diff_ci`).

Transfer check
    O's SAE only means something in U if U's residual stream is still in O's basis. The
    SAE's explained variance on U's R prompt tokens must pass the same bar as on O
    (a model retrained from scratch fails it: its basis is unrelated to O's).

Vote (ours; the control rule decides when it may vote):
- no vote, status "descriptive", when the SAE is below the quality bar ("not
  trustworthy"), when it does not transfer to U, when no expert feature is found, when
  fewer than ``min_control_facts`` H facts fire any expert in O (no sound control), or
  when U still answers F (behaviour gap O - U on F below ``min_forgetting``);
- ``suppressed`` when U no longer answers F yet O's F-specific features survive in U on
  F: survival on F >= ``min_survival`` and the CI lower bound of F - H >= -``margin``
  (an equivalence bound: F keeps its features about as well as unseen facts do). The
  representation at this layer survived; only the read-out was blocked.
- never ``deleted``: features gone on F at one layer is what deletion looks like, but
  also what an activation-space push (RMU) looks like, and says nothing about other
  layers. A loss of features on F is reported (the difference and CI) without a vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from forensics.behaviour import logits_fn_for, score_facts
from forensics.capture import CaptureSpec, capture
from forensics.data import Fact
from forensics.evidence import AuditInputs, Evidence, register
from forensics.stats import cluster_bootstrap_diff_ci
from saes.sae import SAETrainConfig, TrainedSAE, get_sae, token_texts

QUESTION = "Do the SAE features that carried the forget set in O still fire in U, beyond the holdout control?"


@dataclass
class FeatureConfig:
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    top_k: int = 16
    min_log_ratio: float = float(np.log(2.0))
    min_t: float = 3.0
    min_survival: float = 0.5
    margin: float = 0.1
    min_forgetting: float = 0.2
    min_control_facts: int = 10
    n_boot: int = 2000
    seed: int = 0
    batch_size: int = 64


@torch.no_grad()
def fact_activations(loaded, facts: Sequence[Fact], sae: TrainedSAE, batch_size: int = 64) -> torch.Tensor:
    """``[n_facts, d_sae]``: each latent's maximum activation over the fact's prompt tokens."""
    acts = capture(loaded, [f.prompt for f in facts], CaptureSpec((sae.hook,), "all"), batch_size=batch_size)
    x = acts[sae.hook]
    feats = sae.encode(x)
    lengths = acts.prompt_lengths
    index = torch.repeat_interleave(torch.arange(len(facts)), lengths)
    out = torch.zeros(len(facts), feats.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(feats), feats, reduce="amax", include_self=True)


@torch.no_grad()
def prompt_tokens(loaded, facts: Sequence[Fact], hook: str, batch_size: int = 64) -> torch.Tensor:
    """Residual activations at every prompt token (``[n_tokens, d]``)."""
    return capture(loaded, [f.prompt for f in facts], CaptureSpec((hook,), "all"), batch_size=batch_size)[hook]


@torch.no_grad()
def explained_variance(sae: TrainedSAE, x: torch.Tensor) -> float:
    recon = sae.sae.decode(sae.encode(x))
    total = ((x - x.mean(0)) ** 2).sum()
    return float(1 - ((x - recon) ** 2).sum() / total) if total > 0 else float("nan")


def expert_features(a_f: torch.Tensor, a_r: torch.Tensor, config: FeatureConfig) -> dict:
    """Expert latents (F far more than R) from per-fact activations of O; see the module docstring."""
    f, r = a_f.numpy(), a_r.numpy()
    n_f, n_r = len(f), len(r)
    freq_f, freq_r = (f > 0).mean(0), (r > 0).mean(0)
    log_ratio = np.log((freq_f + 1 / n_f) / (freq_r + 1 / n_r))
    var = f.var(0, ddof=1) / n_f + r.var(0, ddof=1) / n_r
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(var > 0, (f.mean(0) - r.mean(0)) / np.sqrt(var), 0.0)
    ok = np.flatnonzero((log_ratio >= config.min_log_ratio) & (t >= config.min_t))
    chosen = ok[np.argsort(-t[ok])][: config.top_k]
    return {"indices": chosen, "log_ratio": log_ratio[chosen], "t": t[chosen],
            "freq_forget": freq_f[chosen], "freq_retain": freq_r[chosen], "n_candidates": int(len(ok))}


def survival(a_o: torch.Tensor, a_u: torch.Tensor, experts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per fact: (fraction of the experts firing in O that still fire in U, activation ratio U/O);
    NaN where no expert fires in O."""
    o, u = a_o[:, experts].numpy(), a_u[:, experts].numpy()
    fires_o = o > 0
    n = fires_o.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(n > 0, ((u > 0) & fires_o).sum(1) / np.maximum(n, 1), np.nan)
        mass = o.sum(1)
        ratio = np.where(mass > 0, u.sum(1) / np.where(mass > 0, mass, 1), np.nan)
    return frac, ratio


def _groups(facts, prefix):
    return np.array([f.subject or f"{prefix}-{i}" for i, f in enumerate(facts)])


def _not_voting(reason: str, **kw) -> Evidence:
    return Evidence(line="sae_features", question=QUESTION, status="descriptive", vote=None, reason=reason, **kw)


@register("sae_features", QUESTION, needs=("original", "unlearned", "forget", "retain", "holdout"))
def sae_feature_line(inputs: AuditInputs, config: FeatureConfig | None = None,
                     sae: TrainedSAE | None = None) -> Evidence:
    """Expert features of O and their survival in U, F vs H (see the module docstring)."""
    config = config or FeatureConfig()
    if not inputs.forget or not inputs.retain or not inputs.holdout:
        return Evidence.not_run("sae_features", QUESTION, "SAE feature analysis needs forget, retain and holdout sets")
    O, U = inputs.original, inputs.unlearned
    if sae is None:
        sae = get_sae(O, token_texts(inputs.forget, inputs.retain, inputs.holdout, inputs.sequences), config.sae)
    bs = config.batch_size
    a = {(role, name): fact_activations(model, facts, sae, bs)
         for role, model in (("O", O), ("U", U))
         for name, facts in (("F", inputs.forget), ("R", inputs.retain), ("H", inputs.holdout))}
    ev_u_retain = explained_variance(sae, prompt_tokens(U, inputs.retain, sae.hook, bs))
    ev_u_forget = explained_variance(sae, prompt_tokens(U, inputs.forget, sae.hook, bs))
    experts = expert_features(a[("O", "F")], a[("O", "R")], config)
    idx = experts["indices"]
    details = {
        "sae": {"hook": sae.hook, "layer": sae.layer, "d_sae": int(sae.sae.cfg.d_sae),
                "path": str(sae.path) if sae.path else None, **sae.quality.to_dict(),
                "explained_variance_U_retain": ev_u_retain, "explained_variance_U_forget": ev_u_forget},
        "experts": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in experts.items()},
    }
    metric = f"fraction of O's expert SAE features (F vs R) still firing in U, at {sae.hook}"
    if len(idx) == 0:
        return _not_voting("no expert features: no SAE latent fires on F far more than on R in O",
                           metric=metric, details=details)
    frac_f, ratio_f = survival(a[("O", "F")], a[("U", "F")], idx)
    frac_h, ratio_h = survival(a[("O", "H")], a[("U", "H")], idx)
    gF, gH = _groups(inputs.forget, "forget"), _groups(inputs.holdout, "holdout")
    mf, mh = ~np.isnan(frac_f), ~np.isnan(frac_h)
    table = {
        "survival_forget": float(np.nanmean(frac_f)) if mf.any() else None,
        "survival_holdout": float(np.nanmean(frac_h)) if mh.any() else None,
        "activation_ratio_forget": float(np.nanmean(ratio_f)) if mf.any() else None,
        "activation_ratio_holdout": float(np.nanmean(ratio_h)) if mh.any() else None,
        "n_forget_facts_firing": int(mf.sum()), "n_holdout_facts_firing": int(mh.sum()),
        "freq_O_forget": float((a[("O", "F")][:, idx] > 0).float().mean()),
        "freq_O_holdout": float((a[("O", "H")][:, idx] > 0).float().mean()),
        "freq_U_forget": float((a[("U", "F")][:, idx] > 0).float().mean()),
        "freq_U_holdout": float((a[("U", "H")][:, idx] > 0).float().mean()),
    }
    details["survival"] = table
    figures = {"sae_feature_survival": _figure(table, sae.hook)}
    if mh.sum() < config.min_control_facts or mf.sum() < config.min_control_facts:
        return _not_voting(
            f"too few facts fire any expert feature in O (F {int(mf.sum())}, H {int(mh.sum())}; "
            f"need {config.min_control_facts}): no sound control", metric=metric, details=details, figures=figures)
    effect, control = table["survival_forget"], table["survival_holdout"]
    ci = cluster_bootstrap_diff_ci(frac_f[mf], gF[mf], frac_h[mh], gH[mh], config.n_boot, config.seed)
    common = dict(metric=metric, effect=effect, control=control, ci=ci, details=details, figures=figures)
    if not sae.quality.trustworthy:
        return _not_voting(sae.quality.reason, **common)
    if not ev_u_retain >= config.sae.min_explained_variance:
        return _not_voting(f"O's SAE does not transfer to U (explained variance on U's R tokens {ev_u_retain:.2f} "
                           f"< {config.sae.min_explained_variance:.2f}): U's residual stream is not in O's basis",
                           **common)
    fn_o, fn_u = logits_fn_for(O.model), logits_fn_for(U.model)
    acc_o = score_facts(fn_o, O.tokenizer, inputs.forget, bs, O.device).accuracy
    acc_u = score_facts(fn_u, U.tokenizer, inputs.forget, bs, U.device).accuracy
    details["behaviour"] = {"acc_forget_O": acc_o, "acc_forget_U": acc_u}
    if acc_o - acc_u < config.min_forgetting:
        return _not_voting(f"U still answers F (accuracy {acc_u:.2f} vs O's {acc_o:.2f}); the features only describe",
                           **common)
    if effect >= config.min_survival and ci[0] >= -config.margin:
        return Evidence(line="sae_features", question=QUESTION, status="ok", vote="suppressed",
                        reason=(f"U no longer answers F, yet {effect:.0%} of O's F-specific features still fire in U "
                                f"on F (H control {control:.0%})"), **common)
    if ci[1] < 0:
        why = (f"O's F-specific features fire less in U on F ({effect:.0%}) than on H ({control:.0%}): changed at "
               "this layer (deletion or an activation-space push); no vote")
    elif effect < config.min_survival:
        why = f"only {effect:.0%} of O's F-specific features still fire in U on F (H {control:.0%}); no vote"
    else:
        why = (f"survival on F {effect:.0%} vs H {control:.0%}, but the CI of F - H [{ci[0]:+.2f}, {ci[1]:+.2f}] "
               f"is too wide to bound the loss within {config.margin:.2f}; no vote")
    return Evidence(line="sae_features", question=QUESTION, status="ok", vote=None, reason=why, **common)


def _figure(table: dict, hook: str) -> bytes:
    from forensics.plotting import figure_png, plt

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8))
    for ax, (key, label) in zip(axes, (("survival", "expert features still firing"),
                                       ("activation_ratio", "activation ratio U/O"))):
        values = [table[f"{key}_forget"] or 0.0, table[f"{key}_holdout"] or 0.0]
        ax.bar(["F", "H (control)"], values, color=["tab:red", "tab:grey"])
        ax.set_title(label, fontsize=9)
        ax.axhline(1.0, color="black", lw=0.5, ls=":")
    fig.suptitle(f"SAE expert-feature survival in U ({hook})", fontsize=9)
    return figure_png(fig)
