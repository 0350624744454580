"""Shared scoring: tokenising facts, right padding, answer log-probs, greedy accuracy and
per-token statistics of whole sequences.

Tokenisation. A fact is ``prompt + answer``: the prompt is tokenised with the tokenizer's
own special-token settings (a Llama tokenizer adds its BOS; a prompt that already starts
with the BOS text keeps one BOS, not two), the answer without special tokens, and the two
id lists are concatenated (the answer carries its leading space, so the split is clean for
byte-level BPE).

Padding. Batches are right-padded. In a causal model real positions never attend to
later (pad) positions and their position indices start at 0 as if unpadded, so right
padding never changes the logits of real positions and no attention mask is needed.

Scores. *Greedy accuracy* is exact match of greedy decoding over the answer tokens; under
teacher forcing that is "every answer token is the arg-max at its position", which one
forward pass decides. *Answer log-prob* is ``log P(answer | prompt)``, the sum of the
answer tokens' log-probabilities (natural log).

Only the logits that a score reads are computed: the answer positions of a fact, the
scored span of a sequence (:func:`logits_fn_for` with ``positions``). The unembedding and
the softmax over the vocabulary then run on a few positions a row instead of every one,
which matters once the vocabulary is large (a 50k-token unembedding is most of a 70M
model's forward pass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from forensics.inputs.data import Fact

#: ``(tokens [batch, pos], positions [batch, k] or None) -> logits [batch, k or pos, vocab]``.
LogitsFn = Callable[..., torch.Tensor]


@dataclass
class FactScores:
    """Per-fact scores of one model on one fact set."""

    correct: np.ndarray  # bool [n_facts]: greedy answer exact match
    logprob: np.ndarray  # float [n_facts]: log P(answer | prompt), nats
    predicted: np.ndarray | None = None  # int [n_facts]: the greedy next token after the prompt

    @property
    def accuracy(self) -> float:
        """Share of facts answered exactly (NaN for an empty set)."""
        return float(self.correct.mean()) if len(self.correct) else float("nan")

    @property
    def mean_logprob(self) -> float:
        """Mean answer log-prob over facts, nats (NaN for an empty set)."""
        return float(self.logprob.mean()) if len(self.logprob) else float("nan")


def doubled_bos(tokenizer, ids: Sequence[int]) -> bool:
    """True when ``ids`` start with two BOS tokens: the prompt text already begins with the BOS
    text (a rendered chat template) and the tokenizer adds its own BOS as well."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """A prompt's token ids with the tokenizer's own special tokens, a doubled BOS reduced to
    one (:func:`doubled_bos`): the model sees one BOS, as in training."""
    ids = list(tokenizer(prompt)["input_ids"])
    return ids[1:] if doubled_bos(tokenizer, ids) else ids


def encode_facts(tokenizer, facts: Sequence[Fact]) -> list[tuple[list[int], list[int]]]:
    """``(prompt token ids, answer token ids)`` per fact (see the module docstring; prompts by
    :func:`encode_prompt`)."""
    encoded = []
    for fact in facts:
        prompt_ids = encode_prompt(tokenizer, fact.prompt)
        answer_ids = tokenizer(fact.answer, add_special_tokens=False)["input_ids"]
        encoded.append((list(prompt_ids), list(answer_ids)))
    return encoded


def fact_token_ids(tokenizer, facts: Sequence[Fact]) -> list[list[int]]:
    """``prompt + answer`` token ids per fact, tokenised as :func:`encode_facts` does."""
    return [p + a for p, a in encode_facts(tokenizer, facts)]


def pad_right(rows: Sequence[Sequence[int]], pad_id: int, fill: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows into one ``[n, max_len]`` long tensor.

    Returns ``(tokens, lengths)``; ``lengths`` is ``[n]`` int64. ``fill`` (default
    ``pad_id``) is the value written after each row's end.
    """
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id if fill is None else fill, dtype=torch.long)
    for k, r in enumerate(rows):
        tokens[k, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    return tokens, torch.tensor([len(r) for r in rows])


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> Iterator[list[int]]:
    """Index batches of items sorted by length (little padding): at most ``batch_size``
    items and, when ``max_tokens`` is given, at most that many padded tokens a batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        width = lengths[i]
        if batch and (len(batch) >= batch_size or (max_tokens and (len(batch) + 1) * width > max_tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def logits_fn_for(model, hooks: Sequence | None = None) -> LogitsFn:
    """A ``(tokens [batch, pos], positions=None) -> logits`` function for a TransformerLens
    ``HookedTransformer`` (with forward ``hooks``, as ``run_with_hooks`` takes them) or a
    ``transformers`` causal LM. With ``positions`` (a long tensor ``[batch, k]``) only the
    logits at those positions of each row are returned, ``[batch, k, vocab]``: for a
    TransformerLens model the blocks run on every position and the final norm, unembedding
    and output soft-cap only on those (equal to the full logits gathered there); a
    ``transformers`` model computes every position and gathers."""
    if hasattr(model, "run_with_hooks"):  # TransformerLens

        def run(tokens, **kwargs):
            return model.run_with_hooks(tokens, fwd_hooks=list(hooks), **kwargs) if hooks else model(tokens, **kwargs)

        def tl_logits(tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
            if positions is None:
                return run(tokens)
            return _head(model, run(tokens, stop_at_layer=model.cfg.n_layers), positions)

        return tl_logits

    def hf_logits(tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        logits = model(tokens).logits
        if positions is None:
            return logits
        return logits.gather(1, positions.to(logits.device)[..., None].expand(-1, -1, logits.shape[-1]))

    return hf_logits


def _head(model, resid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """A TransformerLens model's logits ``[batch, k, vocab]`` from its residual stream after the
    last block ``[batch, pos, d_model]``, at ``positions`` ``[batch, k]`` only: final norm,
    unembedding and output soft-cap on those positions."""
    from transformer_lens.utilities.activation_functions import apply_softcap

    picked = resid.gather(1, positions.to(resid.device)[..., None].expand(-1, -1, resid.shape[-1]))
    picked = picked.to(model.unembed.W_U.device)  # a model spread over GPUs (n_devices)
    if model.cfg.normalization_type is not None:
        picked = model.ln_final(picked)
    return apply_softcap(model.unembed(picked), model.cfg.output_logits_soft_cap)


def logits_after_block(model, resid: torch.Tensor, block: int, positions: torch.Tensor) -> torch.Tensor:
    """A TransformerLens model's logits at ``positions`` ``[batch, k]`` from its residual stream
    after block ``block`` (``blocks.{block}.hook_resid_post``, ``[batch, pos, d_model]``): the
    blocks after ``block`` run on it, then :func:`_head`. For a right-padded batch (no attention
    mask, as :func:`logits_fn_for` runs it) this equals the whole forward pass's logits when
    ``resid`` is what that pass computes at the block: an intervention at one block then needs
    only the blocks after it, from a residual captured once."""
    n_layers = model.cfg.n_layers
    if block + 1 < n_layers:
        resid = model(resid, start_at_layer=block + 1, stop_at_layer=n_layers)
    return _head(model, resid, positions)


class EncodedFacts:
    """A fact list tokenised once and cut into right-padded batches, for repeated scoring.

    Facts are sorted by ``prompt + answer`` length and cut into batches of ``batch_size``;
    results are scattered back to the facts' order. Scoring the same facts with the same
    ``batch_size`` gives bitwise-identical numbers however often it is done.
    """

    def __init__(self, tokenizer, facts: Sequence[Fact], batch_size: int = 64, pad_id: int | None = None):
        self.encoded = encode_facts(tokenizer, facts)
        if pad_id is None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        order = sorted(range(len(self.encoded)), key=lambda i: len(self.encoded[i][0]) + len(self.encoded[i][1]))
        self.batches: list[tuple[list[int], torch.Tensor]] = []
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            tokens, _ = pad_right([self.encoded[i][0] + self.encoded[i][1] for i in idx], pad_id)
            self.batches.append((idx, tokens))
        self._answer_index: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.encoded)

    def answer_index(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per batch: the positions whose logits predict each answer token ``[rows, A]`` (the
        first is always the prompt's last position, answer or not), the answer tokens, their
        mask and which rows have an answer."""
        if self._answer_index is None:
            self._answer_index = []
            for idx, _ in self.batches:
                rows = [self.encoded[i] for i in idx]
                n_answer = max(1, max(len(a) for _, a in rows))
                positions = torch.zeros((len(rows), n_answer), dtype=torch.long)
                targets = torch.zeros((len(rows), n_answer), dtype=torch.long)
                mask = torch.zeros((len(rows), n_answer), dtype=torch.bool)
                for r, (p, a) in enumerate(rows):
                    positions[r, 0] = len(p) - 1
                    positions[r, : len(a)] = torch.arange(len(p) - 1, len(p) + len(a) - 1)
                    targets[r, : len(a)] = torch.tensor(a, dtype=torch.long)
                    mask[r, : len(a)] = True
                self._answer_index.append((positions, targets, mask, mask.any(1)))
        return self._answer_index

    @torch.no_grad()
    def score(self, logits_fn: LogitsFn, device: str | torch.device = "cpu") -> FactScores:
        """Greedy exact match and answer log-prob of every fact (see the module docstring);
        logits are computed at the answer positions only."""
        correct = np.zeros(len(self.encoded), dtype=bool)
        logprob = np.zeros(len(self.encoded), dtype=float)
        predicted = np.zeros(len(self.encoded), dtype=np.int64)
        for k, ((_, tokens), (positions, _, _, _)) in enumerate(zip(self.batches, self.answer_index())):
            order, hit, lp, first = self.batch_scores(k, logits_fn(tokens.to(device), positions))
            correct[order], logprob[order], predicted[order] = hit, lp, first
        return FactScores(correct=correct, logprob=logprob, predicted=predicted)

    @torch.no_grad()
    def batch_scores(self, k: int, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Batch ``k``'s scores from its logits at the answer positions ``[rows, A, vocab]``
        (``answer_index()[k][0]``): the facts' indices into the fact list ``[rows]``, greedy
        exact match (bool), answer log-prob (nats) and the greedy next token after the prompt."""
        idx = self.batches[k][0]
        _, targets, mask, has_answer = self.answer_index()[k]
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        picked = logprobs.gather(-1, targets[..., None])[..., 0]
        hits = (logprobs.argmax(-1) == targets) | ~mask
        return (
            np.asarray(idx),
            (hits.all(1) & has_answer).numpy(),
            (picked * mask).sum(1).double().numpy(),
            logprobs[:, 0].argmax(-1).numpy(),
        )

    @torch.no_grad()
    def token_accuracy(self, logits_fn: LogitsFn, device: str | torch.device = "cpu") -> np.ndarray:
        """Per fact, the share of its answer tokens that are the arg-max under teacher forcing
        (each token predicted from the prompt and the answer's true earlier tokens), float64
        ``[n_facts]``; NaN for a fact without answer tokens."""
        out = np.full(len(self.encoded), np.nan)
        for (idx, tokens), (positions, targets, mask, _) in zip(self.batches, self.answer_index()):
            predicted = logits_fn(tokens.to(device), positions).argmax(-1).cpu()
            hits = ((predicted == targets) & mask).sum(1).double()
            counts = mask.sum(1).double()
            out[np.asarray(idx)] = torch.where(counts > 0, hits / counts.clamp(min=1), torch.nan).numpy()
        return out

    @torch.no_grad()
    def accuracy(self, logits_fn: LogitsFn, device: str | torch.device = "cpu") -> float:
        """Greedy accuracy alone; equals ``score(...).accuracy`` (same batches, same arg-max)."""
        n_correct = 0
        for (_, tokens), (positions, targets, mask, has_answer) in zip(self.batches, self.answer_index()):
            logprobs = torch.log_softmax(logits_fn(tokens.to(device), positions).float(), dim=-1)
            predicted = logprobs.argmax(dim=-1).cpu()
            n_correct += int((((predicted == targets) | ~mask).all(1) & has_answer).sum())
        return n_correct / len(self.encoded) if len(self.encoded) else float("nan")


def score_facts(
    logits_fn: LogitsFn,
    tokenizer,
    facts: Sequence[Fact],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    pad_id: int | None = None,
) -> FactScores:
    """Greedy exact match and answer log-prob for each fact, in right-padded batches
    sorted by length (:class:`EncodedFacts` when the same facts are scored often)."""
    return EncodedFacts(tokenizer, facts, batch_size, pad_id).score(logits_fn, device)


@torch.no_grad()
def sequence_losses(
    model,
    sequences: Sequence[Sequence[int]],
    batch_size: int = 512,
    device="cpu",
    pad_id: int = 0,
    max_tokens: int | None = 65536,
    starts: Sequence[int] | None = None,
) -> np.ndarray:
    """Mean token NLL (nats) of each token sequence, ``[n_sequences]``: of every token from
    position ``starts[i]`` on (default 1: every token after the first; an answer span when
    ``starts`` holds the prompts' lengths). Right-padded batches sorted by length, at most
    ``max_tokens`` padded tokens a batch; fully vectorised. NaN for a sequence with no
    scored token."""
    fn = logits_fn_for(model)
    out = np.zeros(len(sequences))
    first = torch.as_tensor([1] * len(sequences) if starts is None else [max(1, int(k)) for k in starts])
    for idx in length_batches([len(s) for s in sequences], batch_size, max_tokens):
        tokens, lengths = pad_right([list(sequences[i]) for i in idx], pad_id)
        tokens = tokens.to(device)
        if starts is None:  # every position is scored
            lp = torch.log_softmax(fn(tokens)[:, :-1].float(), dim=-1)
            picked = lp.gather(-1, tokens[:, 1:, None])[..., 0]
            target = torch.arange(1, tokens.shape[1], device=device)[None, :]  # position of each scored token
            mask = (target < lengths.to(device)[:, None]) & (target >= first[idx].to(device)[:, None])
        else:  # logits only where a scored token is predicted: from starts[i] - 1 on
            wanted = first[idx][:, None] + torch.arange(max(1, int((lengths - first[idx]).max())))[None, :]
            mask = (wanted < lengths[:, None]).to(device)
            target = wanted.clamp(max=tokens.shape[1] - 1).to(device)  # clamped where masked out
            lp = torch.log_softmax(fn(tokens, target - 1).float(), dim=-1)
            picked = lp.gather(-1, tokens.gather(1, target)[..., None])[..., 0]
        count = mask.sum(1)
        nll = -(picked * mask).sum(1) / count.clamp(min=1)
        out[idx] = torch.where(count > 0, nll, torch.full_like(nll, float("nan"))).cpu().numpy()
    return out


@torch.no_grad()
def token_stats(
    model,
    sequences: Sequence[Sequence[int]],
    batch_size: int = 256,
    device="cpu",
    pad_id: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Per sequence, for every token after the first: ``lp`` (its log-prob given the
    prefix), and ``mu`` / ``sigma``, the mean and standard deviation of ``log p(z)`` with
    ``z`` drawn from the model's next-token distribution at that position (variance clamped
    at 1e-6; Min-K%++, Zhang et al. 2024). Each array is ``[len(sequence) - 1]``."""
    fn = logits_fn_for(model)
    out: list[dict[str, np.ndarray]] = [{} for _ in sequences]
    for idx in length_batches([len(s) for s in sequences], batch_size, None):
        tokens, lengths = pad_right([list(sequences[i]) for i in idx], pad_id)
        tokens = tokens.to(device)
        lp = torch.log_softmax(fn(tokens)[:, :-1].float(), dim=-1)
        picked = lp.gather(-1, tokens[:, 1:, None])[..., 0]
        p = lp.exp()
        mu = (p * lp).sum(-1)
        var = ((p * lp.square()).sum(-1) - mu.square()).clamp(min=1e-6)
        picked, mu, sigma = picked.cpu().numpy(), mu.cpu().numpy(), var.sqrt().cpu().numpy()
        for row, i in enumerate(idx):
            n = int(lengths[row]) - 1
            out[i] = {"lp": picked[row, :n], "mu": mu[row, :n], "sigma": sigma[row, :n]}
    return out


@torch.no_grad()
def score_interventions(
    model, encoded: EncodedFacts, interventions: dict[str, list[tuple[str, Callable]]], device="cpu"
) -> dict[str, np.ndarray]:
    """Teacher-forced greedy exact match (bool ``[n_facts]``) of every fact of ``encoded`` under
    each intervention: ``name -> fwd_hooks`` of a TransformerLens model, as ``run_with_hooks``
    takes them (a hook is called as ``fn(activation, hook)``).

    An intervention with one hook at a block's output (``blocks.{l}.hook_resid_post``) runs only
    the blocks after ``l``, on the residual stream captured once per batch at ``l``
    (:func:`logits_after_block`); any other runs the whole hooked model. Both equal a whole
    hooked forward pass per intervention (right-padded batches need no attention mask), at
    about half the blocks for a sweep over blocks. Memory: one batch's residual stream at each
    captured block.
    """
    from forensics.compute.capture.spec import hook_block

    suffix = {
        name: hooks[0]
        for name, hooks in interventions.items()
        if len(hooks) == 1 and hook_block(hooks[0][0]) is not None
    }
    captured = sorted({hook for hook, _ in suffix.values()})
    last = max((cast(int, hook_block(h)) for h in captured), default=-1)
    out = {name: np.zeros(len(encoded), dtype=bool) for name in interventions}
    for k, ((_, tokens), (positions, _, _, _)) in enumerate(zip(encoded.batches, encoded.answer_index())):
        tokens = tokens.to(device)
        cache = {}
        if captured:
            _, cache = model.run_with_cache(tokens, names_filter=captured, stop_at_layer=last + 1)
        for name, hooks in interventions.items():
            if name in suffix:
                hook, fn = suffix[name]
                act = cache[hook].clone()  # a hook may write in place; the cache serves every intervention
                logits = logits_after_block(model, fn(act, None), cast(int, hook_block(hook)), positions)
            else:
                logits = logits_fn_for(model, hooks)(tokens, positions)
            order, hit, _, _ = encoded.batch_scores(k, logits)
            out[name][order] = hit
    return out
