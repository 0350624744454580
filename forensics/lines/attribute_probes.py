"""Attribute probes (docs/methods.md §2): is the forgotten attribute still readable from U's
residual stream, beyond what the identical procedure reads from facts nobody trained on?

Span. The residual stream at every depth (the embeddings and every block's output,
:func:`forensics.compute.capture.resid_hooks`) at a prompt position: the prompt's final token or
the last token of the fact's subject in the prompt (prompt only, no answer). A probe reads
the fact's answer. ``curves`` chooses position and probe kind ("final/linear" decides;
"final/mlp" and "subject/linear" are descriptive). Per depth, three probes:

1. **re-fit**: fit on U's F activations, folds grouped by subject, scored on the
   held-out F subjects. Unlearning often *moves* forgotten facts rather than erasing
   them, so a probe fitted elsewhere can miss what is there; a probe fitted on F itself
   cannot. Control: the identical procedure on H.
2. **R-fitted**: fit on U's R activations, scored on U's F and on U's H. A score far
   *below* H means U treats F specially (it knows what to avoid): shown, not voted on.
3. **transfer**: fit on O's F activations of the training subjects, scored on U's F
   activations of the held-out subjects (does U keep O's geometry for F?). Control: the
   *same* O-fitted probe (fitted on all of O's F, same strength) scored on U's H, so both
   sides are read by one probe of one strength.

The probe strength is chosen per depth by grouped cross-validation on R (for U's and O's
probes separately). O's own re-fit probe on F is computed too: it measures power.
Scores are chance-corrected per example (:mod:`forensics.probing.classifiers`), so 0 means "reads
nothing". Recoverability = score(F) - score(H), with a bootstrap CI over subjects.

Every depth and all three probes of the deciding curve form one test family: each cell's
CI is taken at the Bonferroni-adjusted level ``1 - alpha / family_size`` (with at least
``FAMILY_BOOT`` bootstrap draws, since that CI sits far in the tails). No single layer
decides: a fact can be readable at one depth and blocked at a later one.

Vote:
- ``suppressed``: some cell's family-adjusted CI lies above 0 and its family-adjusted
  permutation p (below) is within ``alpha``: F read *above* the holdout control
  (docs/methods.md's control rule: recovery beyond the control). Both tests must agree: where
  every F and H example gives the probe the same input (the prompt's final token at depth 0, the
  token embedding, in a model with rotary positions) the probe reads nothing, the bootstrap CI
  is a near-constant artefact of the two sets' label mixes and can exclude 0, and the
  permutation p is 1. The reported effect is
  that cell's (the largest difference among them), with its p-value adjusted over every
  depth and probe of the family by Westfall & Young's max-T procedure on subject permutations
  (F's and H's subjects exchanged, all cells permuted together:
  :func:`forensics.compute.stats.cluster_permutation_max_p`). The bootstrap and the
  permutations share the control's premise: under "F is no more readable than H" a subject's
  scores do not depend on the set it came from. F read far *below* H is shown in the curves
  but does not vote: it is a trace of unlearning (U treats F specially), not recovered
  knowledge;
- ``deleted``: nothing significant anywhere, and at the depth where O's re-fit probe
  reads F best (its adjusted CI above 0: the procedure has power there), every U probe's
  adjusted CI upper bound is below ``deleted_share`` of O's difference;
- no vote otherwise.

Probing follows the linear-probe method of Alain & Bengio 2016, with a holdout set of
never-seen facts as the control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from forensics.compute.capture import CaptureSpec, resid_hooks
from forensics.compute.stats import cluster_bootstrap_diff_ci, cluster_permutation_max_p
from forensics.core.context import AuditContext
from forensics.core.evidence import DELETION_BOUND, Evidence, Vote, deletion_bound
from forensics.core.minimum import BOUND_TEST, SUBJECT_BOOTSTRAP, VoteMinimum
from forensics.core.registry import register
from forensics.probing.classifiers import (
    Labels,
    ProbeConfig,
    ProbeError,
    check_probe_data,
    fit_and_predict,
    out_of_fold_scores,
    stratified_chance_corrected,
    strength_grid,
)

QUESTION = "Is the forgotten attribute still readable from U's activations, beyond the holdout control?"
PROBES = ("refit", "rfit", "transfer")
FAMILY_BOOT = 4000

#: Short, stable method text (the report prints it).
METHOD = (
    "Probes read each fact's answer from the residual stream at the prompt's final token, at every depth: "
    "re-fitted on U's F (folds grouped by subject), fitted on U's R, and transferred from O's F. Effect: "
    "chance-corrected probe accuracy on F; control: the identical procedure on H; subject-bootstrap CIs "
    "adjusted over depths and probes, and a subject-permutation p adjusted likewise (max-T). Votes suppressed when some depth and probe "
    "reads F above H by both CI and p; deleted when, at the depth where O's re-fit probe reads F best, O's reading is "
    "significant and every U probe's CI upper bound is below a set share (default 10%) of O's. Span: the "
    "prompt's final token, labelled by the answer; familiarity with F's subjects alone cannot make a probe "
    "read F's answers on held-out subjects."
)


@dataclass
class AttributeProbeConfig(VoteMinimum):
    """Settings of the attribute-probe line (:func:`attribute_probe_line`)."""

    #: "position/kind" curves to compute (position: ``final`` or ``subject``; kind: ``linear``
    #: or ``mlp``); the first one decides the vote, the others are descriptive.
    curves: tuple[str, ...] = ("final/linear", "final/mlp", "subject/linear")
    #: Probe classifiers: strength grids, number of folds, optimiser settings.
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    #: Subject-bootstrap resamples for each cell's unadjusted CI (the family-adjusted CI uses
    #: at least ``FAMILY_BOOT``).
    n_boot: int = 1000
    #: Subject permutations (F and H subjects exchanged) for the cells' max-T p-values (count).
    n_perm: int = 1000
    #: Seed of the bootstrap draws and subject permutations.
    seed: int = 0
    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: U counts as "deleted" on this line when every U probe's adjusted CI upper bound is below
    #: this share (fraction) of O's re-fit recoverability at O's best depth.
    deleted_share: float = 0.10
    #: Family-wise error rate: each cell's CI at ``1 - alpha / (3 probes x n_depths)``.
    alpha: float = 0.05


def _labels(facts):
    y = np.array([f.answer for f in facts])
    groups = np.array([f.subject for f in facts])
    keys = np.array([f"{f.subject}\x00{f.attribute or ''}\x00{f.answer}" for f in facts])
    return y, groups, keys


def check_inputs(ctx: AuditContext, config: AttributeProbeConfig) -> str | None:
    """A reason the line cannot run, or None."""
    for name in ("forget", "retain", "holdout"):
        facts = getattr(ctx, name)
        if not facts:
            return f"attribute probes need a {name} set"
        if any(not f.subject for f in facts):
            return f"attribute probes need a 'subject' on every fact (missing in the {name} set)"
        y, groups, _ = _labels(facts)
        try:
            check_probe_data(y, groups, config.probe.n_folds, f"{name} set")
        except ProbeError as err:
            return str(err)
        subjects_per_class = [len(set(groups[y == label])) for label in np.unique(y)]
        if np.median(subjects_per_class) < 2:
            return (
                f"{name} set: too few facts per answer class for cross-validation by subject "
                f"(median {np.median(subjects_per_class):.0f} subject per class; need at least 2)"
            )
    return None


def _capture(ctx: AuditContext, loaded, facts, position, config):
    spec = CaptureSpec(resid_hooks(loaded.n_layers), position)
    acts = ctx.capture_facts(loaded, facts, spec, batch_size=config.batch_size)
    return {hook: acts[hook].numpy() for hook in spec.hooks}


def _activations(ctx: AuditContext, position: str, config: AttributeProbeConfig) -> dict:
    """(role, set) -> hook -> [n, d] activations at ``position``."""
    sets = {"forget": ctx.forget, "retain": ctx.retain, "holdout": ctx.holdout}
    return {
        (role, name): _capture(ctx, model, facts, position, config)
        for role, model in (("O", ctx.original), ("U", ctx.unlearned))
        for name, facts in sets.items()
    }


def _encoded_labels(ctx: AuditContext) -> dict:
    """Per set: (int answers, subjects, fact keys, attributes), one class index shared by F, R and H."""
    raw = {name: _labels(getattr(ctx, name)) for name in ("forget", "retain", "holdout")}
    encoder = Labels(*(y for y, _, _ in raw.values()))
    return {
        name: (encoder.encode(y), g, k, np.array([f.attribute or "" for f in getattr(ctx, name)]))
        for name, (y, g, k) in raw.items()
    }


def probe_curves(ctx: AuditContext, config: AttributeProbeConfig, activations: dict | None = None) -> dict:
    """Per position, probe kind, probe and depth: F and H scores for U (and O's re-fit).
    ``activations`` (position -> :func:`_activations`) skips capture.

    Returns ``{"position/kind": [row per depth]}``; a row holds ``depth``, ``hook``, the
    chosen strengths, and per probe (``refit``, ``rfit``, ``transfer``, ``refit_original``)
    the mean chance-corrected score on F and on H, their difference, its CI and its
    family-adjusted CI, and (``refit``, ``rfit``, ``transfer``) ``p_family``, its max-T subject-permutation
    p-value adjusted over every depth and probe."""
    labels = _encoded_labels(ctx)
    curves: dict = {}
    for key in config.curves:
        position, kind = key.split("/")
        acts = (activations or {}).get(position) or _activations(ctx, position, config)
        hooks = list(acts[("U", "forget")])
        X = {role_set: np.stack([value[hook] for hook in hooks]) for role_set, value in acts.items()}  # [L, n, d]
        rows = _depth_scores(X, labels, kind, config, family_size=len(PROBES) * len(hooks))
        curves[key] = [row | {"depth": depth, "hook": hook} for depth, (row, hook) in enumerate(zip(rows, hooks))]
    return curves


def _depth_scores(X, labels, kind, config: AttributeProbeConfig, family_size: int) -> list[dict]:
    """Every depth at once (``X[(role, set)]`` is ``[L, n, d]``): one row of scores per depth."""
    (
        (forget_answers, forget_groups, _, forget_attributes),
        (retain_answers, retain_groups, _, retain_attributes),
        (holdout_answers, holdout_groups, _, holdout_attributes),
    ) = labels["forget"], labels["retain"], labels["holdout"]
    pc = config.probe
    n_depths = X[("U", "forget")].shape[0]
    grid = strength_grid(kind, pc)

    def select(role):  # per depth, the strength with the best grouped-CV score on R (ties: the first)
        if len(grid) == 1:
            return np.full(n_depths, grid[0])
        means = out_of_fold_scores(
            kind, list(grid), X[(role, "retain")], [retain_answers], retain_groups, pc, strata=retain_attributes
        )[:, 0, :, 0].mean(-1)
        return np.array([grid[int(np.argmax(m > m.max() - 1e-12))] for m in means])

    strength_u, strength_o = select("U"), select("O")

    def refit(role, name, y, g, a, strength, X_score=None):  # -> [L, n_scored, n]
        return out_of_fold_scores(kind, strength[:, None], X[(role, name)], [y], g, pc, X_score, a)[:, 0, 0]

    o_f = refit(
        "O",
        "forget",
        forget_answers,
        forget_groups,
        forget_attributes,
        strength_o,
        [X[("O", "forget")], X[("U", "forget")]],
    )
    o_h = refit("O", "holdout", holdout_answers, holdout_groups, holdout_attributes, strength_o)[:, 0]
    (t_h,) = fit_and_predict(
        kind,
        cast(Any, strength_o),
        X[("O", "forget")],
        forget_answers,
        [X[("U", "holdout")]],
        pc,
        forget_attributes,
        [holdout_attributes],
    )
    u_f = refit("U", "forget", forget_answers, forget_groups, forget_attributes, strength_u)[:, 0]
    u_h = refit("U", "holdout", holdout_answers, holdout_groups, holdout_attributes, strength_u)[:, 0]
    r_f, r_h = fit_and_predict(
        kind,
        cast(Any, strength_u),
        X[("U", "retain")],
        retain_answers,
        [X[("U", "forget")], X[("U", "holdout")]],
        pc,
        retain_attributes,
        [forget_attributes, holdout_attributes],
    )
    rows, family = [], {}
    for d in range(n_depths):
        scores = {
            "refit": (u_f[d], u_h[d]),
            "refit_original": (o_f[d, 0], o_h[d]),
            "transfer": (
                o_f[d, 1],
                stratified_chance_corrected(
                    t_h[d], holdout_answers, forget_answers, holdout_attributes, forget_attributes
                ),
            ),
            "rfit": (
                stratified_chance_corrected(
                    r_f[d], forget_answers, retain_answers, forget_attributes, retain_attributes
                ),
                stratified_chance_corrected(
                    r_h[d], holdout_answers, retain_answers, holdout_attributes, retain_attributes
                ),
            ),
        }
        row: dict[str, Any] = {"strength_unlearned": float(strength_u[d]), "strength_original": float(strength_o[d])}
        # The family-adjusted CI sits far in the tails (0.3% with 15 cells): a few hundred
        # draws cannot place it, so it gets at least FAMILY_BOOT draws (cheap: vectorised).
        family_boot = max(config.n_boot, FAMILY_BOOT)
        for name, (s_f, s_h) in scores.items():
            if name in PROBES:
                family[(d, name)] = (s_f, s_h)
            ci = cluster_bootstrap_diff_ci(s_f, forget_groups, s_h, holdout_groups, config.n_boot, config.seed)
            ci_family = cluster_bootstrap_diff_ci(
                s_f, forget_groups, s_h, holdout_groups, family_boot, config.seed, level=1 - config.alpha / family_size
            )
            row[name] = {
                "forget": float(s_f.mean()),
                "holdout": float(s_h.mean()),
                "difference": float(s_f.mean() - s_h.mean()),
                "ci": list(ci),
                "ci_family": list(ci_family),
            }
        rows.append(row)
    cells = list(family)
    p_family = cluster_permutation_max_p(
        np.stack([family[c][0] for c in cells]),
        forget_groups,
        np.stack([family[c][1] for c in cells]),
        holdout_groups,
        config.n_perm,
        config.seed,
    )
    for (d, name), p in zip(cells, p_family, strict=True):
        rows[d][name]["p_family"] = float(p)
    return rows


def _deletion_bound(rows: list[dict], config: AttributeProbeConfig) -> dict | None:
    """At the depth where O's F is most readable, the largest adjusted CI upper end of U's F - H
    over the probes, against O's refit-probe F - H there (:func:`forensics.core.evidence.deletion_bound`)."""
    best_o = max(range(len(rows)), key=lambda d: rows[d]["refit_original"]["difference"])
    upper = max(rows[best_o][p]["ci_family"][1] for p in PROBES)
    return deletion_bound(
        upper,
        rows[best_o]["refit_original"]["difference"],
        config.deleted_share,
        f"O's refit-probe F - H at depth {best_o} (chance-corrected accuracy)",
        kind="trace",
    )


def decide(rows: list[dict], config: AttributeProbeConfig) -> tuple[str | None, tuple[str, int], str]:
    """The vote, the (probe, depth) cell reported, and why (see the module docstring)."""
    cells = [(probe, depth) for depth in range(len(rows)) for probe in PROBES]
    significant = [
        (p, d) for p, d in cells if rows[d][p]["ci_family"][0] > 0 and rows[d][p]["p_family"] <= config.alpha
    ]
    if significant:
        probe, depth = max(significant, key=lambda c: rows[c[1]][c[0]]["difference"])
        return "suppressed", (probe, depth), f"the {probe} probe reads F above the holdout control at depth {depth}"
    best_o = max(range(len(rows)), key=lambda d: rows[d]["refit_original"]["difference"])
    o_best = rows[best_o]["refit_original"]
    bound = config.deleted_share * o_best["difference"]
    if o_best["ci_family"][0] > 0 and all(rows[best_o][p]["ci_family"][1] < bound for p in PROBES):
        return (
            "deleted",
            ("refit", best_o),
            (
                f"at depth {best_o}, where O's F is most readable ({o_best['difference']:+.2f}), no U probe reads it "
                f"(every adjusted CI upper bound below {bound:+.2f}, {config.deleted_share:.0%} of O's)"
            ),
        )
    return None, ("refit", best_o), "inconclusive: nothing significant, but not enough power to call it deleted"


def decided_cell(rows: list[dict], config: AttributeProbeConfig) -> dict[str, Any]:
    """:func:`decide` on ``rows`` with the reported cell's numbers as the evidence carries them:
    ``{"vote", "reason", "probe", "depth", "effect", "control", "ci", "p_value"}`` (effect and
    control: U's chance-corrected accuracy on F and on H in that cell; ``ci``: its family-adjusted
    CI of F - H; ``p_value``: its max-T p). The line and ``benchmarks/rule_change.py`` (which
    re-decides stored rows) both read the vote through here."""
    vote, (probe, depth), why = decide(rows, config)
    cell = rows[depth][probe]
    return {
        "vote": vote,
        "reason": why,
        "probe": probe,
        "depth": depth,
        "effect": cell["forget"],
        "control": cell["holdout"],
        "ci": tuple(cell["ci_family"]),
        "p_value": cell["p_family"],
    }


def _budget(config: AttributeProbeConfig) -> str:
    positions = sorted({c.split("/")[0] for c in config.curves})
    return (
        f"O and U: the residual stream at the prompt's {' and '.join(positions)} token of F, R and H, every "
        f"depth (shared captures); then {len(config.curves)} probe curve(s) fitted on those states, no model pass"
    )


@register(
    "attribute_probes",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain", "holdout"),
    config=AttributeProbeConfig,
    votes=("suppressed", "deleted"),
    side="above",
    order=20,
    method=METHOD,
    budget=_budget,
    profiles={
        "quick": {"curves": ("final/linear",), "probe.linear_c_grid": (0.1,)},
    },
)
def attribute_probe_line(ctx: AuditContext, config: AttributeProbeConfig | None = None) -> Evidence:
    """Attribute probes on O's and U's residual streams, F vs H, and the vote (see the module
    docstring).

    "Not run" when :func:`check_inputs` gives a reason. ``details``: the deciding cell
    (position, kind, depth, probe) and every curve's per-depth rows (:func:`probe_curves`).
    ``config``: :class:`AttributeProbeConfig`.
    """
    config = config or AttributeProbeConfig()
    reason = check_inputs(ctx, config)
    if reason:
        return Evidence.not_run(reason)
    positions = dict.fromkeys(key.split("/")[0] for key in config.curves)
    activations = {position: _activations(ctx, position, config) for position in positions}
    curves = probe_curves(ctx, config, activations)
    position, kind = config.curves[0].split("/")
    rows = curves[config.curves[0]]
    d = decided_cell(rows, config)
    return Evidence(
        status="ok",
        metric=(
            f"chance-corrected {d['probe']} {kind} probe accuracy at the {position} token, depth {d['depth']} "
            f"(CI adjusted over {len(PROBES) * len(rows)} depth x probe cells)"
        ),
        effect=d["effect"],
        control=d["control"],
        ci=d["ci"],
        p_value=d["p_value"],
        vote=cast("Vote | None", d["vote"]),
        reason=d["reason"],
        details={
            "decision": {"position": position, "kind": kind, "depth": d["depth"], "probe": d["probe"]},
            "curves": curves,
            DELETION_BOUND: _deletion_bound(rows, config),
            BOUND_TEST: SUBJECT_BOOTSTRAP,
        },
        figures={"attribute_probes": _figure(curves)},
    )


def _figure(curves: dict) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    keys = list(curves)
    fig, axes = plt.subplots(
        len(PROBES), len(keys), figsize=(3.2 * len(keys), 2.4 * len(PROBES)), squeeze=False, sharey=True
    )
    for j, key in enumerate(keys):
        rows = curves[key]
        depth = [r["depth"] for r in rows]
        for i, probe in enumerate(PROBES):
            ax = axes[i, j]
            ax.plot(depth, [r[probe]["forget"] for r in rows], "o-", label="U on F")
            ax.plot(depth, [r[probe]["holdout"] for r in rows], "s--", label="U on H (control)")
            if probe == "refit":
                ax.plot(depth, [r["refit_original"]["forget"] for r in rows], ":", color="grey", label="O on F")
            ax.axhline(0, color="black", lw=0.5)
            ax.set_title(f"{key} · {probe}", fontsize=8)
            if i == len(PROBES) - 1:
                ax.set_xlabel("depth")
    axes[0, 0].set_ylabel("chance-corrected acc.")
    axes[0, 0].legend(fontsize=7, frameon=False)
    return figure_png(fig)
