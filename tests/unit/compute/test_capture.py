"""Activation capture: positions, padding, hook filtering, and the on-disk cache."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ARCHS, make_checkpoint

from forensics.compute.capture import (
    MANIFEST,
    Activations,
    CaptureSpec,
    cache_key,
    capture,
    capture_facts,
    resid_hooks,
)
from forensics.compute.scoring import encode_facts
from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import Fact
from forensics.inputs.loading import load_model

# Different lengths (1 to ~20 tokens), so batches are padded.
PROMPTS = [
    "the quick brown fox jumps over a lazy dog while seven bright stars glow",
    "calm water",
    "a lazy dog",
    "seven bright stars glow above calm water while the quick brown fox jumps over",
    "fox",
    "the dog jumps",
]
SUBJECTS = ["brown fox", "calm", "lazy dog", "stars", "fox", "dog"]
TOL = 1e-5


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    return {arch: load_model(path) for arch, path in tiny_checkpoints.items()}


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory, test_tokenizer):
    """A Llama whose tokenizer prepends a BOS token itself (positions shift by one)."""
    import copy

    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(test_tokenizer)
    bos_id = tok.convert_tokens_to_ids("<eos>")
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<eos> $A", special_tokens=[("<eos>", bos_id)])
    folder = make_checkpoint(tmp_path_factory.mktemp("bos") / "llama-bos", "llama", tokenizer=tok)
    return load_model(folder)


def reference(loaded, prompt: str, hooks, position: int | None):
    """Activations of one unpadded prompt via run_with_cache (an independent path)."""
    ids = loaded.tokenizer(prompt)["input_ids"]
    _, cache = loaded.model.run_with_cache(torch.tensor([ids]), names_filter=list(hooks))
    if position is None:
        return {h: cache[h][0] for h in hooks}
    return {h: cache[h][0, position] for h in hooks}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", ["final", "subject", "all"])
def test_batched_matches_one_by_one(models, arch, position):
    loaded = models[arch]
    spec = CaptureSpec(resid_hooks(loaded.n_layers), position)
    batched = capture(loaded, PROMPTS, spec, subjects=SUBJECTS, batch_size=4, shard_size=5)
    for i, prompt in enumerate(PROMPTS):
        single = capture(loaded, [prompt], spec, subjects=[SUBJECTS[i]], batch_size=1)
        for hook in spec.hooks:
            if position == "all":
                got = batched.tokens_of(hook, i)
            else:
                got = batched[hook][i : i + 1]
            assert got.shape == single[hook].shape
            assert (got - single[hook]).abs().max().item() <= TOL, (arch, position, hook, i)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_final_token_matches_run_with_cache(models, arch):
    loaded = models[arch]
    hooks = ("hook_embed", "blocks.0.hook_resid_pre") + resid_hooks(loaded.n_layers)[1:]
    acts = capture(loaded, PROMPTS, CaptureSpec(hooks, "final"), batch_size=4)
    for i, prompt in enumerate(PROMPTS):
        ref = reference(loaded, prompt, hooks, -1)
        for hook in hooks:
            assert acts[hook].dtype == torch.float32
            assert torch.allclose(acts[hook][i], ref[hook], atol=TOL), (hook, i)
    assert acts.positions.tolist() == [len(loaded.tokenizer(p)["input_ids"]) - 1 for p in PROMPTS]


def test_positions_align_with_behaviour_encoding(bos_model):
    facts = [Fact(prompt=p, answer=" water", subject=s) for p, s in zip(PROMPTS, SUBJECTS)]
    encoded = encode_facts(bos_model.tokenizer, facts)
    assert all(ids[0] == bos_model.tokenizer.convert_tokens_to_ids("<eos>") for ids, _ in encoded)
    acts = capture_facts(bos_model, facts, CaptureSpec(("blocks.1.hook_resid_post",), "final"))
    assert acts.prompt_lengths.tolist() == [len(ids) for ids, _ in encoded]
    assert acts.positions.tolist() == [len(ids) - 1 for ids, _ in encoded]


@pytest.mark.parametrize("which", ["plain", "bos"])
def test_subject_position_is_subjects_last_token(models, bos_model, which):
    loaded = models["gpt-neox"] if which == "plain" else bos_model
    tok = loaded.tokenizer
    hooks = resid_hooks(loaded.n_layers)
    acts = capture(loaded, PROMPTS, CaptureSpec(hooks, "subject"), subjects=SUBJECTS, batch_size=3)
    for i, (prompt, subject) in enumerate(zip(PROMPTS, SUBJECTS)):
        # Manual tokenisation: the subject ends on a word boundary here, so the prompt's
        # prefix up to the subject's end tokenises to the prompt's first tokens.
        end = prompt.index(subject) + len(subject)
        prefix_ids = tok(prompt[:end])["input_ids"]
        assert tok(prompt)["input_ids"][: len(prefix_ids)] == prefix_ids
        expected = len(prefix_ids) - 1
        assert acts.positions[i].item() == expected, (prompt, subject)
        ref = reference(loaded, prompt, hooks, expected)
        for hook in hooks:
            assert torch.allclose(acts[hook][i], ref[hook], atol=TOL)


def test_subject_errors(models):
    loaded = models["gpt2"]
    spec = CaptureSpec(("blocks.0.hook_resid_post",), "subject")
    with pytest.raises(ForensicsInputError, match="not found"):
        capture(loaded, ["the quick brown fox"], spec, subjects=["lazy dog"])
    with pytest.raises(ForensicsInputError, match="subject"):
        capture(loaded, ["the quick brown fox"], spec)
    with pytest.raises(ForensicsInputError, match="no subject"):
        capture(loaded, ["the quick brown fox"], spec, subjects=[None])
    with pytest.raises(ForensicsInputError, match="subjects given"):
        capture(loaded, ["the quick brown fox", "calm water"], spec, subjects=["fox"])


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_all_mode_returns_every_real_token_and_no_pad(models, arch):
    loaded = models[arch]
    hooks = resid_hooks(loaded.n_layers)
    acts = capture(loaded, PROMPTS, CaptureSpec(hooks, "all"), batch_size=4)
    lengths = [len(loaded.tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert acts.prompt_lengths.tolist() == lengths
    assert acts.token_offsets.tolist() == [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    for hook in hooks:
        assert acts[hook].shape == (sum(lengths), loaded.model.cfg.d_model)
    for i, prompt in enumerate(PROMPTS):
        ref = reference(loaded, prompt, hooks, None)
        for hook in hooks:
            assert torch.allclose(acts.tokens_of(hook, i), ref[hook], atol=TOL)


def test_only_requested_hooks_are_hooked_and_kept(models, monkeypatch):
    loaded = models["llama"]
    model = loaded.model
    seen = []
    original = model.forward

    def spy(*args, **kwargs):
        seen.append(([name for name, hp in model.hook_dict.items() if hp.fwd_hooks], kwargs.get("stop_at_layer")))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    hooks = ("blocks.0.hook_resid_post", "blocks.0.hook_mlp_out")
    acts = capture(loaded, PROMPTS, CaptureSpec(hooks, "final"), batch_size=4)
    assert set(acts.hooks) == set(hooks) and set(acts.to_dict()) == set(hooks)
    assert "blocks.1.hook_resid_post" not in acts
    with pytest.raises(KeyError):
        acts["blocks.1.hook_resid_post"]
    assert seen and all(sorted(names) == sorted(hooks) and stop == 1 for names, stop in seen)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())  # hooks removed afterwards


def test_bad_hooks_are_input_errors(models):
    loaded = models["gpt2"]
    with pytest.raises(ForensicsInputError, match="unknown hook"):
        capture(loaded, PROMPTS, CaptureSpec(("blocks.9.hook_resid_post",)))
    with pytest.raises(ForensicsInputError, match=r"\[batch, pos, d\]"):
        capture(loaded, PROMPTS, CaptureSpec(("blocks.0.attn.hook_pattern",)))
    with pytest.raises(ForensicsInputError, match="context"):
        capture(loaded, [" ".join(["fox"] * 200)], CaptureSpec(("blocks.0.hook_resid_post",)))
    with pytest.raises(ForensicsInputError, match="position"):
        CaptureSpec(("blocks.0.hook_resid_post",), "middle")
    assert not any(hp.fwd_hooks for hp in loaded.model.hook_dict.values())


def _forbid_forward(monkeypatch, model):
    def boom(*args, **kwargs):
        raise AssertionError("the model was run although the capture is cached")

    monkeypatch.setattr(model, "forward", boom)


@pytest.mark.parametrize("position", ["final", "all"])
def test_cache_is_reused_without_running_the_model(models, tmp_path, monkeypatch, position):
    loaded = models["gpt-neox"]
    spec = CaptureSpec(resid_hooks(loaded.n_layers), position)
    first = capture(loaded, PROMPTS, spec, batch_size=2, shard_size=4, cache_dir=tmp_path)
    assert not first.from_cache and (first.cache_path / MANIFEST).is_file()
    assert len(list(first.cache_path.glob("shard-*.safetensors"))) == 2
    assert not list(tmp_path.rglob("*.tmp"))
    memory = capture(loaded, PROMPTS, spec, batch_size=3)
    _forbid_forward(monkeypatch, loaded.model)
    second = capture(loaded, PROMPTS, spec, batch_size=2, shard_size=4, cache_dir=tmp_path)
    assert second.from_cache and second.cache_path == first.cache_path
    for hook in spec.hooks:
        assert torch.equal(second[hook], first[hook])
        assert torch.allclose(second[hook], memory[hook], atol=TOL)
    assert torch.equal(second.prompt_lengths, memory.prompt_lengths)
    if position == "all":
        assert torch.equal(second.token_offsets, memory.token_offsets)
    else:
        assert torch.equal(second.positions, memory.positions)


def test_interrupted_capture_leaves_no_valid_cache_and_resumes(models, tmp_path, monkeypatch):
    loaded = models["gpt2"]
    model = loaded.model
    prompts = PROMPTS + ["the fox jumps", "glow above", "seven stars", "a quick dog"]  # 10: shards 4, 4, 2
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
    expected = capture(loaded, prompts, spec, batch_size=4)
    original = model.forward
    calls = []

    def crash_in_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # shard 0 is 2 batches of 2; the 3rd batch belongs to shard 1
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", crash_in_second_shard)
    with pytest.raises(RuntimeError, match="simulated crash"):
        capture(loaded, prompts, spec, batch_size=2, shard_size=4, cache_dir=tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert not (folder / MANIFEST).exists()
    assert (folder / "shard-00000.safetensors").is_file()
    assert not (folder / "shard-00001.safetensors").exists()
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
    # What a kill during a write could leave: a stray temp file, and a truncated shard.
    (folder / ".shard-00001.safetensors.abc.tmp").write_bytes(b"\x00" * 10)
    good = (folder / "shard-00000.safetensors").read_bytes()
    (folder / "shard-00002.safetensors").write_bytes(good[: len(good) // 2])

    calls.clear()
    monkeypatch.setattr(model, "forward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    resumed = capture(loaded, prompts, spec, batch_size=2, shard_size=4, cache_dir=tmp_path)
    assert len(calls) == 3  # shards 1 (2 batches) and 2 (1 batch); shard 0 reused
    assert not resumed.from_cache and (folder / MANIFEST).is_file()
    for hook in spec.hooks:
        assert torch.allclose(resumed[hook], expected[hook], atol=TOL)
    assert torch.equal(resumed.positions, expected.positions)

    _forbid_forward(monkeypatch, model)
    again = capture(loaded, prompts, spec, batch_size=2, shard_size=4, cache_dir=tmp_path)
    assert again.from_cache
    # A manifest naming a shard whose size changed is not trusted.
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [s["file"] for s in manifest["shards"]] == [f"shard-0000{i}.safetensors" for i in range(3)]
    with open(folder / "shard-00002.safetensors", "ab") as handle:
        handle.write(b"junk")
    monkeypatch.setattr(model, "forward", original)
    redone = capture(loaded, prompts, spec, batch_size=2, shard_size=4, cache_dir=tmp_path)
    assert not redone.from_cache
    assert torch.allclose(redone.layer(1), expected.layer(1), atol=TOL)


def test_cache_key_changes_with_weights_data_and_spec(models, tmp_path, test_tokenizer):
    loaded = models["gpt-neox"]
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
    key = cache_key(loaded, PROMPTS, spec)
    assert cache_key(loaded, list(PROMPTS), CaptureSpec(tuple(spec.hooks), "final")) == key
    # the same checkpoint loaded again from a folder with another name: the same key
    import shutil

    copy = shutil.copytree(loaded.path, tmp_path / "renamed-copy")
    assert cache_key(load_model(copy), PROMPTS, spec) == key
    other = load_model(make_checkpoint(tmp_path / "gpt-neox-seed1", "gpt-neox", seed=1, tokenizer=test_tokenizer))
    assert other.weights_hash != loaded.weights_hash
    assert cache_key(other, PROMPTS, spec) != key
    assert cache_key(loaded, PROMPTS[:-1] + ["the dog jumps!"], spec) != key
    assert cache_key(loaded, PROMPTS, CaptureSpec(spec.hooks[:-1], "final")) != key
    assert cache_key(loaded, PROMPTS, CaptureSpec(spec.hooks, "all")) != key
    assert cache_key(loaded, PROMPTS, spec, shard_size=7) != key
    subject_spec = CaptureSpec(spec.hooks, "subject")
    assert cache_key(loaded, PROMPTS, subject_spec, SUBJECTS) != cache_key(
        loaded, PROMPTS, subject_spec, SUBJECTS[:-1] + ["the"]
    )
    # and a changed model really gets its own folder
    a = capture(loaded, PROMPTS, spec, cache_dir=tmp_path / "cache")
    b = capture(other, PROMPTS, spec, cache_dir=tmp_path / "cache")
    assert a.cache_path != b.cache_path and not b.from_cache
    assert not torch.allclose(a.layer(1), b.layer(1))


def test_lower_precision_model_stores_float32(tiny_checkpoints):
    loaded = load_model(tiny_checkpoints["llama"], dtype="bfloat16")
    acts = capture(loaded, PROMPTS, CaptureSpec(resid_hooks(loaded.n_layers), "final"), batch_size=4)
    assert isinstance(acts, Activations)
    assert acts.layer(1).dtype == torch.float32 and acts.layer(1).shape == (len(PROMPTS), 64)
    assert torch.isfinite(acts.layer(1)).all()


def test_activations_are_ordinary_tensors_for_autograd(models):
    loaded = models["gpt2"]
    acts = capture(loaded, PROMPTS, CaptureSpec(resid_hooks(loaded.n_layers), "final"))
    weight = torch.zeros(loaded.model.cfg.d_model, 2, requires_grad=True)
    (acts.layer(1) @ weight).sum().backward()  # an inference-mode tensor would raise here
    assert weight.grad is not None and not acts.layer(1).requires_grad
