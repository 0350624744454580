"""Chat-formatted prompts: render every fact's prompt with the checkpoint's own chat template.

Chat models are fine-tuned (and unlearned) on prompts in their template: TOFU's Llama-2-chat
and Phi models saw ``[INST] question [/INST] answer``. An audit that feeds such a model the
bare question reads it off its training distribution. With ``--chat-template`` the prompt of
every forget, retain and holdout fact becomes the template rendered for one user turn with
the generation prompt, ``tokenizer.apply_chat_template([{"role": "user", "content":
prompt}], add_generation_prompt=True)``; the answer follows it unchanged. Sequence sets (raw
text) are not templated. The original model's template is used for both models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from forensics.compute.scoring import doubled_bos
from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import Fact

#: The stand-in prompt the report shows the template around.
PLACEHOLDER = "{prompt}"


def template_of(tokenizer) -> str | None:
    """The tokenizer's chat template (Jinja text), or None when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one
        template = template.get("default")
    return template or None


def render_prompt(tokenizer, prompt: str) -> str:
    """``prompt`` as one user turn in the tokenizer's chat template, with the generation
    prompt, as text. A leading BOS text is dropped when the tokenizer adds its own BOS, so
    the model sees one BOS. Raises :class:`ForensicsInputError` when the template fails."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    except Exception as err:  # noqa: BLE001 - a template that cannot render is bad input
        raise ForensicsInputError(f"the chat template cannot render a user turn: {err}") from None
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and doubled_bos(tokenizer, tokenizer(text)["input_ids"]):
        text = text[len(bos) :]
    return text


def templated(facts: Sequence[Fact], tokenizer) -> list[Fact]:
    """Each fact with its prompt rendered by :func:`render_prompt` (answer, subject and id kept)."""
    return [replace(f, prompt=render_prompt(tokenizer, f.prompt)) for f in facts]


def template_record(loaded) -> dict[str, Any]:
    """What the report records of the template used: the checkpoint it came from, the
    SHA-256 of its text, and the rendering of :data:`PLACEHOLDER`. Raises
    :class:`ForensicsInputError` when the checkpoint has no chat template."""
    template = template_of(loaded.tokenizer)
    if template is None:
        raise ForensicsInputError(
            f"--chat-template: {loaded.path} has no chat template (no chat_template in tokenizer_config.json "
            "and no chat_template.jinja)"
        )
    return {
        "source": str(loaded.path),
        "sha256": hashlib.sha256(template.encode()).hexdigest(),
        "example": render_prompt(loaded.tokenizer, PLACEHOLDER),
    }
