"""Model families: each supported ``transformers`` config mapped to HookedTransformerConfig
fields, and the config fields that would change the computation without being mapped.

The mappings follow transformer-lens' own (``convert_hf_model_config``), read from the
checkpoint's config.json rather than from a hub name, and apply no weight processing. The
weights themselves go through transformer-lens' converter for the architecture (chosen by
``original_architecture``), which also switches on the family's own components (OLMo-2's
post-norm blocks and query/key norms, Gemma's scaled embeddings and ``1 + w`` norms).

A field this module does not map is refused by name (:func:`unmapped_fields`); anything it
maps wrongly is caught by the logit comparison in :mod:`forensics.inputs.agreement`.
"""

from __future__ import annotations

from typing import Any

from forensics.core.errors import ForensicsInputError

#: Hugging Face architecture name -> family name shown to users.
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "GPTNeoXForCausalLM": "GPT-NeoX (Pythia)",
    "GPT2LMHeadModel": "GPT-2",
    "LlamaForCausalLM": "Llama",
    "MistralForCausalLM": "Mistral",
    "Qwen2ForCausalLM": "Qwen2 / Qwen2.5",
    "Qwen3ForCausalLM": "Qwen3",
    "PhiForCausalLM": "Phi-1 / Phi-1.5 / Phi-2",
    "Phi3ForCausalLM": "Phi-3 / Phi-4-mini",
    "GemmaForCausalLM": "Gemma",
    "Gemma2ForCausalLM": "Gemma-2",
    "OlmoForCausalLM": "OLMo",
    "Olmo2ForCausalLM": "OLMo-2",
    "OPTForCausalLM": "OPT",
    "GPTJForCausalLM": "GPT-J",
}

#: Families in the Llama layout (RMSNorm, rotary, gated MLP), with their variations below.
_LLAMA_LAYOUT = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Phi3ForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "OlmoForCausalLM",
    "Olmo2ForCausalLM",
)
#: Families whose ``sliding_window`` applies to every layer (no ``layer_types``).
_WINDOW_EVERY_LAYER = ("MistralForCausalLM", "Phi3ForCausalLM")
#: Families whose transformer-lens weight converter reads keys and values with ``n_heads``
#: heads (no grouped-query attention).
_NO_GQA = ("OlmoForCausalLM", "Olmo2ForCausalLM")


def _rope_type(hf_config) -> str:
    rope = getattr(hf_config, "rope_scaling", None) or getattr(hf_config, "rope_parameters", None) or {}
    return str(rope.get("rope_type") or rope.get("type") or "default").lower() if isinstance(rope, dict) else "default"


def unmapped_fields(hf_config) -> list[str]:
    """Config fields of a supported ``transformers`` config that change what the model
    computes but that :func:`tl_config_dict` does not map, each as ``"field (value)"``: RoPE
    scaling other than Llama 3's, biases where the converter has none, Qwen's sliding
    window, Phi's query/key LayerNorm, grouped-query attention in OLMo, OPT-350m's post-norm
    blocks and embedding projection. Empty when the
    config is fully mapped."""
    arch = hf_config.architectures[0]
    out = []
    rope = _rope_type(hf_config)
    if rope != "default" and not (arch == "LlamaForCausalLM" and rope == "llama3"):
        out.append(f"rope_scaling (type {rope})")
    if arch in (
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "Qwen3ForCausalLM",
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "OlmoForCausalLM",
        "Olmo2ForCausalLM",
    ):
        for field in ("attention_bias", "mlp_bias"):
            if getattr(hf_config, field, False):
                out.append(f"{field} (true)")
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM") and getattr(hf_config, "use_sliding_window", False):
        out.append("use_sliding_window (true)")
    if arch == "PhiForCausalLM" and getattr(hf_config, "qk_layernorm", False):
        out.append("qk_layernorm (true)")
    if arch == "OPTForCausalLM":
        if not getattr(hf_config, "do_layer_norm_before", True):
            out.append("do_layer_norm_before (false)")
        if getattr(hf_config, "word_embed_proj_dim", hf_config.hidden_size) != hf_config.hidden_size:
            out.append(f"word_embed_proj_dim ({hf_config.word_embed_proj_dim})")
        if not getattr(hf_config, "enable_bias", True):
            out.append("enable_bias (false)")
    kv_heads = getattr(hf_config, "num_key_value_heads", None)
    if arch in _NO_GQA and kv_heads not in (None, hf_config.num_attention_heads):
        out.append(f"num_key_value_heads ({kv_heads} of {hf_config.num_attention_heads} heads)")
    return out


def tl_config_dict(hf_config) -> dict[str, Any]:
    """HookedTransformerConfig fields for a supported ``transformers`` config. Raises
    :class:`ForensicsInputError` for an architecture outside :data:`SUPPORTED_ARCHITECTURES`
    or a config field that :func:`unmapped_fields` names."""
    arch = hf_config.architectures[0]
    unmapped = unmapped_fields(hf_config)
    if unmapped:
        raise ForensicsInputError(
            f"config.json sets {', '.join(unmapped)}, which this loader does not map for {arch}: the hooked "
            "model would compute something other than the checkpoint does"
        )
    if arch == "GPT2LMHeadModel":
        return _gpt2(hf_config)
    if arch in ("GPTNeoXForCausalLM", "PhiForCausalLM"):
        return _neox(hf_config)
    if arch == "OPTForCausalLM":
        return _opt(hf_config)
    if arch == "GPTJForCausalLM":
        return _gptj(hf_config)
    if arch in _LLAMA_LAYOUT:
        return _llama_layout(hf_config, arch)
    raise ForensicsInputError(f"unsupported architecture {arch}")


def _gpt2_shape(c) -> dict[str, Any]:
    """The shape fields of a GPT-2-style config (``n_embd``, ``n_head``, ``n_layer``, ...),
    shared by GPT-2 and GPT-J."""
    return {
        "d_model": c.n_embd,
        "d_head": c.n_embd // c.n_head,
        "n_heads": c.n_head,
        "d_mlp": c.n_inner or 4 * c.n_embd,
        "n_layers": c.n_layer,
        "n_ctx": c.n_positions,
        "eps": c.layer_norm_epsilon,
        "d_vocab": c.vocab_size,
        "act_fn": c.activation_function,
        "use_local_attn": False,
        "normalization_type": "LN",
        "default_prepend_bos": False,
    }


def _gpt2(c) -> dict[str, Any]:
    return {
        **_gpt2_shape(c),
        "use_attn_scale": getattr(c, "scale_attn_weights", True),
        "scale_attn_by_inverse_layer_idx": c.scale_attn_by_inverse_layer_idx,
    }


def _opt(c) -> dict[str, Any]:
    return {
        "d_model": c.hidden_size,
        "d_head": c.hidden_size // c.num_attention_heads,
        "n_heads": c.num_attention_heads,
        "d_mlp": c.ffn_dim,
        "n_layers": c.num_hidden_layers,
        "n_ctx": c.max_position_embeddings,
        "eps": 1e-5,
        "d_vocab": c.vocab_size,
        "act_fn": c.activation_function,
        "use_attn_scale": True,
        "use_local_attn": False,
        "scale_attn_by_inverse_layer_idx": False,
        "normalization_type": "LN",
        "default_prepend_bos": False,
    }


def _gptj(c) -> dict[str, Any]:
    """GPT-J: LayerNorm, rotary on adjacent pairs of the first ``rotary_dim`` dimensions,
    parallel attention and MLP."""
    return {
        **_gpt2_shape(c),
        "use_attn_scale": True,
        "scale_attn_by_inverse_layer_idx": False,
        "parallel_attn_mlp": True,
        "positional_embedding_type": "rotary",
        "rotary_dim": c.rotary_dim or c.n_embd // c.n_head,
        "rotary_adjacent_pairs": True,
    }


def _neox(c) -> dict[str, Any]:
    """GPT-NeoX and Phi-1/1.5/2: LayerNorm, partial rotary, parallel attention and MLP."""
    from transformer_lens.loading_from_pretrained import _get_rope_theta
    from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

    d_head = c.hidden_size // c.num_attention_heads
    return {
        "d_model": c.hidden_size,
        "d_head": d_head,
        "n_heads": c.num_attention_heads,
        "d_mlp": c.intermediate_size,
        "n_layers": c.num_hidden_layers,
        "n_ctx": c.max_position_embeddings,
        "eps": c.layer_norm_eps,
        "d_vocab": c.vocab_size,
        "act_fn": c.hidden_act,
        "use_attn_scale": True,
        "use_local_attn": False,
        "scale_attn_by_inverse_layer_idx": False,
        "parallel_attn_mlp": getattr(c, "use_parallel_residual", True),
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": round(get_rotary_pct_from_config(c) * d_head),
        "rotary_base": _get_rope_theta(c),
        "normalization_type": "LN",
        "default_prepend_bos": False,
    }


def _llama_layout(c, arch: str) -> dict[str, Any]:
    """Llama and the families built on its layout, with each family's variation."""
    from transformer_lens.loading_from_pretrained import _apply_llama3_rope_scaling, _get_rope_theta
    from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

    head_dim = getattr(c, "head_dim", None)
    d_head = head_dim if head_dim else c.hidden_size // c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    n_layers = c.num_hidden_layers
    cfg = {
        "d_model": c.hidden_size,
        "d_head": d_head,
        "n_heads": c.num_attention_heads,
        "d_mlp": c.intermediate_size,
        "n_layers": n_layers,
        "n_ctx": c.max_position_embeddings,
        "eps": getattr(c, "rms_norm_eps", 1e-5),
        "d_vocab": c.vocab_size,
        "act_fn": getattr(c, "hidden_activation", None) or c.hidden_act,
        "n_key_value_heads": kv_heads if kv_heads != c.num_attention_heads else None,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": round(get_rotary_pct_from_config(c) * d_head),
        "rotary_base": _get_rope_theta(c),
        "final_rms": True,
        "gated_mlp": True,
        "default_prepend_bos": False,
    }
    window = getattr(c, "sliding_window", None)
    layer_types = getattr(c, "layer_types", None)
    local = None
    if arch in _WINDOW_EVERY_LAYER and window:
        local = [True] * n_layers
    elif arch == "Gemma2ForCausalLM" and window and layer_types:
        local = [t == "sliding_attention" for t in layer_types]
    if local and any(local):
        cfg.update(
            use_local_attn=True,
            window_size=window,
            attn_types=["local" if is_local else "global" for is_local in local],
        )
    if arch == "LlamaForCausalLM":
        _apply_llama3_rope_scaling(cfg, c)
    elif arch == "Qwen3ForCausalLM":
        cfg["use_qk_norm"] = True
    elif arch == "Gemma2ForCausalLM":
        cfg.update(
            attn_scale=float(c.query_pre_attn_scalar) ** 0.5,
            attn_scores_soft_cap=c.attn_logit_softcapping or -1.0,
            output_logits_soft_cap=c.final_logit_softcapping or -1.0,
            use_normalization_before_and_after=True,
        )
    elif arch == "OlmoForCausalLM":
        # OLMo's LayerNorm has no parameters (the converter writes ones and zeros).
        cfg.update(normalization_type="LN", eps=1e-5, final_rms=False, clip_qkv=getattr(c, "clip_qkv", None))
    return cfg
