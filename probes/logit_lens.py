"""Logit lens (METHODS section 3; nostalgebraist 2020): is the answer readable at
intermediate layers and only blocked late?

Span. Each depth's residual stream at the prompt's final token (prompt only, no answer;
:func:`forensics.capture.resid_hooks`: the embeddings and every block's output) is decoded
through the model's own final norm and unembedding. For the answer's first token (the
answer tokenised without special tokens) we report, per depth and per set (F, H) and model
(O, U): its mean reciprocal rank (1 = top-1; robust to the scale of logits) and its mean
probability.

Recoverability = MRR(U, F) - MRR(U, H) at the *decision depth*: the intermediate depth
(not the embeddings, not the output) where O's F-vs-H difference is largest. It is
chosen from O alone, so U's number is not a maximum over layers. The final depth is
the model's own output (behaviour), so it is left out of the decision. effect = MRR(U, F),
control = MRR(U, H), with a subject-bootstrap CI of the difference and a subject
permutation p (:mod:`forensics.stats`).

Vote: ``suppressed`` when the CI at the decision depth lies above 0 (F's answers rank
*higher* than the unseen facts': METHODS' control rule is one-sided) and the
subject-level permutation p < ``alpha``. F ranked significantly *below* H is a trace of the
unlearning (a scrambled residual pushes the forgotten answers down), not recovered
knowledge: reported in the reason, no vote. The lens never votes ``deleted``: an answer
unreadable by a fixed linear read-out can still be encoded (the re-fit probes look for
that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forensics.capture import CaptureSpec, resid_hooks
from forensics.context import AuditContext
from forensics.evidence import Evidence
from forensics.minimum import VoteMinimum
from forensics.registry import register
from forensics.stats import cluster_bootstrap_diff_ci, cluster_permutation_p

QUESTION = "Is the answer readable by the logit lens at intermediate layers of U, beyond the holdout control?"

#: Short, stable method text (the report prints it).
METHOD = (
    "Logit lens: the residual stream at the prompt's final token, at every depth, decoded through the "
    "model's own final norm and unembedding; the reciprocal rank of the answer's first token. Effect: U's "
    "mean reciprocal rank on F at the intermediate depth where O's F-vs-H difference is largest (chosen "
    "from O alone); control: the same on H; subject-bootstrap CI and subject-permutation p. Votes "
    "suppressed when the CI lies above 0 and p is below alpha; F ranked below H does not vote, and the "
    "lens never votes deleted. Span: the answer's first token, read at the prompt's final token; "
    "familiarity with F's subjects alone cannot raise its rank."
)


@dataclass
class LogitLensConfig(VoteMinimum):
    """Settings of the logit-lens line (:func:`logit_lens_line`)."""

    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: Subject-bootstrap resamples for the CI of MRR(F) - MRR(H) (count).
    n_boot: int = 1000
    #: Subject permutations for the p-value (count).
    n_perm: int = 1000
    #: Seed of the bootstrap and permutation draws.
    seed: int = 0
    #: "suppressed" also needs the permutation p below this.
    alpha: float = 0.05


@torch.no_grad()
def lens_scores(ctx: AuditContext, loaded, facts, config: LogitLensConfig) -> dict[str, np.ndarray]:
    """Per depth: reciprocal rank and probability of each fact's first answer token.

    The final-token residual at each depth goes through ``loaded``'s own final norm and
    unembedding. Reciprocal rank = ``1 / (1 + number of tokens with a higher logit)``;
    probability = softmax over the vocabulary. Returns ``{"reciprocal_rank",
    "probability"}``, arrays of shape ``[n_depths, n_facts]`` (``n_depths = n_layers + 1``).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
    acts = ctx.capture_facts(loaded, facts, spec, batch_size=config.batch_size)
    first = torch.tensor([tokenizer(f.answer, add_special_tokens=False)["input_ids"][0] for f in facts])
    rr, prob = [], []
    dtype = next(model.parameters()).dtype
    for hook in spec.hooks:
        resid = acts[hook].to(device=loaded.device, dtype=dtype)[:, None, :]
        logits = model.unembed(model.ln_final(resid))[:, 0].float().cpu()
        answer_logit = logits.gather(1, first[:, None])
        rank = (logits > answer_logit).sum(1) + 1
        rr.append((1.0 / rank.float()).numpy())
        prob.append(torch.softmax(logits, -1).gather(1, first[:, None])[:, 0].numpy())
    return {"reciprocal_rank": np.stack(rr), "probability": np.stack(prob)}


@register(
    "logit_lens",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "holdout"),
    config=LogitLensConfig,
    votes=("suppressed",),
    side="above",
    order=30,
    method=METHOD,
)
def logit_lens_line(ctx: AuditContext, config: LogitLensConfig | None = None) -> Evidence:
    """The logit lens on O and U, F vs H at O's decision depth, and the vote (see the module
    docstring).

    "Not run" for a model with fewer than two layers. ``details``: the decision depth, O's
    F-minus-H difference per depth, and per model the mean reciprocal rank and probability
    on F and H at every depth. ``config``: :class:`LogitLensConfig`.
    """
    config = config or LogitLensConfig()
    if ctx.original.n_layers < 2:
        return Evidence.not_run("logit_lens", QUESTION, "the logit lens needs at least two layers")
    scores = {
        (role, name): lens_scores(ctx, model, facts, config)
        for role, model in (("original", ctx.original), ("unlearned", ctx.unlearned))
        for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout))
    }
    forget_groups = np.array([f.subject or f"fact-{i}" for i, f in enumerate(ctx.forget)])
    holdout_groups = np.array([f.subject or f"holdout-{i}" for i, f in enumerate(ctx.holdout)])
    n_depths = scores[("original", "forget")]["reciprocal_rank"].shape[0]
    table = {}
    for role in ("original", "unlearned"):
        for metric in ("reciprocal_rank", "probability"):
            table[f"{role}/{metric}"] = {
                name: scores[(role, name)][metric].mean(1).tolist() for name in ("forget", "holdout")
            }
    o_diff = [
        scores[("original", "forget")]["reciprocal_rank"][d].mean()
        - scores[("original", "holdout")]["reciprocal_rank"][d].mean()
        for d in range(n_depths)
    ]
    intermediate = range(1, n_depths - 1)
    depth = max(intermediate, key=lambda d: o_diff[d])
    f_rr = scores[("unlearned", "forget")]["reciprocal_rank"][depth]
    h_rr = scores[("unlearned", "holdout")]["reciprocal_rank"][depth]
    ci = cluster_bootstrap_diff_ci(f_rr, forget_groups, h_rr, holdout_groups, config.n_boot, config.seed)
    p = cluster_permutation_p(f_rr, forget_groups, h_rr, holdout_groups, config.n_perm, config.seed)
    readable = ci[0] > 0 and p < config.alpha
    pushed_down = ci[1] < 0 and p < config.alpha
    return Evidence(
        line="logit_lens",
        question=QUESTION,
        status="ok",
        metric=f"mean reciprocal rank of the answer's first token at depth {depth} (of {n_depths - 1})",
        effect=float(f_rr.mean()),
        control=float(h_rr.mean()),
        ci=ci,
        p_value=p,
        vote="suppressed" if readable else None,
        reason=(
            "the answer is readable at an intermediate layer of U above the holdout control" if readable
            else "F's answers rank below the unseen facts' at an intermediate layer: a trace of the unlearning, "
                 "not of the knowledge (no vote)" if pushed_down
            else "no intermediate-layer read-out of F above the control"
        ),
        details={"decision_depth": depth, "original_difference_by_depth": o_diff, "table": table},
        figures={"logit_lens": _heatmap(table, n_depths)},
    )


def _heatmap(table: dict, n_depths: int) -> bytes:
    from forensics.plotting import figure_png, plt

    rows, labels = [], []
    for role in ("original", "unlearned"):
        for name in ("forget", "holdout"):
            rows.append(table[f"{role}/reciprocal_rank"][name])
            labels.append(f"{role[0].upper()} · {name}")
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n_depths, 2.4))
    image = ax.imshow(np.array(rows), aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xticks(range(n_depths))
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_title("Logit lens: answer reciprocal rank", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return figure_png(fig)
