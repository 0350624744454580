"""GGUF input: tiny GGUF files written here with the ``gguf`` package from a random-init Llama
checkpoint (no download), one in float32 and one quantized (Q8_0), audited as the checkpoint
``transformers`` dequantizes them to."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from forensics.core.errors import ForensicsInputError
from forensics.inputs.gguf import describe, gguf_file
from forensics.inputs.loading import load_model, weights_hash
from tests.conftest import make_checkpoint


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's order of the rotary halves in q / k rows (transformers undoes it on reading)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(
    folder: Path, out: Path, quant: str = "F32", architecture: str = "llama", chat_template: str | None = None
) -> Path:
    """A GGUF file of the Llama checkpoint in ``folder`` (weights, config and its byte-level BPE
    tokenizer, and ``chat_template`` when given), tensors in F32 or quantized with ``quant`` (the
    2-d weights)."""
    import gguf
    from gguf.quants import quantize
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    for added in tok.get("added_tokens", []):
        assert vocab[added["id"]][0] == added["content"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    specials = {t["id"] for t in tok.get("added_tokens", [])}
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(out), architecture)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    theta = (config.get("rope_parameters") or {}).get("rope_theta") or config.get("rope_theta", 10000.0)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(len(vocab))
    writer.add_rope_dimension_count(config["hidden_size"] // n_head)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t for t, _ in vocab])
    writer.add_token_types([3 if i in specials else 1 for i in range(len(vocab))])
    writer.add_token_merges(merges)
    ids = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    writer.add_eos_token_id(ids["<eos>"])
    writer.add_pad_token_id(ids["<pad>"])
    writer.add_unk_token_id(ids["<unk>"])
    if chat_template:
        writer.add_chat_template(chat_template)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    qtype = getattr(gguf.GGMLQuantizationType, quant)
    for name, tensor in load_file(folder / "model.safetensors").items():
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            part = rest.removesuffix(".weight")
            target = f"blk.{i}.{parts[part]}.weight"
        else:
            target = names[name]
        data = tensor.float().numpy()
        if target.endswith("attn_q.weight"):
            data = _permute(data, n_head)
        elif target.endswith("attn_k.weight"):
            data = _permute(data, n_kv)
        if data.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(target, quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(target, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("gguf") / "llama", "llama", d_model=64)


@pytest.fixture(autouse=True)
def _gguf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FORENSICS_GGUF_CACHE", str(tmp_path / "gguf-cache"))


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))


def test_a_float32_gguf_is_the_checkpoint_it_was_written_from(llama, tmp_path):
    file = write_gguf(llama, tmp_path / "tiny.gguf")
    loaded = load_model(file)
    safetensors = load_model(llama)
    ids = safetensors.tokenizer("the quick brown fox jumps over")["input_ids"]
    assert loaded.tokenizer("the quick brown fox jumps over")["input_ids"] == ids
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(safetensors.model, ids), atol=1e-4, rtol=1e-4)
    assert loaded.name == "tiny" and loaded.origin == file
    assert loaded.weights_hash == weights_hash(file) == weights_hash(tmp_path)  # the file, or its folder
    digest = hashlib.sha256(file.name.encode() + file.read_bytes()).hexdigest()
    assert loaded.weights_hash == digest
    assert loaded.source["format"] == "GGUF" and loaded.source["quantization"] == "F32"


def test_a_quantized_gguf_loads_dequantized_and_says_so(llama, tmp_path):
    file = write_gguf(llama, tmp_path / "q8.gguf", quant="Q8_0")
    assert describe(file)["quantization"] == "Q8_0"
    loaded = load_model(file)
    safetensors = load_model(llama)
    ids = safetensors.tokenizer("seven bright stars glow")["input_ids"]
    q, f = _logits(loaded.model, ids), _logits(safetensors.model, ids)
    assert not torch.equal(q, f) and (q - f).abs().max() < 0.05 * f.abs().max()  # 8-bit rounding, no more
    assert loaded.source["loaded_as"] == "dequantized to float32 by transformers"
    again = load_model(file)  # the conversion is reused
    assert again.path == loaded.path


def test_bad_gguf_inputs_are_one_line_errors(llama, tmp_path):
    two = tmp_path / "two"
    two.mkdir()
    write_gguf(llama, two / "a.gguf")
    write_gguf(llama, two / "b.gguf")
    with pytest.raises(ForensicsInputError, match="holds 2 GGUF files"):
        gguf_file(two)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(write_gguf(llama, tmp_path / "whole.gguf").read_bytes()[:2000])
    with pytest.raises(ForensicsInputError, match="not a readable GGUF file"):
        load_model(broken)
    other = write_gguf(llama, tmp_path / "other.gguf", architecture="rwkv6")
    with pytest.raises(ForensicsInputError, match="transformers cannot read"):
        load_model(other)
