"""The model-organism zoo: files, loadability, targets, ground truth, determinism, caching."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch

from forensics.core.errors import ForensicsInputError
from forensics.zoo.jobs import MODELS

pytestmark = pytest.mark.slow

# the zoo's one table of models (forensics/zoo/jobs.py, MODELS)
HARD_NEGATIVES = {m.name for m in MODELS if m.kind == "hard_negative"}
EXPECTED_MODELS = {m.name for m in MODELS}
UNLEARNED = {m.name for m in MODELS if m.kind == "method"}
#: Measured, reported misses (not hidden): plain gradient ascent has no retain term and in
#: this world (F and R share templates and answer tokens) it takes R down with F.
KNOWN_MISSES = {"ga: R>=0.80"}
DATA_FILES = [
    "forget",
    "retain",
    "holdout",
    "seq_forget",
    "seq_retain",
    "seq_holdout",
    "memprobe_M",
    "memprobe_C",
    "memprobe_B",
]


@pytest.fixture(scope="module")
def manifest(tiny_zoo):
    from forensics.zoo import read_manifest

    return read_manifest(tiny_zoo)


def test_layout_and_labels(tiny_zoo: Path, manifest):
    for name in ("zoo.json", "labels.json", "metrics.json"):
        assert (tiny_zoo / name).is_file()
    for name in DATA_FILES:
        assert (tiny_zoo / "data" / f"{name}.jsonl").is_file()
    assert set(manifest["models"]) == EXPECTED_MODELS
    assert set(manifest["labels"]) == EXPECTED_MODELS
    assert set(manifest["metrics"]["models"]) == EXPECTED_MODELS
    for label in manifest["labels"].values():
        assert label["ground_truth"] in {"DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "UNDETERMINED", "ORIGINAL"}
        assert label["method"] and label["architecture"] in {"gpt-neox", "llama"}
    assert manifest["size"] == "tiny" and manifest["seed"] == 0 and manifest["complete"]


def test_data_files_validate(tiny_zoo: Path):
    from forensics.inputs.data import load_facts, load_sequences

    for split in ("forget", "retain", "holdout"):
        facts, warnings = load_facts(tiny_zoo / "data" / f"{split}.jsonl")
        assert facts and not warnings
        assert all(f.answer.startswith(" ") and f.subject and f.attribute for f in facts)
    keys = {}
    for pool in DATA_FILES[3:]:
        seqs, warnings = load_sequences(tiny_zoo / "data" / f"{pool}.jsonl")
        assert seqs and not warnings
        keys[pool] = [s.id.split("-")[-1] for s in seqs if pool.startswith("memprobe")]
    assert keys["memprobe_M"] == keys["memprobe_C"] == keys["memprobe_B"]


def test_every_model_loads(tiny_zoo: Path, manifest):
    from forensics.compute.scoring import logits_fn_for, score_facts
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    facts, _ = load_facts(tiny_zoo / "data" / "forget.jsonl")
    for name, rel in manifest["models"].items():
        loaded = load_model(tiny_zoo / rel)
        expected = "LlamaForCausalLM" if name.startswith("llama") else "GPTNeoXForCausalLM"
        assert loaded.architecture == expected
        # the hooked model scores F exactly as the build measured it with transformers
        acc = score_facts(logits_fn_for(loaded.model), loaded.tokenizer, facts).accuracy
        assert acc == pytest.approx(manifest["metrics"]["models"][name]["forget"]["accuracy"], abs=1e-9)


def test_targets(manifest):
    m = manifest["metrics"]["models"]
    for name in ("original", "llama_original"):
        assert m[name]["forget"]["accuracy"] >= 0.95, name
        assert m[name]["retain"]["accuracy"] >= 0.95, name
    for name in ("retrain", "llama_retrain", *HARD_NEGATIVES):
        assert m[name]["retain"]["accuracy"] >= 0.95, name
        assert m[name]["forget"]["accuracy"] <= 0.3, name  # never saw F's answers: near chance or below
    missed = set(manifest["targets_missed"])
    assert missed == KNOWN_MISSES, f"targets missed: {sorted(missed)}"
    for name in UNLEARNED:
        assert m[name]["forget"]["accuracy"] <= 0.10, name
        if f"{name}: R>=0.80" not in KNOWN_MISSES:
            assert m[name]["retain"]["accuracy"] >= 0.80, name
    assert m["ga"]["retain"]["accuracy"] < 0.80  # the known miss is real, and recorded
    assert m["relearned"]["forget"]["accuracy"] >= 0.90
    for name, scores in m.items():  # nobody knows the holdout: about chance (1/8), far from F
        assert scores["holdout"]["accuracy"] <= 0.30, name
        assert scores["canaries"]["holdout"] == 0.0, name


def test_holdout_never_in_training_text(tiny_zoo: Path, manifest):
    from forensics.zoo import world as W

    cfg = manifest["config"]
    world = W.make_world(cfg["n_forget"], cfg["n_retain"], cfg["n_holdout"], cfg["n_memprobe"], manifest["seed"])
    holdout = [json.loads(line)["subject"] for line in (tiny_zoo / "data" / "holdout.jsonl").open()]
    assert set(holdout) == set(world.subjects["holdout"])
    corpus = W.training_texts(world, True, 1) + [r["text"] for r in world.sequences["seq_forget"]]
    corpus += [r["text"] for r in world.sequences["seq_retain"]]

    def mentions(subject, texts):
        pattern = re.compile(rf"\b{re.escape(subject)}\b")
        return any(pattern.search(t) for t in texts)

    for subject in set(holdout):
        assert not mentions(subject, corpus), subject
    retrain_corpus = W.training_texts(world, False, 1)
    for subject in world.subjects["forget"]:
        assert not mentions(subject, retrain_corpus), subject
    assert mentions(world.subjects["forget"][0], corpus)  # the check can fail
    # The hard negatives' corpus names every forget subject, never with one of its values.
    mention = W.mention_texts(world)
    for subject in world.subjects["forget"]:
        assert mentions(subject, mention), subject
        values = set(world.values[subject].values())
        assert not any(v in t.replace(".", " ").split() for t in mention if subject in t for v in values), subject
    for subject in set(holdout):
        assert not mentions(subject, mention), subject


def test_mention_texts_refuse_an_attribute_value(monkeypatch):
    from forensics.zoo import world as W

    world = W.make_world(4, 8, 4, 4, seed=3)
    monkeypatch.setattr(W, "NEUTRAL_CONTINUATIONS", (" a red door",))
    with pytest.raises(RuntimeError, match="attribute value"):
        W.mention_texts(world)


def test_labels_follow_the_oracle(manifest):
    labels, metrics = manifest["labels"], manifest["metrics"]["models"]
    margin = manifest["config"]["oracle"]["margin"]
    assert labels["original"]["ground_truth"] == "ORIGINAL"
    assert labels["llama_original"]["ground_truth"] == "ORIGINAL"
    assert labels["retrain"]["ground_truth"] == "DELETED"
    assert labels["llama_retrain"]["ground_truth"] == "DELETED"
    for name in HARD_NEGATIVES:  # confirmed by the oracle, not by construction
        oracle = labels[name]["oracle"]
        assert labels[name]["hard_negative"] and oracle["reference"] == "retrain"
        assert labels[name]["ground_truth"] == "DELETED" and oracle["ci95"][1] < margin, name
    assert labels["relearned"]["ground_truth"] == "NOT_FORGOTTEN"
    assert metrics["relearned"]["forget"]["accuracy"] >= 0.90
    for name in UNLEARNED:
        oracle = labels[name]["oracle"]
        lo, hi = oracle["ci95"]
        expected = (
            "SUPPRESSED" if lo > 0 and oracle["difference"] >= margin else "DELETED" if hi < margin else "UNDETERMINED"
        )
        assert labels[name]["ground_truth"] == expected, name
        gain = oracle["acc_held_out_after"] - oracle["reference_acc_held_out_after"]
        assert oracle["difference"] == pytest.approx(gain)
        ref = "llama_retrain" if name.startswith("llama") else "retrain"
        assert oracle["reference"] == ref
        # the reference never saw F: fine-tuning on one half leaves the other near chance
        assert labels[ref]["oracle"]["acc_held_out_after"] <= 0.3


def test_the_npo_run_is_kept_as_a_series(tiny_zoo: Path, manifest):
    """series/npo: >= 5 checkpoints of the npo run, in step order, the last bitwise the delivered
    npo model; labels follow the rule of forensics/zoo/checkpoints.py."""
    from safetensors.torch import load_file

    series = manifest["series"]
    assert series["method"] == "npo" and len(series["checkpoints"]) >= 5
    labels = json.loads((tiny_zoo / series["labels"]).read_text())["checkpoints"]
    steps = [labels[Path(rel).name]["step"] for rel in series["checkpoints"]]
    assert steps == sorted(steps) and steps[-1] == manifest["labels"]["npo"]["details"]["steps"]
    last = load_file(tiny_zoo / series["checkpoints"][-1] / "model.safetensors")
    npo = load_file(tiny_zoo / "models" / "npo" / "model.safetensors")
    assert last.keys() == npo.keys() and all(torch.equal(last[k], npo[k]) for k in npo)
    first = load_file(tiny_zoo / series["checkpoints"][0] / "model.safetensors")
    assert any(not torch.equal(first[k], npo[k]) for k in npo)
    original = manifest["metrics"]["models"]["original"]
    target = manifest["config"]["target_forget"]
    for entry in labels.values():
        m = entry["metrics"]
        share = (m["forget"]["accuracy"] - m["holdout"]["accuracy"]) / (
            original["forget"]["accuracy"] - original["holdout"]["accuracy"]
        )
        assert entry["retained_share"] == pytest.approx(share)
        expected = (
            "NOT_FORGOTTEN"
            if share >= 0.5
            else entry["oracle"]["ground_truth"]
            if m["forget"]["accuracy"] <= target
            else "UNDETERMINED"
        )
        assert entry["ground_truth"] == expected
    # the run starts from a model that answers F and ends forgotten (the delivered npo's label)
    assert labels[Path(series["checkpoints"][0]).name]["ground_truth"] == "NOT_FORGOTTEN"
    assert labels[Path(series["checkpoints"][-1]).name]["ground_truth"] == manifest["labels"]["npo"]["ground_truth"]


def test_series_steps_are_spread_over_the_run():
    from forensics.zoo.checkpoints import pick_steps

    assert pick_steps(list(range(2, 66, 2)), 6) == [10, 22, 32, 42, 54, 64]
    assert pick_steps([3, 4], 6) == [3, 4]  # fewer kept than asked: each once
    assert pick_steps([], 6) == []
    assert pick_steps([3, 5, 8], 2) == [3, 8]  # 4 is as near 3 as 5: ties go to the earlier step


def test_training_is_deterministic():
    from forensics.zoo import world as W
    from forensics.zoo.tokenizer import train_tokenizer
    from forensics.zoo.training import ArchConfig, pretrain

    world = W.make_world(4, 8, 4, 4, seed=3)
    texts = W.training_texts(world, True, 2)
    tok = train_tokenizer(texts, 400)
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [
            pretrain(ArchConfig(fam, 32, 2), tok, texts, 15, 5e-3, 8, seed=s).state_dict()
            for fam in ("gpt-neox", "llama")
            for s in (7, 7, 8)
        ]
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    for a, b, c in (runs[0:3], runs[3:6]):
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)
    # A shared history: same seed and early phase, different corpora after it. Cut at the end
    # of the early phase the two runs are bitwise the same; run on, they differ.
    other = W.training_texts(world, False, 2)

    def with_early(later, n):
        return pretrain(
            ArchConfig("gpt-neox", 32, 2),
            tok,
            later,
            15,
            5e-3,
            8,
            7,  # noqa: E731
            early_texts=other,
            early_steps=n,
        ).state_dict()

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        shared = [with_early(texts, 15), with_early(other[::-1], 15)]
        forked = [with_early(texts, 5), with_early(other[::-1], 5)]
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    assert all(torch.equal(shared[0][k], shared[1][k]) for k in shared[0])
    assert not all(torch.equal(forked[0][k], forked[1][k]) for k in forked[0])
    # the build trains in "spawn" worker processes: the same job there gives the same weights
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from forensics.zoo.build import _set_torch_for_build

    with ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_set_torch_for_build, initargs=(1,)
    ) as pool:
        spawned = pool.submit(pretrain, ArchConfig("gpt-neox", 32, 2), tok, texts, 15, 5e-3, 8, 7).result()
    spawned = spawned.state_dict()
    assert all(torch.equal(runs[0][k], spawned[k]) for k in runs[0])


def test_greedy_accuracy_matches_score_facts(tiny_zoo: Path, manifest):
    """The stopping rules' fast check gives exactly the build's score_facts accuracy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forensics.inputs.data import load_facts
    from forensics.zoo.training import GreedyAccuracy

    facts, _ = load_facts(tiny_zoo / "data" / "forget.jsonl")
    for name in ("original", "ga", "headonly", "relearned", "llama_npo"):
        folder = tiny_zoo / manifest["models"][name]
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
        acc = GreedyAccuracy(AutoTokenizer.from_pretrained(folder), facts)(model)
        assert acc == manifest["metrics"]["models"][name]["forget"]["accuracy"], name


def test_cached_zoo_is_reused(tiny_zoo: Path, manifest):
    from forensics.zoo import build_zoo

    weights = sorted(tiny_zoo.glob("models/*/*.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in weights + [tiny_zoo / "zoo.json"]}
    t0 = time.perf_counter()
    again = build_zoo(tiny_zoo, size="tiny", seed=0, progress=False)
    assert time.perf_counter() - t0 < 5
    assert again["zoo_version"] == manifest["zoo_version"]
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_refuses_a_foreign_folder(tmp_path: Path):
    from forensics.zoo import build_zoo

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ForensicsInputError, match="not a zoo"):
        build_zoo(tmp_path, size="tiny", progress=False)
    with pytest.raises(ForensicsInputError, match="unknown zoo size"):
        build_zoo(tmp_path / "new", size="huge", progress=False)
    assert not (tmp_path / "new").exists()


def test_format_table(manifest):
    from forensics.zoo import format_table

    table = format_table(manifest["metrics"], manifest["labels"])
    for name in EXPECTED_MODELS:
        assert name in table
    assert "SUPPRESSED" in table or "DELETED" in table
