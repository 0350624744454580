"""Shared fixtures: tiny random-init checkpoints of every supported family, and the tiny zoo.

The tiny zoo is built once per test session (``forensics zoo build --size tiny``) and
shared by every test that needs trained models with known ground truth.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # scripts/test.sh runs one pytest-xdist worker per CPU: one torch thread each (and in the
    # audits and notebooks they start), so that the workers do not oversubscribe the cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    torch.set_num_threads(1)

# tests/unit mirrors the package folder by folder; tests/e2e holds the end-to-end tests.
# The repository root goes on sys.path, so that a plain `pytest` (not only `python -m pytest`)
# imports the working tree's `forensics`; spawned worker processes inherit sys.path.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.append(ROOT)
WORDS = "the quick brown fox jumps over a lazy dog while seven bright stars glow above calm water".split()


def train_test_tokenizer(vocab_size: int = 300):
    """A small byte-level BPE tokenizer (the zoo's trainer) on a fixed word list."""
    from forensics.zoo.tokenizer import train_tokenizer

    return train_tokenizer([" ".join(WORDS)] * 20, vocab_size)


#: A Llama-2-chat-style template that starts with the BOS text, as Llama-2's does.
CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"


def bos_tokenizer(template: str | None = CHAT_TEMPLATE):
    """The test tokenizer with a ``<s>`` BOS that it adds to every text (as Llama's does)."""
    from tokenizers import processors

    tok = train_test_tokenizer()
    tok.add_special_tokens({"bos_token": "<s>"})
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    if template:
        tok.chat_template = template
    return tok


def make_checkpoint(folder: Path, arch: str, seed: int = 0, tokenizer=None, d_model: int = 64) -> Path:
    """Write a random-init checkpoint folder (safetensors + tokenizer) of one family."""
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        GemmaConfig,
        GemmaForCausalLM,
        GPT2Config,
        GPT2LMHeadModel,
        GPTJConfig,
        GPTJForCausalLM,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Olmo2Config,
        Olmo2ForCausalLM,
        OlmoConfig,
        OlmoForCausalLM,
        OPTConfig,
        OPTForCausalLM,
        Phi3Config,
        Phi3ForCausalLM,
        PhiConfig,
        PhiForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    tokenizer = tokenizer or train_test_tokenizer()
    vocab = len(tokenizer)
    configs = {
        "gpt-neox": lambda: GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=4 * d_model,
                max_position_embeddings=128,
                rotary_pct=0.25,
            )
        ),
        "gpt2": lambda: GPT2LMHeadModel(
            GPT2Config(vocab_size=vocab, n_embd=d_model, n_layer=2, n_head=4, n_positions=128)
        ),
        "llama": lambda: LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
            )
        ),
        "mistral": lambda: MistralForCausalLM(
            MistralConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
                sliding_window=4,
            )
        ),
        "qwen2": lambda: Qwen2ForCausalLM(
            Qwen2Config(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
            )
        ),
        "phi": lambda: PhiForCausalLM(
            PhiConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=4 * d_model,
                max_position_embeddings=128,
                partial_rotary_factor=0.5,
            )
        ),
        "phi3": lambda: Phi3ForCausalLM(
            Phi3Config(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
                sliding_window=4,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        "qwen3": lambda: Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=d_model // 4,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
            )
        ),
        "gemma": lambda: GemmaForCausalLM(
            GemmaConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=1,
                head_dim=d_model // 4,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        "gemma2": lambda: Gemma2ForCausalLM(
            Gemma2Config(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=d_model // 4,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
                query_pre_attn_scalar=d_model // 4,
                sliding_window=4,
                attn_logit_softcapping=0.5,
                final_logit_softcapping=2.0,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        "olmo": lambda: OlmoForCausalLM(
            OlmoConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
                clip_qkv=0.5,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        "olmo2": lambda: Olmo2ForCausalLM(
            Olmo2Config(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=2 * d_model,
                max_position_embeddings=128,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        "opt": lambda: OPTForCausalLM(
            OPTConfig(
                vocab_size=vocab,
                hidden_size=d_model,
                num_hidden_layers=2,
                num_attention_heads=4,
                ffn_dim=4 * d_model,
                max_position_embeddings=128,
                word_embed_proj_dim=d_model,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
        "gptj": lambda: GPTJForCausalLM(
            GPTJConfig(
                vocab_size=vocab,
                n_embd=d_model,
                n_layer=2,
                n_head=4,
                n_positions=128,
                rotary_dim=8,
                bos_token_id=1,
                eos_token_id=2,
            )
        ),
    }
    torch.manual_seed(seed)
    model = configs[arch]().eval()
    with torch.no_grad():  # random but non-degenerate weights (norms away from identity)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


ARCHS = (
    "gpt-neox",
    "gpt2",
    "llama",
    "mistral",
    "qwen2",
    "phi",
    "phi3",
    "qwen3",
    "gemma",
    "gemma2",
    "olmo",
    "olmo2",
    "opt",
    "gptj",
)


@pytest.fixture(scope="session")
def test_tokenizer():
    return train_test_tokenizer()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, test_tokenizer) -> dict[str, Path]:
    """One random-init checkpoint folder per supported family."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {arch: make_checkpoint(root / arch, arch, tokenizer=test_tokenizer) for arch in ARCHS}


def _shared_zoo(tmp_path_factory, env: str, name: str, **kwargs) -> Path:
    """Build (or reuse) one tiny zoo for the whole test session.

    ``env`` names a variable that, when set, gives the folder to build or reuse (a developer
    re-running tests does not rebuild the zoo each time; a build is reused when its code version
    matches). Under pytest-xdist every worker process asks for the zoo: it is built once, in a
    folder all workers of the session share, under a file lock, and the other workers reuse it.
    """
    from filelock import FileLock

    from forensics.zoo import build_zoo

    reuse = os.environ.get(env)
    if reuse:
        out = Path(reuse)
    else:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            base = base.parent  # the session's folder, above each worker's own
        out = base / name / "tiny"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out.parent / ".build.lock")):
        build_zoo(out, size="tiny", seed=0, progress=False, **kwargs)
    return out


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    """The tiny model-organism zoo, built once per session (``FORENSICS_TEST_ZOO=DIR``: build or
    reuse it there)."""
    return _shared_zoo(tmp_path_factory, "FORENSICS_TEST_ZOO", "zoo")


@pytest.fixture(scope="session")
def bio_zoo(tmp_path_factory) -> Path:
    """The tiny zoo of the free-text bio world, built once per session
    (``FORENSICS_TEST_BIO_ZOO=DIR``: build or reuse it there)."""
    return _shared_zoo(tmp_path_factory, "FORENSICS_TEST_BIO_ZOO", "bio", world="bio")


#: Fixtures that train models: a test that uses one (directly or through another fixture) is
#: end to end.
TRAINING_FIXTURES = {"tiny_zoo", "bio_zoo"}


def pytest_collection_modifyitems(config, items):
    """Mark every test under ``tests/e2e/``, every test that uses a zoo fixture and every test
    marked ``slow`` as ``e2e``; ``pytest -m "not e2e"`` is the fast tier (no zoo is built)."""
    for item in items:
        path = Path(str(item.fspath))
        uses_zoo = TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))
        if "e2e" in path.parts or uses_zoo or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.e2e)
