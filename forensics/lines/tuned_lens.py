"""Tuned lens (docs/methods.md §3; Belrose et al. 2023, "Eliciting Latent Predictions from
Transformers with the Tuned Lens"): is the answer readable at intermediate layers of U
through translators fitted on O's retain set?

Translators. For every depth ``d`` of O's residual stream (the embeddings and every block's
output but the last), one affine map ``h -> h + A_d h + b_d`` (``A_d`` ``[d_model, d_model]``,
``b_d`` ``[d_model]``, both zero at the start: the raw logit lens) is fitted so that O's final
norm and unembedding applied to the translated state match O's own output distribution:
KL(O's final softmax || lens softmax), averaged over every token position of the retain
set's texts (prompt + answer), Adam, ``steps`` steps. The translators see R only, so they
carry nothing about F; H stays the control. They are fitted once per audit
(:meth:`forensics.core.context.AuditContext.tuned_lens`). Under a layer budget (``max_depths``;
docs/methods.md "Layer budgets") only an evenly spaced share of the depths gets a translator and
is read.

Read-out. O's final-token residuals on F and H (the captures the logit lens uses) are
translated by O's translators and decoded by O's final norm and unembedding; U's by U's own
translators (fitted the same way, on R, to U's own output) and U's own head (``reader="own"``,
the default). ``reader="original"`` reads U through O's lens instead; O's head,
trained on F, can then answer F from a state that only names the subject, which made the line's
only stray votes on truly deleted models (docs/results/2026-12-06-tuned-lens-reader.md,
docs/results/2026-12-06-tuned-lens-reader-held-out.md); the answer's first token's reciprocal rank and
probability per depth (a fact with a ``key``: the key's first token after the answer's frame,
as the logit lens reads it). Decision depth: the earliest intermediate depth where O's F-minus-H
difference in reciprocal rank reaches ``earliest_share`` of its largest, chosen from O alone:
the depth where O has made the answer readable, before the late layers where suppression
methods block it (docs/methods.md §3). Effect, control and statistics are the logit lens's
(:func:`forensics.lines.logit_lens.lens_comparison`).

Vote: ``suppressed`` when the CI of MRR(U, F) - MRR(U, H) at the decision depth lies above 0
and the subject-permutation p < ``alpha``. F ranked below H is a trace of the unlearning, no
vote. Never ``deleted``: a linear read-out that finds nothing does not show that nothing is
there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from forensics.compute.capture import spread_text
from forensics.compute.lens import lens_comparison, lens_heatmap
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence, Vote
from forensics.core.minimum import P_TEST, SUBJECT_PERMUTATION, VoteMinimum
from forensics.core.registry import register

QUESTION = "Is the answer readable by a tuned lens (fitted on the retain set) at intermediate layers of U, beyond the holdout control?"

METHOD = (
    "Tuned lens: per model (O, and U by default), one affine translator per depth of its residual stream "
    "(identity at the start), fitted on every token of the retain set's texts so that its final norm and "
    "unembedding of the translated state match its own output (KL); then each model's final-token residuals "
    "on F and H, decoded through its own lens; the reciprocal rank of the answer's first token. Effect: U's mean reciprocal rank on F "
    "at the earliest intermediate depth where O's F-vs-H difference reaches half its largest (chosen from O "
    "alone); control: the same on H; subject-bootstrap CI and subject-permutation p. Votes suppressed when "
    "the CI lies above 0 and p is below alpha; never votes deleted. The translators never see F. Span: the "
    "answer's first token (its key's, where given), read at the prompt's final token; familiarity with F's subjects alone cannot "
    "raise its rank."
)


@dataclass
class TunedLensConfig(VoteMinimum):
    """Settings of the tuned-lens line (:func:`tuned_lens_line`)."""

    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: Adam steps per translator.
    steps: int = 300
    #: Adam learning rate of the translators.
    lr: float = 1e-3
    #: Token positions per step (all of them when R has fewer).
    tokens_per_step: int = 512
    #: The fitting loss is the KL to O's output over the whole vocabulary when it has at most
    #: this many tokens (every zoo model); above, over the fitting vocabulary (``top_k``).
    full_vocab_limit: int = 8192
    #: Above ``full_vocab_limit``: the fitting vocabulary is the union of every training
    #: position's ``top_k`` tokens under O's output, and both distributions are renormalised to
    #: it (forensics/compute/lens.py, :func:`~forensics.compute.lens.fit_tuned_lens`).
    top_k: int = 32
    #: Layer budget: translators at most at this many depths (the embeddings and block outputs,
    #: evenly spaced with the first and the output: :func:`forensics.compute.capture.spread`);
    #: None: every depth. Every zoo model has fewer depths than any profile's budget.
    max_depths: int | None = None
    #: Subject-bootstrap resamples for the CI of MRR(F) - MRR(H) (count).
    n_boot: int = 1000
    #: Subject permutations for the p-value (count).
    n_perm: int = 1000
    #: Seed of the translators' token sampling, the bootstrap and the permutations.
    seed: int = 0
    #: "suppressed" also needs the permutation p below this.
    alpha: float = 0.05
    #: Decision depth: the earliest intermediate depth where O's F-minus-H reciprocal rank reaches
    #: this share of its largest (0..1; see the module docstring).
    earliest_share: float = 0.5
    #: Whose lens reads U's states: "own", U's own translators, fitted on R to U's own output, and
    #: U's own head (costs a second fit); "original", O's translators and O's final norm and
    #: unembedding (O's head was trained on F's answers, so it can answer F from a state that only
    #: names the subject, in a model that shares O's basis:
    #: docs/results/2026-12-06-tuned-lens-reader.md). O is read through O's lens either way (the
    #: decision depth).
    reader: Literal["original", "own"] = "own"

    def training_fields(self) -> dict:
        """The fields that change the fitted translators (the context's cache key)."""
        return {
            "steps": self.steps,
            "lr": self.lr,
            "tokens_per_step": self.tokens_per_step,
            "seed": self.seed,
            "full_vocab_limit": self.full_vocab_limit,
            "top_k": self.top_k,
            "max_depths": self.max_depths,
        }


def _budget(config: TunedLensConfig) -> str:
    return (
        f"{'O and U each' if config.reader == 'own' else 'O'}: every token of R's texts (one capture) at "
        f"{spread_text(config.max_depths, 'depths')}; {config.steps} Adam steps of {config.tokens_per_step} "
        "tokens per depth through the model's own head "
        f"(above {config.full_vocab_limit} vocabulary tokens: the union of each position's top "
        f"{config.top_k}); O's and U's final-token residuals of F and H (shared captures)"
    )


@register(
    "tuned_lens",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain", "holdout"),
    config=TunedLensConfig,
    votes=("suppressed",),
    side="above",
    order=31,
    method=METHOD,
    budget=_budget,
    profiles={"quick": {"max_depths": 6}, "standard": {"n_perm": 1000, "max_depths": 12}},
)
def tuned_lens_line(ctx: AuditContext, config: TunedLensConfig | None = None) -> Evidence:
    """The tuned lens on O and U (each through its own translators and head; U through O's with
    ``reader="original"``), F vs H at O's decision depth, and the vote (see the module docstring).

    "Not run" for a model with fewer than two layers, or when U's residual width differs from
    O's. ``details``: the decision depth, O's F-minus-H difference per depth, per model the mean
    reciprocal rank and probability on F and H at every depth, the reader, and the translators' KL
    to their model's output on R per depth before and after fitting (O's; U's own with
    ``reader="own"``). ``config``: :class:`TunedLensConfig`.
    """
    config = config or TunedLensConfig()
    o, u = ctx.original, ctx.unlearned
    if o.n_layers < 2:
        return Evidence.not_run("the tuned lens needs at least two layers")
    if (u.n_layers, u.model.cfg.d_model) != (o.n_layers, o.model.cfg.d_model):
        return Evidence.not_run("U's residual stream does not have O's shape, so the two cannot be read at O's depths")
    lens = ctx.tuned_lens(config)
    own = ctx.tuned_lens(config, u) if config.reader == "own" else None
    c = lens_comparison(
        ctx,
        config,
        translate=lens.translate,
        head=o,
        earliest_share=config.earliest_share,
        depths=lens.read_depths,
        u_translate=own.translate if own is not None else None,
        u_head=u if own is not None else None,
    )
    vote, reason = decide(c["ci"], c["p"], config)
    return Evidence(
        status="ok",
        metric=f"mean reciprocal rank of the answer's first token through the tuned lens at depth {c['depth']} "
        f"(of {o.n_layers})",
        effect=float(c["f_rr"].mean()),
        control=float(c["h_rr"].mean()),
        ci=c["ci"],
        p_value=c["p"],
        vote=cast("Vote | None", vote),
        reason=reason,
        details={
            P_TEST: SUBJECT_PERMUTATION,
            "decision_depth": c["depth"],
            # only under a layer budget: the depths read (else every depth, in order)
            **({"depths": c["depths"]} if len(c["depths"]) <= o.n_layers else {}),
            "original_difference_by_depth": c["o_diff"],
            "table": c["table"],
            "kl_to_output_on_retain": {"raw": lens.kl_raw, "tuned": lens.kl_tuned},
            "reader": config.reader,
            # only with reader="own": U's own translators' fit
            **({"u_kl_to_output_on_retain": {"raw": own.kl_raw, "tuned": own.kl_tuned}} if own is not None else {}),
            "training_tokens": lens.n_tokens,
            # only where the fit ran over the fitting vocabulary (a vocabulary above full_vocab_limit)
            **({"fitting_vocabulary": lens.n_vocab} if lens.n_vocab < o.model.cfg.d_vocab else {}),
        },
        figures={
            "tuned_lens": lens_heatmap(c["table"], c["n_depths"], "Tuned lens: answer reciprocal rank", c["depths"])
        },
    )


_LENS = {"own": "U's own tuned lens", "original": "O's tuned lens"}


def decide(ci: tuple[float, float], p: float, config: TunedLensConfig) -> tuple[str | None, str]:
    """``suppressed`` when the CI of U's F-minus-H reciprocal rank at O's decision depth lies above
    0 with p below ``config.alpha`` (the answer is readable); F ranked significantly *below* H
    (CI below 0) is a trace of the unlearning, not of the knowledge: no vote, as is anything else."""
    if ci[0] > 0 and p < config.alpha:
        return "suppressed", (
            f"the answer is readable through {_LENS[config.reader]} at an intermediate layer of U above the "
            "holdout control"
        )
    if ci[1] < 0 and p < config.alpha:
        return None, (
            "F's answers rank below the unseen facts' at an intermediate layer: a trace of the unlearning, "
            "not of the knowledge (no vote)"
        )
    return None, "no intermediate-layer read-out of F above the control"
