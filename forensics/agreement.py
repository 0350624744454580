"""Does the hooked model compute what the checkpoint computes? Config fields the loader does
not map, and a logit comparison with ``transformers`` on a fixed text.

An audit of a wrongly loaded model is a wrong audit: a Llama checkpoint with linear RoPE
scaling loaded as if unscaled, or with its attention biases dropped, gives logits off by
several units with nothing failing. :func:`unmapped_fields` names such fields before the
load; :func:`logit_disagreement` catches whatever else differs after it.
"""

from __future__ import annotations

import torch

def _rope_type(hf_config) -> str:
    rope = getattr(hf_config, "rope_scaling", None) or getattr(hf_config, "rope_parameters", None) or {}
    return str(rope.get("rope_type") or rope.get("type") or "default").lower() if isinstance(rope, dict) else "default"


def unmapped_fields(hf_config) -> list[str]:
    """Config fields of a supported ``transformers`` config that change what the model
    computes but that :func:`tl_config_dict` does not map (each as ``"field (value)"``):
    RoPE scaling other than Llama 3's, attention or MLP biases in the Llama layout. Empty
    when the config is fully mapped."""
    arch = hf_config.architectures[0]
    out = []
    rope = _rope_type(hf_config)
    if rope != "default" and not (arch == "LlamaForCausalLM" and rope == "llama3"):
        out.append(f"rope_scaling (type {rope})")
    if arch in ("LlamaForCausalLM", "MistralForCausalLM"):
        for field in ("attention_bias", "mlp_bias"):
            if getattr(hf_config, field, False):
                out.append(f"{field} (true)")
    return out


#: Largest logit difference (in units of the largest logit magnitude, at least 1) allowed
#: between the hooked model and ``transformers`` on the agreement check, per dtype.
LOGIT_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 1e-2}
#: The text whose tokens the agreement check feeds both models (its first 32 tokens).
AGREEMENT_TEXT = ("The quick brown fox jumps over the lazy dog while seven bright stars glow above "
                  "the calm water, and 0123456789 counts the hours.")


@torch.no_grad()
def logit_disagreement(model, hf_model, tokenizer, device: str) -> float:
    """Largest absolute difference between the hooked model's and the ``transformers``
    model's logits on :data:`AGREEMENT_TEXT` (at most 32 tokens), divided by
    ``max(1, largest |logit|)`` of ``transformers``: 0 for identical computations."""
    ids = tokenizer(AGREEMENT_TEXT, add_special_tokens=False)["input_ids"][: min(32, model.cfg.n_ctx)]
    tokens = torch.tensor([ids], device=device)
    ours = model(tokens).float().cpu()
    theirs = hf_model(tokens.cpu()).logits.float()[..., : ours.shape[-1]]
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1.0))
