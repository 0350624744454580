"""SAE feature analysis (docs/methods.md §5): do the features that carried F in O still fire in U?

The SAE is a TopK sparse autoencoder trained on O's residual stream (:mod:`forensics.sae.train`;
Cunningham et al. 2023, TopK as in Gao et al. 2024); forget-specific features are chosen
as in SAE-based unlearning (Farrell et al. 2024).

Span. Units are *facts*: a latent's activation on a fact is its maximum over the fact's
prompt tokens (prompt only, no answer; it "fires" on the fact when that is above 0), from
the residual stream at the SAE's hook (:func:`forensics.sae.experts.fact_activations`).

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
    (:func:`forensics.compute.stats.cluster_bootstrap_diff_ci`).

Transfer check
    O's SAE only means something in U if U's residual stream is still in O's basis. The
    SAE's explained variance on U's R prompt tokens must pass the same bar as on O
    (a model retrained from scratch fails it: its basis is unrelated to O's).

No vote (descriptive). F and R differ only by their subjects (same templates, same answer
vocabulary), so the expert features are features of F's *subjects*, read on the prompt: a
model that never learned F's answers but knows F's subjects keeps them as well as a model
that suppressed F (measured on the zoo's ``retrain_lineage``: 89% of O's F experts still
fire on F against 51% on H, where an earlier version of this line voted ``suppressed``).
Survival is reported with its CI and a one-line reading; whether the read-out was blocked
is for the answer-reading lines (attribute probes, logit lens, steering) to say. The
reading: F's features survive (survival >= ``min_survival``, CI lower bound of F - H >=
-``margin``, U no longer answers F by ``min_forgetting``), were lost (CI of F - H below 0),
or neither can be said; or why the line cannot read U at all (SAE below its quality bar,
no transfer to U, no expert, fewer than ``min_control_facts`` firing facts).
"""

from __future__ import annotations

import numpy as np

from forensics.compute.stats import cluster_bootstrap_diff_ci
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence
from forensics.core.minimum import subject_groups
from forensics.core.registry import register
from forensics.sae.experts import (
    FeatureConfig,
    expert_features,
    explained_variance,
    fact_activations,
    prompt_tokens,
    survival,
)
from forensics.sae.train import TrainedSAE

QUESTION = "Do the SAE features that carried the forget set in O still fire in U, beyond the holdout control?"

#: Short, stable method text (the report prints it).
METHOD = (
    "An SAE trained on O's residual stream at one hook; expert latents fire on F far more than on R in O "
    "(a latent's activation on a fact: its maximum over the prompt tokens). Effect: the share of a fact's "
    "O-firing experts that still fire in U, averaged over F; control: the same on H; subject-bootstrap CI "
    "of F - H. Descriptive, no vote. Span: the prompt's tokens, no answer token; the experts are features "
    "of F's subjects, so familiarity with F's subjects alone keeps them (a model that never learned F's "
    "answers keeps them too)."
)


def _not_voting(reason: str, **kw) -> Evidence:
    return Evidence(status="descriptive", vote=None, reason=reason, **kw)


def _budget(config: FeatureConfig) -> str:
    return (
        f"an SAE trained on {config.sae.training_tokens:,} tokens of O's residual stream at one hook "
        "(shared with steering); O's and U's prompt tokens of F, R and H at that hook"
    )


@register(
    "sae_features",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain", "holdout"),
    config=FeatureConfig,
    votes=(),
    side="either",
    order=40,
    method=METHOD,
    budget=_budget,
    profiles={"quick": {"sae.training_tokens": 100000}},
)
def sae_feature_line(ctx: AuditContext, config: FeatureConfig | None = None, sae: TrainedSAE | None = None) -> Evidence:
    """Expert features of O and their survival in U, F vs H (see the module docstring).

    ``sae``: O's SAE (:class:`forensics.sae.train.TrainedSAE`); None trains or loads it through the
    audit context (``config.sae``). "Not run" without F, R and H. ``details``: the SAE's
    hook, layer, size and quality, its explained variance on U's R and F prompt tokens, the
    experts, survival and firing frequencies, and O's and U's accuracy on F. ``config``:
    :class:`forensics.sae.experts.FeatureConfig`.
    """
    config = config or FeatureConfig()
    if not ctx.forget or not ctx.retain or not ctx.holdout:
        return Evidence.not_run("SAE feature analysis needs forget, retain and holdout sets")
    O, U = ctx.original, ctx.unlearned
    if sae is None:
        sae = ctx.sae(config.sae)
    assert sae is not None
    bs = config.batch_size
    acts = {
        (role, name): fact_activations(ctx, model, facts, sae, bs)
        for role, model in (("original", O), ("unlearned", U))
        for name, facts in (("forget", ctx.forget), ("retain", ctx.retain), ("holdout", ctx.holdout))
    }
    ev_u_retain = explained_variance(sae, prompt_tokens(ctx, U, ctx.retain, sae.hook, bs))
    ev_u_forget = explained_variance(sae, prompt_tokens(ctx, U, ctx.forget, sae.hook, bs))
    experts = expert_features(acts[("original", "forget")], acts[("original", "retain")], config)
    idx = experts["indices"]
    details = {
        "sae": {
            "hook": sae.hook,
            "layer": sae.layer,
            "d_sae": int(sae.sae.cfg.d_sae),
            "path": str(sae.path) if sae.path else None,
            **sae.quality.to_dict(),
            "explained_variance_U_retain": ev_u_retain,
            "explained_variance_U_forget": ev_u_forget,
        },
        "experts": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in experts.items()},
    }
    metric = f"fraction of O's expert SAE features (F vs R) still firing in U, at {sae.hook}"
    if len(idx) == 0:
        return _not_voting(
            "no expert features: no SAE latent fires on F far more than on R in O", metric=metric, details=details
        )
    frac_f, ratio_f = survival(acts[("original", "forget")], acts[("unlearned", "forget")], idx)
    frac_h, ratio_h = survival(acts[("original", "holdout")], acts[("unlearned", "holdout")], idx)
    forget_groups, holdout_groups = subject_groups(ctx.forget, "forget"), subject_groups(ctx.holdout, "holdout")
    mf, mh = ~np.isnan(frac_f), ~np.isnan(frac_h)
    table = {
        "survival_forget": float(np.nanmean(frac_f)) if mf.any() else None,
        "survival_holdout": float(np.nanmean(frac_h)) if mh.any() else None,
        "activation_ratio_forget": float(np.nanmean(ratio_f)) if mf.any() else None,
        "activation_ratio_holdout": float(np.nanmean(ratio_h)) if mh.any() else None,
        "n_forget_facts_firing": int(mf.sum()),
        "n_holdout_facts_firing": int(mh.sum()),
        "freq_O_forget": float((acts[("original", "forget")][:, idx] > 0).float().mean()),
        "freq_O_holdout": float((acts[("original", "holdout")][:, idx] > 0).float().mean()),
        "freq_U_forget": float((acts[("unlearned", "forget")][:, idx] > 0).float().mean()),
        "freq_U_holdout": float((acts[("unlearned", "holdout")][:, idx] > 0).float().mean()),
    }
    details["survival"] = table
    figures = {"sae_feature_survival": _figure(table, sae.hook)}
    if mh.sum() < config.min_control_facts or mf.sum() < config.min_control_facts:
        return _not_voting(
            f"too few facts fire any expert feature in O (F {int(mf.sum())}, H {int(mh.sum())}; "
            f"need {config.min_control_facts}): no sound control",
            metric=metric,
            details=details,
            figures=figures,
        )
    effect, control = table["survival_forget"], table["survival_holdout"]
    ci = cluster_bootstrap_diff_ci(
        frac_f[mf], forget_groups[mf], frac_h[mh], holdout_groups[mh], config.n_boot, config.seed
    )
    common = dict(metric=metric, effect=effect, control=control, ci=ci, details=details, figures=figures)
    if not sae.quality.trustworthy:
        return _not_voting(sae.quality.reason, **common)
    if not ev_u_retain >= config.sae.min_explained_variance:
        return _not_voting(
            f"O's SAE does not transfer to U (explained variance on U's R tokens {ev_u_retain:.2f} "
            f"< {config.sae.min_explained_variance:.2f}): U's residual stream is not in O's basis",
            **common,
        )
    acc_o, acc_u = ctx.fact_scores(O, ctx.forget).accuracy, ctx.fact_scores(U, ctx.forget).accuracy
    details["behaviour"] = {"acc_forget_O": acc_o, "acc_forget_U": acc_u}
    if acc_o - acc_u < config.min_forgetting:
        return _not_voting(
            f"U still answers F (accuracy {acc_u:.2f} vs O's {acc_o:.2f}); the features only describe", **common
        )
    if effect >= config.min_survival and ci[0] >= -config.margin:
        return _not_voting(
            f"U no longer answers F, yet {effect:.0%} of O's F-specific features still fire in U on F "
            f"(H control {control:.0%}): F's subjects are still represented at this layer; a model "
            "that knows them without the answers shows the same, so no vote",
            **common,
        )
    if ci[1] < 0:
        why = (
            f"O's F-specific features fire less in U on F ({effect:.0%}) than on H ({control:.0%}): changed at "
            "this layer (deletion or an activation-space push); no vote"
        )
    elif effect < config.min_survival:
        why = f"only {effect:.0%} of O's F-specific features still fire in U on F (H {control:.0%}); no vote"
    else:
        why = (
            f"survival on F {effect:.0%} vs H {control:.0%}, but the CI of F - H [{ci[0]:+.2f}, {ci[1]:+.2f}] "
            f"is too wide to bound the loss within {config.margin:.2f}; no vote"
        )
    return _not_voting(why, **common)


def _figure(table: dict, hook: str) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8))
    for ax, (key, label) in zip(
        axes, (("survival", "expert features still firing"), ("activation_ratio", "activation ratio U/O"))
    ):
        values = [table[f"{key}_forget"] or 0.0, table[f"{key}_holdout"] or 0.0]
        ax.bar(["F", "H (control)"], values, color=["tab:red", "tab:grey"])
        ax.set_title(label, fontsize=9)
        ax.axhline(1.0, color="black", lw=0.5, ls=":")
    fig.suptitle(f"SAE expert-feature survival in U ({hook})", fontsize=9)
    return figure_png(fig)
