"""Lens read-outs of the residual stream (docs/methods.md §3), shared by the logit-lens and
tuned-lens lines: decoding states through a model's head, per-depth answer ranks, the F-vs-H
comparison at O's decision depth, and the tuned lens's translators (Belrose et al. 2023).

Configs are duck-typed: ``batch_size`` (capture), ``n_boot`` / ``n_perm`` / ``seed`` /
``alpha`` (statistics), and for :func:`fit_tuned_lens` ``steps`` / ``lr`` /
``tokens_per_step`` / ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forensics.compute.capture import CaptureSpec, resid_hooks, spread
from forensics.compute.measures import key_reading
from forensics.compute.stats import cluster_bootstrap_diff_ci, cluster_permutation_p
from forensics.core.minimum import subject_groups


def decode(head, resid: torch.Tensor) -> torch.Tensor:
    """``head``'s (a TransformerLens model's) final norm and unembedding applied to residual
    states ``[..., d]``: logits ``[..., vocab]``, in ``head``'s dtype, on its unembedding's device."""
    resid = resid.to(head.unembed.W_U.device)  # a model spread over GPUs (n_devices)
    return head.unembed(head.ln_final(resid[..., None, :]))[..., 0, :]


def decode_columns(head, resid: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
    """:func:`decode` restricted to the vocabulary ``columns`` (a long tensor ``[S]``; ``None``:
    every token): logits ``[..., S]``, computed for those columns only."""
    if columns is None:
        return decode(head, resid)
    resid = resid.to(head.unembed.W_U.device)
    normed = head.ln_final(resid[..., None, :])[..., 0, :]
    columns = columns.to(head.unembed.W_U.device)
    return normed @ head.unembed.W_U[:, columns] + head.unembed.b_U[columns]


@torch.no_grad()
def lens_scores(ctx, loaded, facts, config, translate=None, head=None, depths=None) -> dict[str, np.ndarray]:
    """Per depth: reciprocal rank and probability of each fact's first answer token (of its key
    span, read after the answer's frame up to the key, where the fact has a ``key``:
    :func:`forensics.compute.measures.key_reading`).

    The final-token residual at each depth (``translate(depth, resid)`` applied first, when
    given) goes through ``head``'s final norm and unembedding (default: ``loaded``'s own).
    Reciprocal rank = ``1 / (1 + number of tokens with a higher logit)``; probability =
    softmax over the vocabulary. ``depths``: the depths read (default every depth, ``0 ..
    n_layers``). Returns ``{"reciprocal_rank", "probability"}``, arrays of shape
    ``[len(depths), n_facts]`` (every depth: ``n_layers + 1`` rows).
    """
    head = head or loaded
    every = resid_hooks(loaded.n_layers)
    depths = list(range(len(every))) if depths is None else list(depths)
    spec = CaptureSpec(every, "final")  # every depth: the capture the logit lens and patching share
    readings = [key_reading(f) for f in facts]
    acts = ctx.capture(loaded, [text for text, _ in readings], spec, batch_size=config.batch_size)
    first = torch.tensor([loaded.tokenizer(target, add_special_tokens=False)["input_ids"][0] for _, target in readings])
    rr, prob = [], []
    dtype = next(head.model.parameters()).dtype
    for depth in depths:
        resid = acts[every[depth]].to(device=head.device, dtype=dtype)
        if translate is not None:
            resid = translate(depth, resid)
        logits = decode(head.model, resid).float().cpu()
        answer_logit = logits.gather(1, first[:, None])
        rank = (logits > answer_logit).sum(1) + 1
        rr.append((1.0 / rank.float()).numpy())
        prob.append(torch.softmax(logits, -1).gather(1, first[:, None])[:, 0].numpy())
    return {"reciprocal_rank": np.stack(rr), "probability": np.stack(prob)}


def lens_comparison(
    ctx,
    config,
    translate=None,
    head=None,
    earliest_share: float | None = None,
    depths=None,
    u_translate=None,
    u_head=None,
) -> dict:
    """F against H at O's decision depth, from :func:`lens_scores` of O and U on F and H (with
    ``translate``, ``head`` and ``depths`` as there; ``depths`` must hold 0 and the last depth;
    ``u_translate`` / ``u_head``, when given, read U's states instead: U's own lens): the
    per-depth table, O's F-minus-H difference by depth, the decision
    depth (the intermediate depth where it is largest; with ``earliest_share``, the earliest
    intermediate depth where it reaches that share of its largest), U's F and H reciprocal ranks there,
    the subject-bootstrap CI and permutation p of their difference, and ``readable`` /
    ``pushed_down`` (CI above / below 0 with p < ``alpha``). Table rows, ``o_diff`` and
    ``n_depths`` count the depths read; ``depth`` and ``depths`` are depth numbers (0 = embeddings)."""
    depths = list(range(ctx.original.n_layers + 1)) if depths is None else list(depths)
    readers = {
        "original": (translate, head),
        "unlearned": (u_translate, u_head) if u_head is not None else (translate, head),
    }
    scores = {
        (role, name): lens_scores(
            ctx, model, facts, config, translate=readers[role][0], head=readers[role][1], depths=depths
        )
        for role, model in (("original", ctx.original), ("unlearned", ctx.unlearned))
        for name, facts in (("forget", ctx.forget), ("holdout", ctx.holdout))
    }
    forget_groups, holdout_groups = subject_groups(ctx.forget, "forget"), subject_groups(ctx.holdout, "holdout")
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
    intermediate = range(1, n_depths - 1)  # rows; depths[row] is the depth number
    row = max(intermediate, key=lambda d: o_diff[d])
    if earliest_share is not None and o_diff[row] > 0:
        row = min(d for d in intermediate if o_diff[d] >= earliest_share * o_diff[row])
    depth = depths[row]
    f_rr = scores[("unlearned", "forget")]["reciprocal_rank"][row]
    h_rr = scores[("unlearned", "holdout")]["reciprocal_rank"][row]
    ci = cluster_bootstrap_diff_ci(f_rr, forget_groups, h_rr, holdout_groups, config.n_boot, config.seed)
    p = cluster_permutation_p(f_rr, forget_groups, h_rr, holdout_groups, config.n_perm, config.seed)
    return {
        "table": table,
        "o_diff": o_diff,
        "depth": depth,
        "n_depths": n_depths,
        "depths": depths,
        "f_rr": f_rr,
        "h_rr": h_rr,
        "ci": ci,
        "p": p,
        "readable": ci[0] > 0 and p < config.alpha,
        "pushed_down": ci[1] < 0 and p < config.alpha,
    }


@dataclass
class TunedLens:
    """Fitted translators: ``weight`` ``[n_depths, d, d]`` and ``bias`` ``[n_depths, d]`` (float32,
    CPU) for depths ``0 .. n_layers - 1``; ``kl_raw`` / ``kl_tuned``: mean KL (nats) to O's
    output on the training tokens per depth, before and after fitting; ``n_tokens``: how many
    training tokens; ``n_vocab``: the size of the vocabulary the KL was taken over (the whole
    vocabulary, or the fitting vocabulary of :func:`fit_tuned_lens`); ``depths``: the depth of each
    translator (every depth but the output, or a layer budget's share of them)."""

    weight: torch.Tensor
    bias: torch.Tensor
    kl_raw: list[float]
    kl_tuned: list[float]
    n_tokens: int
    n_vocab: int
    depths: list[int]
    n_layers: int

    def translate(self, depth: int, resid: torch.Tensor) -> torch.Tensor:
        """Depth ``depth``'s state ``[..., d]`` translated (the last depth, the output, unchanged).
        Raises ``KeyError`` for a depth without a translator."""
        if depth >= self.n_layers:
            return resid
        if depth not in self.depths:
            raise KeyError(f"the tuned lens has no translator at depth {depth}")
        i = self.depths.index(depth)
        w, b = self.weight[i].to(resid), self.bias[i].to(resid)
        return resid + resid @ w.T + b

    @property
    def read_depths(self) -> list[int]:
        """The depths this lens reads: its translators' and the output's."""
        return [*self.depths, self.n_layers]


def fit_tuned_lens(loaded, texts: list[str], config, capture_fn) -> TunedLens:
    """Fit one translator per depth of ``loaded``'s residual stream on every token of ``texts``
    (see the module docstring). ``capture_fn(loaded, prompts, spec)``: an activation capture
    (the audit context's :meth:`~forensics.core.context.AuditContext.capture`).

    The loss is the KL from O's output distribution to the lens's, over the whole vocabulary
    when it has at most ``config.full_vocab_limit`` tokens. Above that (a real model's 50k-150k
    tokens), over the *fitting vocabulary*: the union of each training position's
    ``config.top_k`` most likely tokens under O's output, both distributions renormalised to it,
    and the lens's logits computed for those columns only. Every step then costs tokens x d x
    S instead of tokens x d x vocab (S: the fitting vocabulary's size, ``TunedLens.n_vocab``).
    The reported KLs are over the same vocabulary as the fit.

    Layer budget: with ``config.max_depths`` (optional; None or absent: every depth), translators
    are fitted only at :func:`~forensics.compute.capture.spread` ``(n_layers + 1, max_depths)``'s
    depths below the output."""
    hooks = resid_hooks(loaded.n_layers)
    depths = [d for d in spread(len(hooks), getattr(config, "max_depths", None)) if d < loaded.n_layers]
    acts = capture_fn(loaded, texts, CaptureSpec(hooks, "all"))
    model = loaded.model
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        target = decode(model, acts[hooks[-1]].to(loaded.device, dtype)).float()
        columns = None
        if target.shape[-1] > config.full_vocab_limit:
            columns = torch.unique(target.topk(min(config.top_k, target.shape[-1]), dim=-1).indices)
            target = target[:, columns.to(target.device)]
        target = torch.log_softmax(target, -1)
    generator = torch.Generator().manual_seed(config.seed)
    n_tokens = target.shape[0]
    weights, biases, kl_raw, kl_tuned = [], [], [], []
    for depth in depths:
        states = acts[hooks[depth]].to(loaded.device, dtype)
        d = states.shape[-1]
        weight = torch.zeros(d, d, device=loaded.device, requires_grad=True)
        bias = torch.zeros(d, device=loaded.device, requires_grad=True)
        optimiser = torch.optim.Adam([weight, bias], lr=config.lr)

        def kl(rows=None):
            x = states if rows is None else states[rows]  # noqa: B023 - called within this iteration
            t = target if rows is None else target[rows]
            translated = (x.float() + x.float() @ weight.T + bias).to(dtype)  # noqa: B023
            lens = torch.log_softmax(decode_columns(model, translated, columns).float(), -1)
            return (t.exp() * (t - lens)).sum(-1).mean()

        with torch.no_grad():
            kl_raw.append(float(kl()))
        for _ in range(config.steps):
            rows = (
                torch.randperm(n_tokens, generator=generator)[: config.tokens_per_step]
                if n_tokens > config.tokens_per_step
                else None
            )
            optimiser.zero_grad()
            loss = kl(rows)
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            kl_tuned.append(float(kl()))
        weights.append(weight.detach().float().cpu())
        biases.append(bias.detach().float().cpu())
    n_vocab = target.shape[-1]
    return TunedLens(
        torch.stack(weights), torch.stack(biases), kl_raw, kl_tuned, n_tokens, n_vocab, depths, loaded.n_layers
    )


def lens_heatmap(table: dict, n_depths: int, title: str, depths: list[int] | None = None) -> bytes:
    """Heat map of the mean reciprocal rank per depth read, for O and U on F and H (PNG bytes);
    ``depths`` labels the columns (default ``0 .. n_depths - 1``)."""
    from forensics.compute.plotting import figure_png, plt

    rows, labels = [], []
    for role in ("original", "unlearned"):
        for name in ("forget", "holdout"):
            rows.append(table[f"{role}/reciprocal_rank"][name])
            labels.append(f"{role[0].upper()} · {name}")
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n_depths, 2.4))
    image = ax.imshow(np.array(rows), aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xticks(range(n_depths), [str(d) for d in (depths or range(n_depths))])
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return figure_png(fig)
