"""Loader: logits equal to transformers', dtypes, and every refusal the issue lists."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ARCHS, make_checkpoint, train_test_tokenizer

from forensics.core.errors import ForensicsInputError
from forensics.inputs.loading import check_pair, load_hf_model, load_model


@pytest.mark.parametrize("arch", ARCHS)
def test_residual_stream_and_logits_match_transformers(tiny_checkpoints, test_tokenizer, arch):
    path = tiny_checkpoints[arch]
    hooked = load_model(path)
    reference = load_hf_model(path)
    ids = test_tokenizer(
        ["the quick brown fox jumps over the lazy dog while seven bright stars", "seven bright stars glow"],
        padding=True,
    )["input_ids"]
    tokens = torch.tensor(ids)
    with torch.no_grad():
        logits, cache = hooked.model.run_with_cache(tokens)
        expected = reference(tokens, output_hidden_states=True)
    # hidden_states[l] is the residual stream entering block l (the last one is after the final norm)
    for layer in range(hooked.model.cfg.n_layers):
        resid = (cache[f"blocks.{layer}.hook_resid_pre"] - expected.hidden_states[layer]).abs().max().item()
        assert resid <= 1e-4, f"{arch}: residual stream entering block {layer} differs by {resid}"
    diff = (logits - expected.logits).abs().max().item()
    assert diff <= 1e-4, f"{arch}: max abs logit difference {diff}"
    assert hooked.architecture == reference.config.architectures[0]
    assert len(hooked.weights_hash) == 64


def test_bfloat16_load(tiny_checkpoints):
    loaded = load_model(tiny_checkpoints["llama"], dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert loaded.dtype == "bfloat16"


def test_cuda_without_gpu_is_a_clear_error(tiny_checkpoints):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ForensicsInputError, match="no CUDA device"):
        load_model(tiny_checkpoints["gpt2"], device="cuda")


def _copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True)
    for file in src.iterdir():
        if file.name not in skip:
            shutil.copy(file, dst / file.name)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(ForensicsInputError, match="model folder not found"):
        load_model(tmp_path / "nope")


def test_pickle_checkpoint_is_refused_and_never_opened(tmp_path, tiny_checkpoints):
    folder = _copy(tiny_checkpoints["gpt2"], tmp_path / "pickled", skip=("model.safetensors",))
    sentinel = tmp_path / "unpickled.txt"

    class Payload:  # unpickling this would create the sentinel file
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ForensicsInputError, match="pickle weights .* refused"):
        load_model(folder)
    assert not sentinel.exists()


def test_no_weights_at_all(tmp_path, tiny_checkpoints):
    folder = _copy(tiny_checkpoints["gpt2"], tmp_path / "empty", skip=("model.safetensors",))
    with pytest.raises(ForensicsInputError, match="no \\*.safetensors weights"):
        load_model(folder)


def test_unsupported_architecture_is_named_with_the_supported_list(tmp_path, tiny_checkpoints):
    folder = _copy(tiny_checkpoints["gpt2"], tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ForensicsInputError) as err:
        load_model(folder)
    message = str(err.value)
    assert "BertForMaskedLM" in message and "GPTNeoXForCausalLM" in message and "LlamaForCausalLM" in message


def test_missing_tokenizer(tmp_path, tiny_checkpoints):
    folder = _copy(tiny_checkpoints["gpt2"], tmp_path / "notok", skip=("tokenizer.json", "tokenizer_config.json"))
    with pytest.raises(ForensicsInputError, match="no tokenizer"):
        load_model(folder)


def test_truncated_safetensors(tmp_path, tiny_checkpoints):
    folder = _copy(tiny_checkpoints["gpt2"], tmp_path / "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ForensicsInputError, match="cannot load the weights"):
        load_model(folder)


def test_nan_weights(tmp_path, tiny_checkpoints):
    from safetensors.torch import load_file, save_file

    folder = _copy(tiny_checkpoints["gpt2"], tmp_path / "nan")
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ForensicsInputError, match="NaN"):
        load_model(folder)


def test_pair_mismatches(tmp_path, tiny_checkpoints):
    neox = load_model(tiny_checkpoints["gpt-neox"])
    check_pair(neox, load_model(tiny_checkpoints["gpt-neox"]))  # identical: fine
    with pytest.raises(ForensicsInputError, match="architectures differ"):
        check_pair(neox, load_model(tiny_checkpoints["llama"]))
    wider = make_checkpoint(tmp_path / "wider", "gpt-neox", d_model=128)
    with pytest.raises(ForensicsInputError, match="shapes differ: d_model"):
        check_pair(neox, load_model(wider))
    other_vocab = make_checkpoint(tmp_path / "vocab", "gpt-neox", tokenizer=train_test_tokenizer(vocab_size=290))
    with pytest.raises(ForensicsInputError, match="shapes differ: d_vocab|vocabularies differ"):
        check_pair(neox, load_model(other_vocab))
    # Same size, different tokens: a vocabulary mismatch proper.
    tok = train_test_tokenizer()
    vocab = tok.backend_tokenizer.to_str()
    swapped = json.loads(vocab)
    entries = swapped["model"]["vocab"]
    a, b = list(entries)[10], list(entries)[11]
    entries[a], entries[b] = entries[b], entries[a]
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok2 = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(swapped)),
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
    )
    swapped_ckpt = make_checkpoint(tmp_path / "swapped", "gpt-neox", tokenizer=tok2)
    with pytest.raises(ForensicsInputError, match="vocabularies differ"):
        check_pair(neox, load_model(swapped_ckpt))


def test_sharded_checkpoint_loads_and_a_leftover_single_file_is_refused(tmp_path, tiny_checkpoints):
    from forensics.inputs.loading import weight_files, weights_hash

    sharded = tmp_path / "sharded"
    load_hf_model(tiny_checkpoints["llama"]).save_pretrained(sharded, max_shard_size="100KB")
    for f in tiny_checkpoints["llama"].glob("tokenizer*"):
        shutil.copy(f, sharded / f.name)
    shards = weight_files(sharded)
    assert len(shards) > 1 and (sharded / "model.safetensors.index.json").is_file()
    single = load_model(tiny_checkpoints["llama"])
    assert torch.equal(load_model(sharded).model.W_E, single.model.W_E)
    before = weights_hash(sharded)
    shutil.copy(tiny_checkpoints["gpt2"] / "model.safetensors", sharded / "model.safetensors")
    with pytest.raises(ForensicsInputError, match="two weight layouts"):
        load_model(sharded)
    (sharded / "model.safetensors").unlink()
    assert weights_hash(sharded) == before  # the hash covers exactly the shards transformers loads


@pytest.mark.parametrize(
    "arch, field, value, named",
    [
        ("llama", "rope_scaling", {"rope_type": "linear", "factor": 4.0}, "rope_scaling (type linear)"),
        ("llama", "rope_scaling", {"rope_type": "dynamic", "factor": 2.0}, "rope_scaling (type dynamic)"),
        ("llama", "attention_bias", True, "attention_bias"),
        ("llama", "mlp_bias", True, "mlp_bias"),
        ("qwen3", "use_sliding_window", True, "use_sliding_window"),
        ("gemma2", "attention_bias", True, "attention_bias"),
        ("opt", "do_layer_norm_before", False, "do_layer_norm_before (false)"),
        ("phi", "qk_layernorm", True, "qk_layernorm"),
    ],
)
def test_config_fields_that_change_the_computation_are_refused_by_name(
    tmp_path, tiny_checkpoints, arch, field, value, named
):
    folder = _copy(tiny_checkpoints[arch], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ForensicsInputError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_model(folder)


def test_grouped_query_attention_is_refused_where_the_converter_has_none():
    from transformers import Olmo2Config, OlmoConfig

    from forensics.inputs.families import unmapped_fields

    for config_class in (OlmoConfig, Olmo2Config):
        config = config_class(
            num_attention_heads=4,
            num_key_value_heads=2,
            architectures=[config_class.__name__.replace("Config", "ForCausalLM")],
        )
        assert unmapped_fields(config) == ["num_key_value_heads (2 of 4 heads)"]
        assert unmapped_fields(config_class(num_attention_heads=4, architectures=config.architectures)) == []


def test_llama3_rope_scaling_is_mapped_not_refused(tmp_path, tiny_checkpoints):
    folder = _copy(tiny_checkpoints["llama"], tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["rope_scaling"] = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_model(folder)  # the agreement check passes: the scaling is mapped
    assert loaded.model.cfg.use_NTK_by_parts_rope


def test_logits_that_disagree_with_transformers_refuse_the_load(monkeypatch, tiny_checkpoints):
    import forensics.inputs.loading as loading

    mapped = loading.tl_config_dict

    def mis_mapped(hf_config):  # a field mapped wrongly, as an unknown one would be
        return mapped(hf_config) | {"rotary_base": 500.0}

    monkeypatch.setattr(loading, "tl_config_dict", mis_mapped)
    with pytest.raises(ForensicsInputError, match="logits differ from transformers"):
        load_model(tiny_checkpoints["llama"])


def test_half_precision_rounding_beyond_the_tolerance_is_told_from_a_wrong_mapping(monkeypatch, tiny_checkpoints):
    """A bfloat16 model that misses the load check's tolerance loads when the same weights in
    float32 pass (rounding: recorded in ``rounding`` and warned about in the audit's inputs), and
    is refused when they do not (a wrong mapping)."""
    import forensics.inputs.loading as loading
    from forensics.inputs.agreement import LOGIT_TOLERANCE
    from forensics.inputs.prepare import load_inputs

    monkeypatch.setitem(LOGIT_TOLERANCE, torch.bfloat16, 1e-9)  # every bfloat16 gap is now beyond it
    loaded = load_model(tiny_checkpoints["llama"], dtype="bfloat16")
    assert loaded.rounding is not None and loaded.rounding["gap"] > 1e-9
    assert loaded.rounding["float32_gap"] <= LOGIT_TOLERANCE[torch.float32]
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    inputs = load_inputs(tiny_checkpoints["llama"], dtype="bfloat16")
    assert any("half-precision rounding" in w and "original" in w for w in inputs.warnings)
    assert load_model(tiny_checkpoints["llama"]).rounding is None

    mapped = loading.tl_config_dict
    monkeypatch.setattr(loading, "tl_config_dict", lambda hf_config: mapped(hf_config) | {"rotary_base": 500.0})
    with pytest.raises(ForensicsInputError, match="logits differ from transformers"):
        load_model(tiny_checkpoints["llama"], dtype="bfloat16")


def test_float16_overflow_is_reported_not_silently_nan(tmp_path, tiny_checkpoints):
    from safetensors.torch import load_file, save_file

    folder = _copy(tiny_checkpoints["llama"], tmp_path / "m")
    tensors = load_file(folder / "model.safetensors")
    key = next(k for k in tensors if k.endswith("mlp.down_proj.weight"))
    tensors[key] = tensors[key] * 3e5  # fine in float32, beyond float16's 65504 in the residual stream
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    assert load_model(folder).model.cfg.dtype == torch.float32  # float32 loads and agrees
    with pytest.raises(ForensicsInputError, match="not finite in float16"):
        load_model(folder, dtype="float16")


def test_weights_transformers_would_not_load_are_refused(tmp_path, tiny_checkpoints):
    renamed = _copy(tiny_checkpoints["gpt2"], tmp_path / "renamed")
    (renamed / "model.safetensors").rename(renamed / "weights.safetensors")
    with pytest.raises(ForensicsInputError, match="neither model.safetensors nor"):
        load_model(renamed)
    empty_index = _copy(tiny_checkpoints["gpt2"], tmp_path / "index")
    (empty_index / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    with pytest.raises(ForensicsInputError, match="not a valid safetensors index"):
        load_model(empty_index)


def test_a_folder_with_only_tokenizer_json_loads_and_scores_the_same(tmp_path, tiny_checkpoints):
    from forensics.compute.scoring import logits_fn_for, score_facts
    from forensics.inputs.data import Fact

    folder = _copy(tiny_checkpoints["llama"], tmp_path / "m")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    assert sorted(p.name for p in folder.glob("tokenizer*")) == ["tokenizer.json"]
    bare, full = load_model(folder), load_model(tiny_checkpoints["llama"])
    facts = [Fact("the quick brown fox", " jumps"), Fact("seven bright", " stars")]
    scores = [score_facts(logits_fn_for(m.model), m.tokenizer, facts).logprob for m in (bare, full)]
    assert np.allclose(scores[0], scores[1], atol=1e-6)
