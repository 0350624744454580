"""The memorisation signature line (docs/methods.md §4; "Probe-Geometry Alignment: Erasing the
Cross-Sequence Memorization Signature Below Chance", 2025): the leave-one-out probe's question
(:mod:`forensics.probing.leave_one_out`) asked of the audit's own data, against a random-initialisation twin.

Memorisation signature (the ``memorisation_probe`` audit line, descriptive): the same
question asked of the audit's own data. Span: the full text (``prompt + answer``) of every
F and H fact, residual stream at its last token, every depth. A linear probe (C =
``strength``) tells F from H, cross-validated with folds grouped by subject and scored
chance-corrected (:mod:`forensics.probing.classifiers`), in O, in U and in a random-initialisation
twin of O (the control: what surface differences between the F and H texts alone give).
effect = U's score at the depth where O's signature (O minus twin) peaks (embeddings
excluded), control = the twin's score there, with a subject-bootstrap CI of the
difference. It never votes: a model that saw neither F nor H can also sit above the
twin, so "above the control" does not separate deletion from suppression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forensics.compute.capture import CaptureSpec, resid_hooks
from forensics.compute.stats import cluster_bootstrap_diff_ci
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence
from forensics.core.registry import register
from forensics.probing.classifiers import ProbeConfig, out_of_fold_scores
from forensics.probing.leave_one_out import random_init_twin

SIGNATURE_QUESTION = (
    "Do U's activations still tell the forget facts from never-seen holdout facts, as O's do "
    "(a training-membership signature)?"
)

#: Short, stable method text (the report prints it).
METHOD = (
    "Training-membership signature: a linear probe, cross-validated with folds grouped by subject, tells "
    "F's texts (prompt + answer) from H's by the residual stream at the last token, at every depth, in O, "
    "in U and in a random-initialisation twin of O (the control: what surface differences alone give). "
    "Effect: U's chance-corrected accuracy at the depth where O's margin over the twin peaks; control: the "
    "twin's there, with a subject-bootstrap CI. Descriptive: it never votes. Span: the last token of "
    "prompt + answer; familiarity with F's subjects alone moves it."
)


@dataclass
class SignatureConfig:
    """Settings of the memorisation-signature line (:func:`memorisation_line`)."""

    #: Inverse L2 strength C of the linear F-vs-H probe.
    strength: float = 0.1
    #: Cross-validation folds, grouped by subject (F and H together need this many subjects).
    n_folds: int = 5
    #: Subject-bootstrap resamples for the CI of U minus twin (count).
    n_boot: int = 1000
    #: Seed of the bootstrap and of the random-init twin's weights.
    seed: int = 0
    #: Prompts per forward pass during activation capture.
    batch_size: int = 64


def _membership_scores(
    ctx: AuditContext, loaded, texts: list[str], y: np.ndarray, groups: np.ndarray, config: SignatureConfig
):
    """Per depth: chance-corrected grouped-CV scores of an F-vs-H probe on ``texts``' last tokens."""
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
    acts = ctx.capture(loaded, texts, spec, batch_size=config.batch_size)
    probe = ProbeConfig(n_folds=config.n_folds)
    return np.stack(
        [
            out_of_fold_scores("linear", [config.strength], acts[h].numpy(), [y], groups, probe)[0, 0, 0]
            for h in spec.hooks
        ]
    )


def _budget(config: SignatureConfig) -> str:
    return (
        "O, U and a random-initialisation twin of O: the residual stream at the last token of F's "
        "and H's prompt + answer, every depth; then probes, no model pass"
    )


@register(
    "memorisation_probe",
    question=SIGNATURE_QUESTION,
    needs=("original", "unlearned", "forget", "holdout"),
    config=SignatureConfig,
    votes=(),
    side="either",
    order=100,
    method=METHOD,
    budget=_budget,
)
def memorisation_line(ctx: AuditContext, config: SignatureConfig | None = None) -> Evidence:
    """The audit's memorisation signature (descriptive: it does not vote).

    The leave-one-out probe's question asked of the audit's own data: the full texts
    (prompt + answer) of F and H facts, the last token's residual at every depth, and a
    linear probe telling F from H, cross-validated with folds grouped by subject. It is
    run on O, on U and on a random-initialisation twin (the control: what surface
    differences between the F and H texts alone give). Reported: U's score at the depth
    where O's signature (O minus twin) peaks, against the twin's, with a subject-bootstrap
    CI of the difference.

    Why descriptive: O's signature over its twin can be small, and a model that saw
    neither F nor H can also sit above the twin, so "above the control" does not separate
    deletion from suppression. "Not run" when a fact lacks a subject or F and H together
    have fewer than ``n_folds`` subjects. ``config``: :class:`SignatureConfig`.
    """
    config = config or SignatureConfig()
    facts = list(ctx.forget) + list(ctx.holdout or [])
    if any(not f.subject for f in facts):
        return Evidence.not_run(
            "the memorisation signature needs a 'subject' on every forget and holdout fact",
        )
    groups = np.array([f.subject for f in facts])
    if len(np.unique(groups)) < config.n_folds:
        return Evidence.not_run(
            f"needs at least {config.n_folds} subjects across F and H, got {len(np.unique(groups))}",
        )
    texts = [f.text for f in facts]
    assert ctx.holdout is not None
    y = np.r_[np.ones(len(ctx.forget), dtype=np.int64), np.zeros(len(ctx.holdout), dtype=np.int64)]
    twin = random_init_twin(ctx.original, seed=config.seed)
    scores = {
        name: _membership_scores(ctx, model, texts, y, groups, config)
        for name, model in (("original", ctx.original), ("unlearned", ctx.unlearned), ("twin", twin))
    }
    signature = scores["original"].mean(1) - scores["twin"].mean(1)
    depth = int(np.argmax(signature[1:]) + 1) if len(signature) > 1 else 0
    ci = cluster_bootstrap_diff_ci(
        scores["unlearned"][depth], groups, scores["twin"][depth], groups, config.n_boot, config.seed
    )
    curves = {name: s.mean(1).tolist() for name, s in scores.items()}
    return Evidence(
        status="descriptive",
        metric=f"chance-corrected F-vs-H probe accuracy at depth {depth}, U against a random-init twin",
        effect=float(scores["unlearned"][depth].mean()),
        control=float(scores["twin"][depth].mean()),
        ci=ci,
        reason=(
            f"O's signature over its twin peaks at depth {depth} ({signature[depth]:+.2f}); "
            f"U there: {curves['unlearned'][depth] - curves['twin'][depth]:+.2f}"
        ),
        details={"depth": depth, "curves": curves, "original_signature": signature.tolist()},
        figures={"memorisation_signature": _signature_figure(curves)},
    )


def _signature_figure(curves: dict) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for (name, values), style in zip(curves.items(), ("o-", "s-", "^--")):
        ax.plot(range(len(values)), values, style, label={"twin": "random-init twin (control)"}.get(name, name))
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("F vs H probe (chance-corrected)")
    ax.set_title("Memorisation signature", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    return figure_png(fig)
