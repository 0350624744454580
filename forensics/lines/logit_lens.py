"""Logit lens (docs/methods.md §3; nostalgebraist 2020): is the answer readable at
intermediate layers and only blocked late?

Span. Each depth's residual stream at the prompt's final token (prompt only, no answer;
:func:`forensics.compute.capture.resid_hooks`: the embeddings and every block's output) is decoded
through the model's own final norm and unembedding. For the answer's first token (the
answer tokenised without special tokens; for a fact with a ``key``, the key's first token,
read after the prompt and the answer's frame up to the key:
:func:`forensics.compute.measures.key_reading`) we report, per depth and per set (F, H) and model
(O, U): its mean reciprocal rank (1 = top-1; robust to the scale of logits) and its mean
probability.

Recoverability = MRR(U, F) - MRR(U, H) at the *decision depth*: the intermediate depth
(not the embeddings, not the output) where O's F-vs-H difference is largest. It is
chosen from O alone, so U's number is not a maximum over layers. The final depth is
the model's own output (behaviour), so it is left out of the decision. effect = MRR(U, F),
control = MRR(U, H), with a subject-bootstrap CI of the difference and a subject
permutation p (:mod:`forensics.compute.stats`).

The raw lens is descriptive (no vote): the tuned lens (:mod:`forensics.lines.tuned_lens`) reads the
same residual streams through translators fitted for each depth and votes with the same
rule (stated there). Two read-outs of one residual at one depth are not two independent
procedures, so only the better one votes; the raw curve stays beside it. F ranked
significantly *below* H is a trace of the unlearning (a scrambled residual pushes the
forgotten answers down), not recovered knowledge: the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from forensics.compute.lens import lens_comparison, lens_heatmap
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence
from forensics.core.minimum import P_TEST, SUBJECT_PERMUTATION
from forensics.core.registry import register

QUESTION = "Is the answer readable by the logit lens at intermediate layers of U, beyond the holdout control?"

#: Short, stable method text (the report prints it).
METHOD = (
    "Logit lens: the residual stream at the prompt's final token, at every depth, decoded through the "
    "model's own final norm and unembedding; the reciprocal rank of the answer's first token. Effect: U's "
    "mean reciprocal rank on F at the intermediate depth where O's F-vs-H difference is largest (chosen "
    "from O alone); control: the same on H; subject-bootstrap CI and subject-permutation p. "
    "Descriptive (the tuned lens, the same read-out through fitted translators, votes). Span: the answer's "
    "first token (its key's, where given), read at the prompt's final token; familiarity with F's subjects alone cannot raise its rank."
)


@dataclass
class LogitLensConfig:
    """Settings of the logit-lens line (:func:`logit_lens_line`)."""

    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: Subject-bootstrap resamples for the CI of MRR(F) - MRR(H) (count).
    n_boot: int = 1000
    #: Subject permutations for the p-value (count).
    n_perm: int = 1000
    #: Seed of the bootstrap and permutation draws.
    seed: int = 0
    #: "Readable" (the reason) also needs the permutation p below this.
    alpha: float = 0.05


def _budget(config: LogitLensConfig) -> str:
    return (
        "O and U: the residual stream at the prompt's final token of F and H, every depth (shared "
        "captures), each decoded through the final norm and the unembedding"
    )


@register(
    "logit_lens",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "holdout"),
    config=LogitLensConfig,
    side="above",
    order=30,
    method=METHOD,
    budget=_budget,
    profiles={"standard": {"n_perm": 1000}},
)
def logit_lens_line(ctx: AuditContext, config: LogitLensConfig | None = None) -> Evidence:
    """The raw logit lens on O and U, F vs H at O's decision depth (see the module docstring);
    descriptive: the tuned lens (:mod:`forensics.lines.tuned_lens`) votes.

    "Not run" for a model with fewer than two layers. ``details``: the decision depth, O's
    F-minus-H difference per depth, and per model the mean reciprocal rank and probability
    on F and H at every depth. ``config``: :class:`LogitLensConfig`.
    """
    config = config or LogitLensConfig()
    if ctx.original.n_layers < 2:
        return Evidence.not_run("the logit lens needs at least two layers")
    c = lens_comparison(ctx, config)
    return Evidence(
        status="descriptive",
        metric=f"mean reciprocal rank of the answer's first token at depth {c['depth']} (of {c['n_depths'] - 1})",
        effect=float(c["f_rr"].mean()),
        control=float(c["h_rr"].mean()),
        ci=c["ci"],
        p_value=c["p"],
        reason=(
            "the answer is readable at an intermediate layer of U above the holdout control"
            if c["readable"]
            else "F's answers rank below the unseen facts' at an intermediate layer: a trace of the unlearning, "
            "not of the knowledge"
            if c["pushed_down"]
            else "no intermediate-layer read-out of F above the control"
        )
        + " (descriptive: the tuned lens votes)",
        details={
            P_TEST: SUBJECT_PERMUTATION,
            "decision_depth": c["depth"],
            "original_difference_by_depth": c["o_diff"],
            "table": c["table"],
        },
        figures={"logit_lens": lens_heatmap(c["table"], c["n_depths"], "Logit lens: answer reciprocal rank")},
    )
