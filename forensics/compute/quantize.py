"""Weight-only round-to-nearest quantization of a ``transformers`` model (in place).

Symmetric, one scale per output channel (row): ``scale = max|W_row| / qmax`` with
``qmax = 2**(bits-1) - 1`` (127 for int8, 7 for 4-bit), codes clamped to
``[-qmax-1, qmax]`` and de-quantized back to the weight's dtype for the forward pass.
Used by the quantization attack (Zhang et al. 2024) and the bench's perturbations.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric round-to-nearest of a ``[out_features, in_features]`` weight at ``bits`` bits,
    one scale per output channel (row), de-quantized to the weight's dtype (all-zero rows stay 0)."""
    qmax = 2 ** (bits - 1) - 1
    w = weight.float()
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale), -qmax - 1, qmax)
    return (q * scale).to(weight.dtype)


@torch.no_grad()
def quantize_model(model, bits: int, quantize_head: bool = False) -> list[str]:
    """Quantize the weight of every ``nn.Linear`` of ``model`` in place (biases untouched; the
    output head only with ``quantize_head``); returns the names of the layers quantized."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    done = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and (quantize_head or module is not head):
            module.weight.copy_(quantize_weight(module.weight, bits))
            done.append(name)
    return done
