"""Unlearning-trace detector (docs/methods.md §11; "Unlearning Isn't Invisible: Detecting
Unlearning Traces in LLMs from Model Outputs", 2025): was U modified at all?

Span. Forget-*irrelevant* prompts (R and H; prompt only, no answer), at the prompt's final
token: the last block's residual stream output, and separately the final-token log-probs
(that residual through the model's final norm and unembedding; restricted to the
``max_vocab_features`` tokens O finds likeliest on these prompts when the vocabulary is
larger).

A classifier tells O's outputs from U's on these features: cross-validated accuracy with
folds grouped by subject (a prompt's O and U versions always sit in the same fold, so the
classifier cannot match a prompt to its twin), a bootstrap CI over subjects, and a
two-sided sign-flip test of the per-subject accuracies against 0.5 (subjects are the
independent unit). Chance (the control) is 0.5. The residual features decide; the
log-prob features are reported alongside.

O and U are often perfectly separable; logistic regression then has no finite optimum
and would run to its iteration cap on every fold, so the probe is strongly regularised
(C=0.1) and capped at 200 iterations: the question is only whether it separates.

This line answers "modified or not", not "deleted or suppressed": it votes ``modified``
when the CI lies above 0.5 and p < ``alpha``, ``unmodified`` otherwise, and the verdict
uses it only to recognise an untouched model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from forensics.compute.capture import CaptureSpec, resid_hooks
from forensics.compute.stats import bootstrap_mean_ci, sign_flip_p
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence, Vote
from forensics.core.minimum import subject_groups
from forensics.core.registry import register
from forensics.probing.batched import BatchedConfig, Task, fit_predict
from forensics.probing.classifiers import fold_masks

QUESTION = "Can U be told from O on forget-irrelevant prompts (was it modified at all)?"

#: Short, stable method text (the report prints it).
METHOD = (
    "A regularised logistic probe tells O's from U's last-layer residual stream at the prompt's final "
    "token on forget-irrelevant prompts (R and H), cross-validated with folds grouped by subject; the "
    "final-token log-probs are probed the same way and reported. Effect: the residual probe's accuracy; "
    "control: chance, 0.5; CI by a bootstrap over subjects, p by a sign-flip test of per-subject "
    "accuracies. Votes modified when the CI lies above 0.5 and p is below alpha, else unmodified: context "
    "only, whether U was modified at all. Span: the final token of R and H prompts; F is not read, so "
    "familiarity with F's subjects does not enter."
)


@dataclass
class TraceConfig:
    """Settings of the unlearning-trace detector (:func:`trace_line`)."""

    #: Cross-validation folds, grouped by subject (R and H together need this many subjects).
    n_folds: int = 5
    #: Sign flips for the p-value (count).
    n_perm: int = 2000
    #: Bootstrap resamples over subjects for the accuracy CI (count).
    n_boot: int = 1000
    #: Log-prob features: at most this many vocabulary entries (those O finds likeliest).
    max_vocab_features: int = 1024
    #: Seed of the bootstrap and sign-flip draws.
    seed: int = 0
    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: "modified" also needs the sign-flip p below this.
    alpha: float = 0.05


def _features(ctx: AuditContext, loaded, facts, config: TraceConfig, vocab_index: torch.Tensor | None):
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")  # the residual stream other lines share
    acts = ctx.capture_facts(loaded, facts, spec, batch_size=config.batch_size)[spec.hooks[-1]]
    model = loaded.model
    with torch.no_grad():
        dtype = next(model.parameters()).dtype
        resid = acts.to(device=loaded.device, dtype=dtype)[:, None, :]
        logprobs = torch.log_softmax(model.unembed(model.ln_final(resid))[:, 0].float(), -1).cpu()
    if vocab_index is not None:
        logprobs = logprobs[:, vocab_index]
    return acts.numpy(), logprobs.numpy()


def _cv_correct(X: np.ndarray, y: np.ndarray, groups: np.ndarray, n_folds: int) -> np.ndarray:
    """Out-of-fold correctness of the C=0.1 logistic probe, all folds fitted together."""
    masks = fold_masks(groups, n_folds)
    fitting = BatchedConfig(linear_max_iter=200, linear_tol=1e-3)
    predictions = fit_predict("linear", X, [Task(y, mask, 0.1) for mask in masks], 2, config=fitting)
    correct = np.zeros(len(y), dtype=bool)
    for mask, (predicted,) in zip(masks, predictions):
        correct[~mask] = predicted[~mask] == y[~mask]
    return correct


def detect(X_o: np.ndarray, X_u: np.ndarray, groups: np.ndarray, config: TraceConfig) -> dict:
    """Grouped-CV accuracy of telling O from U, its CI and a sign-flip p-value.

    ``X_o``, ``X_u``: ``[n_prompts, d]`` features of the same prompts under O and U;
    ``groups``: ``[n_prompts]`` subjects. Returns ``{"accuracy", "ci", "p_value"}``: the
    out-of-fold accuracy (chance 0.5), the bootstrap CI of the mean per-subject accuracy,
    and the two-sided sign-flip p of per-subject accuracy minus 0.5.
    """
    X = np.concatenate([X_o, X_u])
    y = np.r_[np.zeros(len(X_o), dtype=np.int64), np.ones(len(X_u), dtype=np.int64)]
    g = np.concatenate([groups, groups])
    correct = _cv_correct(X, y, g, config.n_folds)
    per_subject = np.array([correct[g == s].mean() for s in np.unique(g)])
    accuracy = float(correct.mean())
    p = sign_flip_p(per_subject - 0.5, config.n_perm, config.seed)
    return {
        "accuracy": accuracy,
        "ci": list(bootstrap_mean_ci(per_subject, config.n_boot, config.seed)),
        "p_value": float(p),
    }


def _budget(config: TraceConfig) -> str:
    return (
        "O and U: the residual stream at the prompt's final token of R and H, every depth (shared "
        "captures); the last block's output is read and decoded through the final norm and unembedding"
    )


@register(
    "trace_detector",
    question=QUESTION,
    needs=("original", "unlearned", "retain"),
    config=TraceConfig,
    votes=("modified", "unmodified"),
    side="either",
    order=120,
    method=METHOD,
    budget=_budget,
    profiles={"quick": {"n_perm": 500}, "standard": {"n_perm": 2000}},
)
def trace_line(ctx: AuditContext, config: TraceConfig | None = None) -> Evidence:
    """Can U be told from O on R and H prompts; votes ``modified`` or ``unmodified`` (see the
    module docstring).

    "Not run" when R and H together have fewer than ``n_folds`` subjects. The reported CI is
    of accuracy minus 0.5. ``details``: the residual and log-prob detectors' results and the
    number of prompts. ``config``: :class:`TraceConfig`.
    """
    config = config or TraceConfig()
    facts = list(ctx.retain) + list(ctx.holdout or [])
    groups = subject_groups(facts, "prompt")
    if len(np.unique(groups)) < config.n_folds:
        return Evidence.not_run(
            f"needs at least {config.n_folds} subjects in R and H, got {len(np.unique(groups))}",
        )
    vocab_index = None
    d_vocab = ctx.original.model.cfg.d_vocab
    if d_vocab > config.max_vocab_features:  # keep the tokens O finds likeliest on these prompts
        _, lp = _features(ctx, ctx.original, facts, config, None)
        vocab_index = torch.from_numpy(np.argsort(-lp.mean(0))[: config.max_vocab_features].copy())
    resid_o, logits_o = _features(ctx, ctx.original, facts, config, vocab_index)
    resid_u, logits_u = _features(ctx, ctx.unlearned, facts, config, vocab_index)
    by_resid = detect(resid_o, resid_u, groups, config)
    by_logits = detect(logits_o, logits_u, groups, config)
    vote, reason = decide(by_resid, by_logits, config)
    return Evidence(
        status="ok",
        metric="grouped-CV accuracy telling O from U by last-layer activations (chance 0.5)",
        effect=by_resid["accuracy"],
        control=0.5,
        ci=(by_resid["ci"][0] - 0.5, by_resid["ci"][1] - 0.5),
        p_value=by_resid["p_value"],
        vote=cast("Vote", vote),
        reason=reason,
        details={"activations": by_resid, "logits": by_logits, "n_prompts": len(facts)},
    )


def decide(by_resid: dict, by_logits: dict, config: TraceConfig) -> tuple[str, str]:
    """``modified`` when the activation detector's accuracy CI (``by_resid["ci"]``) lies above
    chance (0.5) with ``by_resid["p_value"]`` below ``config.alpha``, else ``unmodified``; the
    reason gives both detectors' accuracies."""
    modified = by_resid["ci"][0] > 0.5 and by_resid["p_value"] < config.alpha
    reason = f"activations {by_resid['accuracy']:.2f}, logits {by_logits['accuracy']:.2f} accuracy"
    return ("modified" if modified else "unmodified"), reason
