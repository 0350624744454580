"""Activation patching: a model's teacher-forced answer log-prob with part of its residual
stream replaced by states taken from elsewhere (docs/methods.md §12).

A patch writes source states into the residual stream ``blocks.{l}.hook_resid_post`` of the
patched model during one forward pass (a TransformerLens ``run_with_hooks`` hook), at one of
two position sets per fact:

* ``"final"``: the prompt's last token (the position that predicts the answer's first token).
  The source is one ``[n_facts, d]`` tensor: a state per fact, e.g. a ``"final"`` capture
  (:mod:`forensics.compute.capture`) of another model or of other prompts;
* ``"prompt"``: every prompt token (the answer's positions keep the patched model's own
  states, as in the Unlearning Depth Score's protocol). The source is an ``"all"``-position
  capture of the *same prompts* through a model with the same tokenizer; each fact's source
  rows must have exactly its prompt's length.

Facts are tokenised and batched as :class:`forensics.compute.scoring.EncodedFacts` does (right
padding, sorted by length), one forward pass per batch, logits only at the answer positions.
The score is the log-probability of the answer's *key tokens* given the prompt and the
answer's earlier tokens (teacher-forced), in nats: the tokens that overlap the fact's ``key``
span where it has one (:func:`key_token_masks`), else every answer token (a closed-vocabulary
answer is all key).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from forensics.compute.capture import layer_hook
from forensics.compute.scoring import EncodedFacts, logits_fn_for
from forensics.core.errors import ForensicsInputError

PatchPositions = Literal["final", "prompt"]


class PatchSource:
    """States to write at one layer: ``states`` ``[n_facts, d]`` for ``"final"``, or
    ``[total_prompt_tokens, d]`` with ``offsets`` (``n_facts + 1``, as an ``"all"`` capture's
    ``token_offsets``) for ``"prompt"``."""

    def __init__(
        self, layer: int, positions: PatchPositions, states: torch.Tensor, offsets: torch.Tensor | None = None
    ):
        if positions not in ("final", "prompt"):
            raise ValueError(f"patch positions must be 'final' or 'prompt', not {positions!r}")
        if positions == "prompt" and offsets is None:
            raise ValueError("a 'prompt' patch needs the source's token offsets")
        self.layer, self.positions, self.states, self.offsets = layer, positions, states, offsets

    def rows_for(self, fact: int) -> torch.Tensor:
        """The source rows of fact ``fact``: ``[d]`` (final) or ``[prompt_len, d]`` (prompt)."""
        if self.positions == "final":
            return self.states[fact]
        assert self.offsets is not None
        return self.states[int(self.offsets[fact]) : int(self.offsets[fact + 1])]


def key_token_masks(tokenizer, facts) -> list[list[bool]]:
    """Per fact, which of its answer tokens (tokenised without special tokens, as scoring does)
    are key tokens: those whose characters overlap the ``key`` span inside the answer; every
    token when the fact has no ``key`` or the tokenizer gives no offsets."""
    masks = []
    for fact in facts:
        encoding = tokenizer(fact.answer, add_special_tokens=False, return_offsets_mapping=bool(fact.key))
        n = len(encoding["input_ids"])
        key = (fact.key or "").strip()
        start = fact.answer.find(key) if key else -1
        offsets = encoding.get("offset_mapping") if key else None
        if start < 0 or not offsets:
            masks.append([True] * n)
            continue
        end = start + len(key)
        masks.append([a < end and b > start for a, b in offsets])
    return masks


@torch.no_grad()
def answer_logprobs(
    model,
    encoded: EncodedFacts,
    source: PatchSource | None = None,
    device: str | torch.device = "cpu",
    key_masks: list[list[bool]] | None = None,
) -> np.ndarray:
    """Key-token log-probability (nats, float64 ``[n_facts]``; see the module docstring) of every
    fact under the TransformerLens ``model``, with ``source`` patched in (None: no patch).
    ``key_masks``: :func:`key_token_masks` of the encoded facts (None: every answer token).

    Raises :class:`ForensicsInputError` when a ``"prompt"`` source's row count for a fact
    differs from the fact's prompt length (another tokenizer, other prompts).
    """
    out = np.zeros(len(encoded), dtype=np.float64)
    dtype = next(model.parameters()).dtype
    for (idx, tokens), (positions, targets, mask, _) in zip(encoded.batches, encoded.answer_index()):
        hooks = []
        if source is not None:
            hooks = [(layer_hook(source.layer), _writer(encoded, idx, source, dtype, device))]
        logits = logits_fn_for(model, hooks)(tokens.to(device), positions)
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        picked = logprobs.gather(-1, targets[..., None])[..., 0]
        if key_masks is not None:
            mask = mask.clone()
            for r, i in enumerate(idx):
                mask[r, : len(key_masks[i])] &= torch.tensor(key_masks[i], dtype=torch.bool)
        out[np.asarray(idx)] = (picked * mask).sum(1).double().numpy()
    return out


def _writer(encoded: EncodedFacts, idx: list[int], source: PatchSource, dtype, device):
    prompt_lengths = [len(encoded.encoded[i][0]) for i in idx]
    if source.positions == "final":
        rows = torch.tensor(idx)
        cols = torch.tensor(prompt_lengths) - 1
        values = source.states[rows].to(device=device, dtype=dtype)

        def write_final(act: torch.Tensor, hook) -> torch.Tensor:
            act[torch.arange(len(idx), device=act.device), cols.to(act.device)] = values.to(act.device)
            return act

        return write_final
    pieces = []
    for r, i in enumerate(idx):
        piece = source.rows_for(i)
        if piece.shape[0] != prompt_lengths[r]:
            raise ForensicsInputError(
                f"patch source has {piece.shape[0]} prompt tokens for a fact whose prompt has {prompt_lengths[r]}: "
                "source and patched model must share the tokenizer and the prompts"
            )
        pieces.append(piece.to(device=device, dtype=dtype))

    def write_prompt(act: torch.Tensor, hook) -> torch.Tensor:
        for r, piece in enumerate(pieces):
            act[r, : piece.shape[0]] = piece.to(act.device)  # the block's device (n_devices)
        return act

    return write_prompt


def counterfactual_partners(answers: list[str], groups: list[str], strata: list[str | None], seed: int) -> np.ndarray:
    """For each fact, another fact of the same set to take a counterfactual state from:
    one with a different answer and a different group (subject), from the same stratum
    (attribute) when one exists, else from anywhere in the set; drawn with ``seed``.
    Returns int64 ``[n]``; ``-1`` where no fact qualifies."""
    rng = np.random.default_rng(seed)
    n = len(answers)
    partners = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        ok = [j for j in range(n) if answers[j] != answers[i] and groups[j] != groups[i]]
        same = [j for j in ok if strata[i] is not None and strata[j] == strata[i]]
        pool = same or ok
        if pool:
            partners[i] = pool[int(rng.integers(len(pool)))]
    return partners
