"""The fine-tuning loop shared by the relearning attack and the zoo: token batches with
answer-only labels, a seeded length-grouped sampler, the answer NLL and a plain AdamW loop.

Batches are right-padded token ids (no attention mask needed: see
:mod:`forensics.compute.scoring`); label ``IGNORE`` (-100) marks positions without loss. Every
random choice comes from an explicit seed.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from forensics.compute.scoring import encode_prompt, logits_fn_for, pad_right
from forensics.inputs.data import Fact

#: Label of a position that carries no loss (PyTorch's ``ignore_index`` default).
IGNORE = -100


@dataclass
class Batchable:
    """Token ids and labels (-100 where no loss) for a list of items, right-padded."""

    ids: torch.Tensor  # (n, T)
    labels: torch.Tensor  # (n, T): the token to predict at position t is labels[t] (unshifted)
    lengths: torch.Tensor  # (n,)
    starts: torch.Tensor | None = None  # (n,) optional: token index where the subject starts

    def __len__(self) -> int:
        return self.ids.shape[0]

    def take(self, index: torch.Tensor) -> Batchable:
        """The items at ``index`` (a ``[b]`` index tensor), trimmed to their longest length."""
        lengths = self.lengths[index]
        t = int(lengths.max())
        starts = self.starts[index] if self.starts is not None else None
        return Batchable(self.ids[index, :t], self.labels[index, :t], lengths, starts)


def _pad(rows: list[list[int]], labels: list[list[int]], pad_id: int) -> Batchable:
    ids, lengths = pad_right(rows, pad_id)
    lab, _ = pad_right(labels, IGNORE)
    if lab.shape[1] < ids.shape[1]:
        lab = torch.nn.functional.pad(lab, (0, ids.shape[1] - lab.shape[1]), value=IGNORE)
    return Batchable(ids, lab, lengths)


def encode_texts(tokenizer, texts: list[str]) -> Batchable:
    """Full-sequence LM items: loss on every token after the first, plus a final EOS."""
    rows, labels = [], []
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(ids)
        labels.append([IGNORE] + ids[1:])
    return _pad(rows, labels, tokenizer.pad_token_id)


def encode_answers(tokenizer, facts: list[Fact], answer: str | None = None) -> Batchable:
    """Prompt + answer items with the loss on the answer tokens only.

    ``answer`` replaces every fact's own answer (the "I do not know" target).
    """
    rows, labels = [], []
    for fact in facts:
        p = encode_prompt(tokenizer, fact.prompt)
        a = tokenizer(answer if answer is not None else fact.answer, add_special_tokens=False)["input_ids"]
        rows.append(p + a)
        labels.append([IGNORE] * len(p) + a)
    batch = _pad(rows, labels, tokenizer.pad_token_id)
    batch.starts = torch.tensor([subject_start(tokenizer, f) for f in facts])
    return batch


def subject_start(tokenizer, fact: Fact) -> int:
    """Token index where the subject's name starts in the prompt (0 when unknown)."""
    if not fact.subject or fact.subject not in fact.prompt:
        return 0
    before = fact.prompt[: fact.prompt.index(fact.subject)].rstrip()
    return len(tokenizer(before)["input_ids"]) if before else 0


class Sampler:
    """Seeded mini-batches, epoch by epoch, grouped by length to waste little padding.

    Each epoch: a random permutation, cut into windows of ``8 * batch_size`` items,
    each window sorted by length and cut into batches, batch order shuffled.
    """

    def __init__(self, data: Batchable, batch_size: int, seed: int):
        self.data, self.batch_size = data, min(batch_size, len(data))
        self.gen = torch.Generator().manual_seed(seed)
        self.batches: list[torch.Tensor] = []

    def _epoch(self) -> list[torch.Tensor]:
        perm = torch.randperm(len(self.data), generator=self.gen)
        window = 8 * self.batch_size
        batches = []
        for start in range(0, len(perm) - self.batch_size + 1, window):
            chunk = perm[start : start + window]
            chunk = chunk[torch.argsort(self.data.lengths[chunk], stable=True)]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        order = torch.randperm(len(batches), generator=self.gen)
        return [batches[i] for i in order]

    def next(self) -> Batchable:
        """The next mini-batch (a new epoch's batches are drawn when the current epoch is used up)."""
        if not self.batches:
            self.batches = self._epoch()
        return self.data.take(self.batches.pop())


def token_logprobs(model, batch: Batchable) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-item sum of label-token log-probs [n], per-item number of label tokens [n])``
    under ``model`` (a ``transformers`` causal LM), in nats."""
    logits = model(batch.ids).logits[:, :-1]
    targets = batch.labels[:, 1:]
    mask = targets != IGNORE
    lp = torch.log_softmax(logits.float(), dim=-1)
    picked = lp.gather(-1, targets.clamp(min=0)[..., None])[..., 0] * mask
    return picked.sum(-1), mask.sum(-1)


def nll(model, batch: Batchable) -> torch.Tensor:
    """Mean per-token negative log-likelihood (nats) over the batch's label tokens (a scalar)."""
    lp, n = token_logprobs(model, batch)
    return -lp.sum() / n.sum().clamp(min=1)


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For unshifted ``labels`` ``[n, T]`` (:class:`Batchable`), the positions whose logits
    predict a label token, left-aligned per row ``[n, k]`` (k: the most label tokens of a row;
    at least 1), those tokens ``[n, k]`` and which entries are real ``[n, k]`` bool (the rest
    are padding: position 0, token 0)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    k = max(1, int(mask.sum(1).max()))
    # a stable sort of "not a label" puts each row's label positions first, in order
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices[:, :k]
    valid = mask.gather(1, order)
    return order * valid, targets.gather(1, order).clamp(min=0) * valid, valid


def answer_nll(model, batch: Batchable, device, sign: float = 1.0) -> torch.Tensor:
    """``sign`` x the mean NLL (nats) of ``batch``'s label tokens under ``model`` (a
    TransformerLens ``HookedTransformer`` or a ``transformers`` causal LM), a scalar with
    gradients. The final norm and the unembedding run only at the positions that predict a
    label (:func:`forensics.compute.scoring.logits_fn_for`): on a 49k-token vocabulary that
    is a fifth of a 135M model's forward and backward pass saved on short answers. Equals
    the loss over full logits up to float rounding."""
    positions, targets, valid = label_positions(batch.labels)
    logits = logits_fn_for(model)(batch.ids.to(device), positions.to(device))
    valid = valid.to(device)
    return sign * F.cross_entropy(logits[valid].float(), targets.to(device)[valid])


def run_steps(
    model,
    params: list[torch.nn.Parameter],
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    warmup: int = 0,
    decay: bool = False,
    stop: Callable[[int], bool] | None = None,
    check_every: int = 5,
    clip: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.98),
    fused: bool = False,
) -> int:
    """A plain AdamW loop over ``loss_fn(step)``; returns the number of steps taken.

    No weight decay; gradient-norm clipping at ``clip`` (0: none); an optional linear warm-up
    over ``warmup`` steps and, with ``decay``, a linear decay over ``steps``, floored at 5% of ``lr``.
    ``stop(step)`` is consulted every ``check_every`` steps (and before the first step);
    the loop ends as soon as it returns True. The model is left in eval mode. ``fused`` uses
    PyTorch's fused AdamW kernel: the same update up to float rounding, an optimiser step about
    ten times faster on CPU at 135M parameters (0.64 s -> 0.05-0.08 s measured; docs/decisions.md); the zoo
    builds keep the default loop, so their models do not change.
    """
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=0.0, fused=fused or None)

    def factor(s: int) -> float:
        w = min(1.0, (s + 1) / warmup) if warmup else 1.0
        return w * (max(0.05, 1.0 - s / steps) if decay else 1.0)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    for step in range(steps):
        if stop is not None and step % check_every == 0 and stop(step):
            model.eval()
            return step
        model.train()  # a stopping check may have switched to eval mode
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
    model.eval()
    return steps


def trainable_copy(model):
    """A deep copy of ``model`` with every parameter trainable."""
    tuned = copy.deepcopy(model)
    for p in tuned.parameters():
        p.requires_grad_(True)
    return tuned


def master_copy(model) -> tuple[Any, Callable[[], contextlib.AbstractContextManager]]:
    """A trainable copy of ``model`` (:func:`trainable_copy`) whose updates are not lost to its
    precision, and the context its passes run under: ``(copy, precision)``, used as
    ``with precision(): loss = ...``.

    A float32 model is copied as it is and ``precision`` does nothing. A bfloat16 model is copied
    to float32 master weights and ``precision`` is bfloat16 autocast on its device: the matrix
    products keep bfloat16's speed while AdamW updates float32 weights (an update of 5e-5 on a
    weight of 0.05 is 1e-3 of it, below bfloat16's resolution of 2^-8, and would round away). A
    float16 model is copied to float32 and runs in float32 (float16 autocast needs loss scaling).
    Mixed precision training as in Micikevicius et al. 2018.
    """
    dtype = next(model.parameters()).dtype
    tuned = trainable_copy(model)
    if dtype not in (torch.bfloat16, torch.float16):
        return tuned, contextlib.nullcontext
    if hasattr(tuned, "cfg"):  # TransformerLens: keep cfg.dtype in step with the weights
        tuned.to(torch.float32, print_details=False)
    else:
        tuned.to(torch.float32)
    if dtype == torch.float16:
        return tuned, contextlib.nullcontext
    device_type = next(tuned.parameters()).device.type
    return tuned, lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def frozen_copy(model):
    """A deep copy of ``model`` in eval mode with every parameter frozen."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
