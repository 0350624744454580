"""Does the hooked model compute what the checkpoint computes? A logit comparison with
``transformers``, on a fixed text or on the user's own prompts.

An audit of a wrongly loaded model is a wrong audit: a Llama checkpoint with linear RoPE
scaling loaded as if unscaled, or with its attention biases dropped, gives logits off by
several units with nothing failing. :func:`forensics.inputs.families.unmapped_fields` names such
fields before the load; :func:`logit_disagreement` catches whatever else differs after it.
"""

from __future__ import annotations

import torch

#: Largest logit difference (in units of the largest logit magnitude, at least 1) allowed
#: between the hooked model and ``transformers`` on the agreement check, per dtype.
LOGIT_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 1e-2}
#: The text whose tokens the agreement check feeds both models (its first 32 tokens).
AGREEMENT_TEXT = (
    "The quick brown fox jumps over the lazy dog while seven bright stars glow above "
    "the calm water, and 0123456789 counts the hours."
)


@torch.no_grad()
def logit_disagreement(model, hf_model, tokenizer, device: str, rows: list[list[int]] | None = None) -> float:
    """Largest absolute difference between the hooked model's and the ``transformers``
    model's logits, each position's logits centred on their mean (a shift changes no
    probability), divided by ``max(1, largest |centred logit|)`` of ``transformers``: 0 for
    identical computations, NaN or inf when either model's logits are not finite. Over token
    ``rows`` (default: :data:`AGREEMENT_TEXT`), each cut to 32 tokens. Raises
    :class:`forensics.core.errors.ForensicsInputError` when the two vocabularies differ in width."""
    from forensics.core.errors import ForensicsInputError

    rows = rows or [tokenizer(AGREEMENT_TEXT, add_special_tokens=False)["input_ids"]]
    worst = 0.0
    for ids in rows:
        tokens = torch.tensor([list(ids)[: min(32, model.cfg.n_ctx)]], device=device)
        ours = model(tokens).float().cpu()
        theirs = hf_model(tokens.cpu()).logits.float()
        if ours.shape != theirs.shape:
            raise ForensicsInputError(
                f"the hooked model's logits have shape {tuple(ours.shape)}, transformers' {tuple(theirs.shape)}"
            )
        ours, theirs = ours - ours.mean(-1, keepdim=True), theirs - theirs.mean(-1, keepdim=True)
        gap = float((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1.0))
        if gap != gap:  # NaN (an overflow) must not be lost to max()
            return gap
        worst = max(worst, gap)
    return worst


def prompt_agreement(loaded, prompts: list[str]) -> float:
    """:func:`logit_disagreement` of a loaded model (:class:`forensics.inputs.loading.LoadedModel`)
    against a fresh float32 ``transformers`` copy of its checkpoint, on ``prompts`` tokenised as
    the audit feeds them (:func:`forensics.compute.scoring.encode_prompt`). Raises
    :class:`forensics.core.errors.ForensicsInputError` beyond :data:`LOGIT_TOLERANCE` for the
    model's dtype, with the difference, unless the model's load already found its half-precision
    gap to be rounding (``loaded.rounding``) and the same weights in float32 agree on the prompts."""
    from forensics.compute.scoring import encode_prompt
    from forensics.core.errors import ForensicsInputError
    from forensics.inputs.loading import load_hf_model, load_model, resolve_dtype

    hf_model = load_hf_model(loaded.path)
    rows = [encode_prompt(loaded.tokenizer, p) for p in prompts]
    gap = logit_disagreement(loaded.model, hf_model, loaded.tokenizer, loaded.device, rows)
    tolerance = LOGIT_TOLERANCE.get(resolve_dtype(loaded.dtype), LOGIT_TOLERANCE[torch.float32])
    if not gap <= tolerance and loaded.rounding is not None:  # half-precision rounding, as at load
        exact = load_model(loaded.origin or loaded.path, loaded.device, "float32")
        if (
            logit_disagreement(exact.model, hf_model, loaded.tokenizer, loaded.device, rows)
            <= LOGIT_TOLERANCE[torch.float32]
        ):
            return gap
    if not gap <= tolerance:
        raise ForensicsInputError(
            f"{loaded.path}: on your prompts the hooked model's logits differ from transformers' by {gap:.2g} "
            f"of the logit scale (tolerance {tolerance:g} in {loaded.dtype}); the audit would read another model"
        )
    return gap
