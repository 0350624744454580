"""Free-text and multiple-choice behaviour measures (docs/methods.md, "Free-text knowledge").

- **ROUGE-L recall** of greedy generations against the answer (TOFU, 2024): the longest
  common subsequence of words over the answer's length, by the ``rouge-score`` package
  (no stemming). Generation: greedy, from the prompt tokenised as every score here
  (:func:`forensics.compute.scoring.encode_prompt`), at most ``max_new_tokens`` tokens, stopping at
  the tokenizer's EOS or at a newline.
- **Truth ratio** (TOFU): with ``P(a)`` the length-normalised likelihood of answer ``a``
  (the exponential of its mean per-token log-prob given the prompt), ``R = mean over
  perturbed answers of P(perturbed) / P(paraphrased answer)``; the true answer stands in
  where no paraphrase is given. Near 0: the model prefers the true answer; near 1 or above:
  it cannot tell it from wrong ones. Reported per fact as ``R``.
- **Choice accuracy** (WMDP): the choice with the highest answer log-prob is the correct one.

All functions take a TransformerLens or ``transformers`` model through
:func:`forensics.compute.scoring.logits_fn_for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import numpy as np
import torch

from forensics.compute.scoring import EncodedFacts, encode_prompt, logits_fn_for
from forensics.inputs.data import Fact


@torch.no_grad()
def greedy_generations(
    model,
    tokenizer,
    facts: Sequence[Fact],
    max_new_tokens: int = 32,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> list[str]:
    """Greedy continuation of each fact's prompt (decoded text, special tokens skipped, up to its
    first newline), at most ``max_new_tokens`` tokens, one string per fact.

    A TransformerLens model generates with a key/value cache over batches of prompts of mixed
    lengths, left-padded and masked (:func:`_cached_generations`); a ``transformers`` model (the
    zoo's oracle, the quantization attack) does the same through ``transformers``' own cached
    :meth:`generate` (:func:`_hf_cached_generations`). Both stop a row at EOS or at a newline."""
    if hasattr(model, "run_with_hooks"):
        return _cached_generations(model, tokenizer, facts, max_new_tokens, batch_size, device)
    return _hf_cached_generations(model, tokenizer, facts, max_new_tokens, batch_size, device)


def _finish(tokenizer, ids: list[int], eos: int | None) -> str:
    """The decoded text of generated ``ids`` up to EOS and up to its first newline."""
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos)]
    return tokenizer.decode(ids, skip_special_tokens=True).split("\n")[0]


class _Stops:
    """Which generated tokens end a row: EOS, or a token whose text holds a newline (memoised)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.eos = tokenizer, getattr(tokenizer, "eos_token_id", None)
        self.newline: dict[int, bool] = {}

    def __call__(self, token: int) -> bool:
        if token == self.eos:
            return True
        if token not in self.newline:
            self.newline[token] = "\n" in self.tokenizer.decode([token])
        return self.newline[token]

    def record(self, step: torch.Tensor, new: list[list[int]], done: list[bool]) -> None:
        """Append each row's next token ``step[r]`` to ``new[r]`` unless the row has stopped, and
        mark the rows this token stops."""
        for r, token in enumerate(step.tolist()):
            if not done[r]:
                new[r].append(token)
                done[r] = self(token)


def _cached_generations(model, tokenizer, facts, max_new_tokens: int, batch_size: int, device) -> list[str]:
    """Generation with TransformerLens' key/value cache: prompts sorted by length, batches of
    ``batch_size`` left-padded with an attention mask (TransformerLens shifts the positions of a
    padded row), one forward pass over the prompts and then one per new token; the final norm and
    unembedding run at the last position only. Rows that stopped are carried along until every
    row of the batch has."""
    from transformer_lens import TransformerLensKeyValueCache

    prompts = [encode_prompt(tokenizer, f.prompt) for f in facts]
    stops = _Stops(tokenizer)
    out: list[str] = [""] * len(facts)
    order = sorted(range(len(facts)), key=lambda i: (len(prompts[i]), i))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        tokens = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            tokens[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]) :] = 1
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, model.cfg.device, len(idx))
        new: list[list[int]] = [[] for _ in idx]
        done = [False] * len(idx)
        tokens, mask = tokens.to(device), mask.to(device)
        for _ in range(max_new_tokens):
            step = _next_tokens(model, tokens, mask, cache)
            stops.record(step, new, done)
            if all(done):
                break
            tokens, mask = step[:, None], torch.ones((len(idx), 1), dtype=torch.long, device=step.device)
        for r, i in enumerate(idx):
            out[i] = _finish(tokenizer, new[r], stops.eos)
    return out


def _next_tokens(model, tokens: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
    """The argmax next token after the last position of each row, ``[batch]``; feeds ``tokens``
    (with ``mask``) through the blocks and into ``cache``."""
    from transformer_lens.utilities.activation_functions import apply_softcap

    resid = model(tokens, attention_mask=mask, past_kv_cache=cache, stop_at_layer=model.cfg.n_layers)
    last = resid[:, -1:].to(model.unembed.W_U.device)
    if model.cfg.normalization_type is not None:
        last = model.ln_final(last)
    return apply_softcap(model.unembed(last), model.cfg.output_logits_soft_cap)[:, 0].argmax(-1)


class _RowStops:
    """A ``transformers`` stopping criterion: which rows' newest token ends them (:class:`_Stops`),
    ``[batch]`` bool, so :meth:`generate` pads finished rows and ends when every row has."""

    def __init__(self, stops: _Stops):
        self.stops = stops

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        return torch.tensor([self.stops(t) for t in last], dtype=torch.bool, device=input_ids.device)


def _hf_cached_generations(model, tokenizer, facts, max_new_tokens: int, batch_size: int, device) -> list[str]:
    """Generation by ``transformers``' own :meth:`generate` with its key/value cache: prompts
    sorted by length, batches of ``batch_size`` left-padded with an attention mask (``generate``
    derives the position ids from it), greedy (no sampling, one beam), each row stopped by
    :class:`_RowStops`. The model's own ``generation_config`` is set aside for the call, so a
    checkpoint's ``generation_config.json`` (sampling, repetition penalty, its EOS ids, banned
    words) never changes what is measured: ``generate`` fills unset fields from it."""
    from transformers import GenerationConfig, StoppingCriteriaList

    prompts = [encode_prompt(tokenizer, f.prompt) for f in facts]
    stops = _Stops(tokenizer)
    pad = stops.eos if stops.eos is not None else 0
    config = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=pad, use_cache=True
    )
    criteria = StoppingCriteriaList([_RowStops(stops)])
    own, model.generation_config = model.generation_config, GenerationConfig()
    try:
        return _generate_batches(model, tokenizer, prompts, stops, config, criteria, batch_size, device)
    finally:
        model.generation_config = own


def _generate_batches(model, tokenizer, prompts, stops: _Stops, config, criteria, batch_size: int, device) -> list[str]:
    """The batches of :func:`_hf_cached_generations`: decoded text per prompt."""
    pad = config.pad_token_id
    out: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        tokens = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            tokens[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]) :] = 1
        generated = model.generate(
            input_ids=tokens.to(device),
            attention_mask=mask.to(device),
            generation_config=config,
            stopping_criteria=criteria,
        )[:, width:]
        for r, i in enumerate(idx):
            new: list[int] = []
            for token in generated[r].tolist():
                new.append(token)
                if stops(token):
                    break
            out[i] = _finish(tokenizer, new, stops.eos)
    return out


def rouge_l_recall(answers: Sequence[str], generations: Sequence[str]) -> np.ndarray:
    """ROUGE-L recall of each generation against its answer (``rouge-score``, no stemmer),
    float ``[n]`` in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(a, g)["rougeL"].recall for a, g in zip(answers, generations)], dtype=float)


def _mean_token_logprobs(model, tokenizer, facts: Sequence[Fact], device) -> np.ndarray:
    encoded = EncodedFacts(tokenizer, facts)
    total = encoded.score(logits_fn_for(model), device).logprob
    lengths = np.array([max(1, len(a)) for _, a in encoded.encoded], dtype=float)
    return total / lengths


def truth_ratios(model, tokenizer, facts: Sequence[Fact], device: str | torch.device = "cpu") -> np.ndarray:
    """TOFU's truth ratio per fact with perturbed answers (see the module docstring); NaN for a
    fact without them. Float ``[n]``."""
    out = np.full(len(facts), np.nan)
    rows = [i for i, f in enumerate(facts) if f.perturbed_answers]
    if not rows:
        return out
    reference = [replace(facts[i], answer=facts[i].paraphrased_answer or facts[i].answer) for i in rows]
    wrong = [
        (k, replace(facts[i], answer=p))
        for k, i in enumerate(rows)
        for p in cast("tuple[str, ...]", facts[i].perturbed_answers)
    ]
    ref_lp = _mean_token_logprobs(model, tokenizer, reference, device)
    wrong_lp = _mean_token_logprobs(model, tokenizer, [f for _, f in wrong], device)
    owner = np.array([k for k, _ in wrong])
    for k, i in enumerate(rows):
        out[i] = float(np.exp(wrong_lp[owner == k] - ref_lp[k]).mean())
    return out


def choice_correct(model, tokenizer, facts: Sequence[Fact], device: str | torch.device = "cpu") -> np.ndarray:
    """Per multiple-choice fact: whether the highest-log-prob choice is ``choices[answer_index]``
    (float 1/0); NaN for a fact without choices. Float ``[n]``."""
    out = np.full(len(facts), np.nan)
    rows = [i for i, f in enumerate(facts) if f.choices]
    options = [
        (k, c, replace(facts[i], answer=choice))
        for k, i in enumerate(rows)
        for c, choice in enumerate(cast("tuple[str, ...]", facts[i].choices))
    ]
    if not options:
        return out
    lp = EncodedFacts(tokenizer, [f for _, _, f in options]).score(logits_fn_for(model), device).logprob
    owner = np.array([k for k, _, _ in options])
    for k, i in enumerate(rows):
        out[i] = float(int(np.argmax(lp[owner == k])) == facts[i].answer_index)
    return out
