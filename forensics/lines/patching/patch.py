"""Activation patching: a model's teacher-forced answer log-prob with part of its residual
stream replaced by states taken from elsewhere (docs/methods.md §12).

A patch writes source states into the residual stream ``blocks.{l}.hook_resid_post`` of the
patched model during one forward pass (a TransformerLens ``run_with_hooks`` hook), at one of
two position sets per fact:

* the prompt's last token (the position that predicts the answer's first token:
  :class:`PatchSource`, :func:`answer_logprobs`). The source is one ``[n_facts, d]`` tensor: a
  state per fact, e.g. a ``"final"`` capture (:mod:`forensics.compute.capture`) of another
  model or of other prompts;
* the *key positions*: the teacher-forced positions whose next-token outputs predict the
  answer's key tokens, filled with a source model's states at the same positions of the same
  token sequence (:func:`key_position_drops`; the Unlearning Depth Score's protocol, Lee et al.
  2026, ``compute_uds.py`` with its default ``span`` patch scope).

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
from forensics.compute.scoring import EncodedFacts, logits_after_block, logits_fn_for

PatchPositions = Literal["final"]


class PatchSource:
    """States to write at one layer at each fact's final prompt token: ``states`` ``[n_facts, d]``."""

    def __init__(self, layer: int, positions: PatchPositions, states: torch.Tensor):
        if positions != "final":
            raise ValueError(f"patch positions must be 'final', not {positions!r}")
        self.layer, self.positions, self.states = layer, positions, states


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
    """
    out = np.zeros(len(encoded), dtype=np.float64)
    dtype = next(model.parameters()).dtype
    for k, (idx, tokens) in enumerate(encoded.batches):
        positions = encoded.answer_index()[k][0]
        hooks = []
        if source is not None:
            hooks = [(layer_hook(source.layer), _writer(encoded, idx, source, dtype, device))]
        out[np.asarray(idx)] = _key_logprob(
            encoded, k, logits_fn_for(model, hooks)(tokens.to(device), positions), key_masks
        )
    return out


@torch.no_grad()
def patched_answer_logprobs(
    model,
    encoded: EncodedFacts,
    sources: list[PatchSource],
    device: str | torch.device = "cpu",
    key_masks: list[list[bool]] | None = None,
) -> np.ndarray:
    """:func:`answer_logprobs` under each of ``sources`` (float64 ``[len(sources), n_facts]``), with
    the blocks before each patched block run once per batch: the model's residual stream is
    captured at every patched block, the source's states are written into a copy of it, and only
    the later blocks run (:func:`forensics.compute.scoring.logits_after_block`). Equal to one
    whole patched forward pass per source (right-padded batches need no attention mask)."""
    out = np.zeros((len(sources), len(encoded)), dtype=np.float64)
    dtype = next(model.parameters()).dtype
    hooks = sorted({layer_hook(s.layer) for s in sources})
    last = max((s.layer for s in sources), default=-1)
    for k, (idx, tokens) in enumerate(encoded.batches):
        positions = encoded.answer_index()[k][0]
        _, cache = model.run_with_cache(tokens.to(device), names_filter=hooks, stop_at_layer=last + 1)
        for s, source in enumerate(sources):
            resid = _writer(encoded, idx, source, dtype, device)(cache[layer_hook(source.layer)].clone(), None)
            logits = logits_after_block(model, resid, source.layer, positions)
            out[s, np.asarray(idx)] = _key_logprob(encoded, k, logits, key_masks)
    return out


def _key_logprob(encoded: EncodedFacts, k: int, logits: torch.Tensor, key_masks: list[list[bool]] | None) -> np.ndarray:
    """Batch ``k``'s key-token log-probability per fact (nats, float64 ``[rows]``) from its logits
    at the answer positions ``[rows, A, vocab]``."""
    idx = encoded.batches[k][0]
    _, targets, mask, _ = encoded.answer_index()[k]
    logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    picked = logprobs.gather(-1, targets[..., None])[..., 0]
    if key_masks is not None:
        mask = mask.clone()
        for r, i in enumerate(idx):
            mask[r, : len(key_masks[i])] &= torch.tensor(key_masks[i], dtype=torch.bool)
    return (picked * mask).sum(1).double().numpy()


def _writer(encoded: EncodedFacts, idx: list[int], source: PatchSource, dtype, device):
    rows = torch.tensor(idx)
    cols = torch.tensor([len(encoded.encoded[i][0]) for i in idx]) - 1
    values = source.states[rows].to(device=device, dtype=dtype)

    def write_final(act: torch.Tensor, hook) -> torch.Tensor:
        act[torch.arange(len(idx), device=act.device), cols.to(act.device)] = values.to(act.device)
        return act

    return write_final


@torch.no_grad()
def key_position_drops(
    target,
    sources: list,
    encoded: EncodedFacts,
    key_masks: list[list[bool]] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The Unlearning Depth Score's patch (Lee et al. 2026, ``compute_uds.py``, patch scope
    ``span``): per fact, ``target``'s mean log-probability per key token (nats), unpatched, and
    its drop when the residual stream after block ``l`` (``blocks.{l}.hook_resid_post``) is
    replaced, at the *key positions* only (the teacher-forced positions whose next-token outputs
    predict the answer's key tokens), by a source model's states at the same positions of the same
    prompt + answer tokens.

    ``target``, ``sources``: TransformerLens models sharing the tokenizer and the number of
    blocks; ``key_masks``: :func:`key_token_masks` (None: every answer token is key). Returns
    ``base`` float64 ``[n_facts]`` and ``drops`` float64 ``[len(sources), n_layers, n_facts]``
    (``base`` minus the patched score; positive = the source's states carry less of the answer);
    a fact with no key token gets NaN. One pass per source and batch captures every block's
    states; then one patched pass per (source, block, batch).
    """
    n_layers = target.cfg.n_layers
    base = np.full(len(encoded), np.nan)
    drops = np.full((len(sources), n_layers, len(encoded)), np.nan)
    for (idx, tokens), (positions, targets, mask, _) in zip(encoded.batches, encoded.answer_index()):
        keep = mask.clone()
        if key_masks is not None:
            for r, i in enumerate(idx):
                keep[r, : len(key_masks[i])] &= torch.tensor(key_masks[i], dtype=torch.bool)
        order = np.asarray(idx)
        base[order], drops[:, :, order] = _batch_drops(target, sources, tokens.to(device), positions, targets, keep)
    return base, drops


def _batch_drops(target, sources: list, tokens, positions, targets, keep) -> tuple[np.ndarray, np.ndarray]:
    """:func:`key_position_drops` for one batch: ``tokens`` ``[rows, T]``, ``positions`` /
    ``targets`` / ``keep`` ``[rows, A]`` (:meth:`EncodedFacts.answer_index`, ``keep`` = key tokens)."""
    n_layers = target.cfg.n_layers
    dtype = next(target.parameters()).dtype
    rows, cols = keep.nonzero(as_tuple=True)
    at = positions[rows, cols]  # the token positions predicting the key tokens
    counts = keep.sum(1).double()

    def mean_key_logprob(hooks: list) -> np.ndarray:
        logits = logits_fn_for(target, hooks)(tokens, positions)
        picked = torch.log_softmax(logits.float(), dim=-1).cpu().gather(-1, targets[..., None])[..., 0]
        return ((picked * keep).sum(1).double() / counts).numpy()

    def saver(states: dict, layer: int):
        def save(act: torch.Tensor, hook) -> None:
            states[layer] = act[rows.to(act.device), at.to(act.device)].detach()

        return save

    def writer(values: torch.Tensor):
        def write(act: torch.Tensor, hook) -> torch.Tensor:
            act[rows.to(act.device), at.to(act.device)] = values.to(act.device)  # the block's device
            return act

        return write

    base = mean_key_logprob([])
    drops = np.zeros((len(sources), n_layers, len(base)))
    for s, source in enumerate(sources):
        states: dict[int, torch.Tensor] = {}
        logits_fn_for(source, [(layer_hook(layer), saver(states, layer)) for layer in range(n_layers)])(
            tokens, positions[:, :1]
        )
        for layer in range(n_layers):
            drops[s, layer] = base - mean_key_logprob([(layer_hook(layer), writer(states[layer].to(dtype=dtype)))])
    return base, drops


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
