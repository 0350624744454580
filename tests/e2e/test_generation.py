"""Generation with a key/value cache over left-padded batches of mixed prompt lengths gives the
generations of the earlier code (equal-length batches, the sequence recomputed at each token,
kept here as the reference) on the free-text zoo's models; a ``transformers`` model, through
``transformers``' own cached ``generate``, gives the same text as the reference and as its hooked
twin, whatever its checkpoint's generation settings say."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forensics.compute.freetext import greedy_generations
from forensics.compute.scoring import encode_prompt, logits_fn_for, pad_right
from forensics.inputs.data import load_facts
from forensics.inputs.loading import load_model


@torch.no_grad()
def _reference_generations(model, tokenizer, facts, max_new_tokens, batch_size=32, device="cpu"):
    """The generation code before the key/value cache (commit 9d19345), unchanged."""
    logits_fn = logits_fn_for(model)
    prompts = [encode_prompt(tokenizer, f.prompt) for f in facts]
    eos = getattr(tokenizer, "eos_token_id", None)
    out = [""] * len(facts)
    by_length = {}
    for i, ids in enumerate(prompts):
        by_length.setdefault(len(ids), []).append(i)
    for _length, members in sorted(by_length.items()):
        for start in range(0, len(members), batch_size):
            idx = members[start : start + batch_size]
            tokens, _ = pad_right([prompts[i] for i in idx], 0)
            tokens = tokens.to(device)
            new = torch.zeros((len(idx), 0), dtype=torch.long, device=device)
            done = torch.zeros(len(idx), dtype=torch.bool, device=device)
            for _ in range(max_new_tokens):
                last = torch.full((len(idx), 1), tokens.shape[1] - 1, dtype=torch.long, device=device)
                step = logits_fn(tokens, last)[:, 0].argmax(-1)
                new = torch.cat([new, step[:, None]], 1)
                tokens = torch.cat([tokens, step[:, None]], 1)
                if eos is not None:
                    done |= step == eos
                if bool(done.all()):
                    break
            for r, i in enumerate(idx):
                ids = new[r].tolist()
                if eos is not None and eos in ids:
                    ids = ids[: ids.index(eos)]
                out[i] = tokenizer.decode(ids, skip_special_tokens=True).split("\n")[0]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["original", "npo", "retrain", "llama_original"])
def test_cached_generation_equals_the_reference(bio_zoo: Path, name):
    loaded = load_model(bio_zoo / "models" / name)
    facts = []
    for split in ("forget", "holdout"):
        facts += load_facts(bio_zoo / "data" / f"{split}.jsonl", loaded.tokenizer)[0]
    # prompts of several lengths: batches mix them
    assert len({len(encode_prompt(loaded.tokenizer, f.prompt)) for f in facts}) > 3
    new = greedy_generations(loaded.model, loaded.tokenizer, facts, max_new_tokens=24, batch_size=16)
    old = _reference_generations(loaded.model, loaded.tokenizer, facts, 24)
    assert new == old
    assert sum(bool(g.strip()) for g in new) > len(new) // 2  # the model writes answers, not nothing


@pytest.mark.slow
def test_a_transformers_model_generates_the_same_text(bio_zoo: Path):
    from transformers import AutoModelForCausalLM

    loaded = load_model(bio_zoo / "models" / "original")
    hf = AutoModelForCausalLM.from_pretrained(bio_zoo / "models" / "original").eval()
    facts = []
    for split in ("forget", "holdout"):
        facts += load_facts(bio_zoo / "data" / f"{split}.jsonl", loaded.tokenizer)[0]
    assert len({len(encode_prompt(loaded.tokenizer, f.prompt)) for f in facts}) > 3
    reference = _reference_generations(hf, loaded.tokenizer, facts, 24)
    # a checkpoint's own generation settings would change the text if generate used them
    own = hf.generation_config
    written = loaded.tokenizer(next(g for g in reference if g.strip()), add_special_tokens=False)["input_ids"]
    own.repetition_penalty, own.no_repeat_ngram_size, own.eos_token_id = 5.0, 2, written[0]
    generated = greedy_generations(hf, loaded.tokenizer, facts, 24, batch_size=16)
    assert hf.generation_config is own
    assert generated == reference
    assert generated == greedy_generations(loaded.model, loaded.tokenizer, facts, 24)
    assert sum(bool(g.strip()) for g in generated) > len(generated) // 2
