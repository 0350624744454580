"""Zoo model construction and pre-training (the fine-tuning loop is :mod:`forensics.compute.finetune`).

Batches are short right-padded token sequences; no attention mask is needed because
right padding never changes the logits of real positions in a causal model, and pad
positions carry label -100. Every random choice (init, batch order) comes from an
explicit seed, and the build runs under ``torch.use_deterministic_algorithms(True)``
with a fixed thread count, so the same seed gives bitwise-identical weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from forensics.compute.finetune import Sampler, encode_texts, nll, run_steps
from forensics.compute.scoring import EncodedFacts, logits_fn_for
from forensics.inputs.data import Fact


@dataclass
class ArchConfig:
    """Shape of one zoo architecture."""

    #: Model family: "gpt-neox" or "llama".
    family: str
    #: Residual stream width (hidden size); the MLP is 4x (GPT-NeoX) or 2x (Llama) as wide.
    d_model: int
    #: Transformer blocks.
    n_layers: int
    #: Attention heads (Llama: half as many key-value heads, at least 1).
    n_heads: int = 4
    #: Longest sequence in tokens (max_position_embeddings).
    max_positions: int = 64


def make_model(arch: ArchConfig, tokenizer, seed: int):
    """A freshly initialised GPT-NeoX or Llama causal LM (no dropout, untied head, eager
    attention), seeded with ``seed``. Raises ``ValueError`` for another family."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    common: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=arch.d_model,
        num_hidden_layers=arch.n_layers,
        num_attention_heads=arch.n_heads,
        max_position_embeddings=arch.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch.family == "gpt-neox":
        config = GPTNeoXConfig(
            intermediate_size=4 * arch.d_model,
            rotary_pct=0.25,  # pyright: ignore[reportCallIssue]
            hidden_dropout=0.0,
            attention_dropout=0.0,
            use_parallel_residual=True,
            **common,
        )
        model = GPTNeoXForCausalLM(config)
    elif arch.family == "llama":
        config = LlamaConfig(
            intermediate_size=2 * arch.d_model,
            num_key_value_heads=max(1, arch.n_heads // 2),
            attention_dropout=0.0,
            **common,
        )
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(f"unknown family {arch.family!r}")
    model.config._attn_implementation = "eager"
    return model


def blocks(model) -> list[torch.nn.Module]:
    """The transformer blocks of a zoo model (GPT-NeoX or Llama), in order."""
    inner = model.gpt_neox if hasattr(model, "gpt_neox") else model.model
    return list(inner.layers)


def head_modules(model) -> list[torch.nn.Module]:
    """The final norm and the unembedding of a zoo model (GPT-NeoX or Llama)."""
    inner = model.gpt_neox if hasattr(model, "gpt_neox") else model.model
    norm = inner.final_layer_norm if hasattr(inner, "final_layer_norm") else inner.norm
    return [norm, model.get_output_embeddings()]


# ---------------------------------------------------------------------------- batches

# ---------------------------------------------------------------------------- training


def accuracy(model, tokenizer, facts: list[Fact]) -> float:
    """Greedy accuracy of ``model`` on ``facts`` (batches of 128), restoring its train/eval mode."""
    was_training = model.training
    model.eval()
    acc = EncodedFacts(tokenizer, facts, batch_size=128).accuracy(logits_fn_for(model))
    model.train(was_training)
    return acc


class GreedyAccuracy:
    """Greedy accuracy on one fixed fact list, tokenised once, for stopping rules that
    check it often: exactly ``accuracy(model, tokenizer, facts)``."""

    def __init__(self, tokenizer, facts: list[Fact], batch_size: int = 128):
        self.encoded = EncodedFacts(tokenizer, facts, batch_size)

    def __call__(self, model) -> float:
        was_training = model.training
        model.eval()
        acc = self.encoded.accuracy(logits_fn_for(model))
        model.train(was_training)
        return acc


def pretrain(
    arch: ArchConfig,
    tokenizer,
    texts: list[str],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    early_texts: list[str] | None = None,
    early_steps: int = 0,
):
    """Train a fresh model on ``texts`` for ``steps`` AdamW steps (full-sequence LM loss, 5%
    warm-up, linear decay); ``seed`` initialises the model, ``seed + 1`` orders the batches.

    With ``early_texts``, the first ``early_steps`` steps draw their batches from them instead
    (ordered by ``seed + 2``): two runs with the same seed, the same early corpus and the same
    ``steps`` are bitwise the same up to step ``early_steps``, whatever ``texts`` they go on with
    (a shared training history)."""
    model = make_model(arch, tokenizer, seed)
    sampler = Sampler(encode_texts(tokenizer, texts), batch_size, seed + 1)
    early = Sampler(encode_texts(tokenizer, early_texts), batch_size, seed + 2) if early_texts else None

    def loss(step: int):
        source = early if early is not None and step < early_steps else sampler
        return nll(model, source.next())

    run_steps(model, list(model.parameters()), loss, steps, lr, warmup=max(1, steps // 20), decay=True)
    return model
