"""Loader: logits equal to transformers', dtypes, and every refusal the issue lists."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ARCHS, make_checkpoint, train_test_tokenizer
from forensics.errors import ForensicsInputError
from forensics.loading import check_pair, load_hf_model, load_model


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_transformers(tiny_checkpoints, test_tokenizer, arch):
    path = tiny_checkpoints[arch]
    hooked = load_model(path)
    reference = load_hf_model(path)
    ids = test_tokenizer(["the quick brown fox jumps over", "seven bright stars glow"], padding=True)["input_ids"]
    tokens = torch.tensor(ids)
    with torch.no_grad():
        diff = (hooked.model(tokens) - reference(tokens).logits).abs().max().item()
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
        tokenizer_object=Tokenizer.from_str(json.dumps(swapped)), pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )
    swapped_ckpt = make_checkpoint(tmp_path / "swapped", "gpt-neox", tokenizer=tok2)
    with pytest.raises(ForensicsInputError, match="vocabularies differ"):
        check_pair(neox, load_model(swapped_ckpt))
