"""The real-base zoo (forensics/zoo/base.py): its pure parts, and the whole build and bench on
the code path a pretrained base takes, from a tiny random-init Llama written as a GGUF file with a
chat template (no download)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from forensics.core.errors import ForensicsInputError
from forensics.zoo.base import BASE_MODELS, BaseZooConfig, _order, base_labels, build_base_zoo, perturbed_facts
from forensics.zoo.bio import make_bio_world
from forensics.zoo.build import _facts
from forensics.zoo.oracle import OracleConfig

#: A template of the ChatML kind (SmolLM2's): a system turn, the user turn, the assistant's start.
TEMPLATE = (
    "<sys> helper\n{% for m in messages %}<user> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<bot>{% endif %}"
)


def test_perturbed_facts_keep_the_question_and_frame_and_change_the_value():
    world = make_bio_world(4, 4, 4, 4, 0)
    facts = _facts(world.facts("forget"))
    wrong = perturbed_facts(world, facts)
    assert len(wrong) == len(facts)
    for f, w in zip(facts, wrong):
        key, value = str(f.key), str(w.key)
        assert w.prompt == f.prompt and w.subject == f.subject and w.id == f.id
        assert value != key and value in w.answer and key not in w.answer
        assert w.answer.replace(value, "@") == f.answer.replace(key, "@")  # the same sentence frame
        assert any(value in p for p in f.perturbed_answers or ())  # one of the world's wrong values


def test_perturbed_facts_of_the_closed_world_give_each_fact_another_value_of_its_attribute():
    from forensics.zoo.world import ATTRIBUTES, make_world

    world = make_world(4, 4, 4, 4, 0)
    facts = _facts(world.facts("forget"))
    wrong = perturbed_facts(world, facts)
    for f, w in zip(facts, wrong):
        assert w.prompt == f.prompt and w.answer != f.answer and w.answer.strip() in ATTRIBUTES[str(f.attribute)]
    by_fact = {}
    for f, w in zip(facts, wrong):  # one wrong value for every template of a fact
        by_fact.setdefault((f.subject, f.attribute), set()).add(w.answer)
    assert all(len(v) == 1 for v in by_fact.values())


def test_a_model_brings_the_models_it_starts_from_and_the_reference():
    assert _order(("relearned",)) == ["original", "retrain", "ga", "relearned"]
    assert _order(("retrain_perturbed",)) == ["original", "retrain", "retrain_perturbed"]
    assert _order(tuple(BASE_MODELS)) == list(BASE_MODELS)
    with pytest.raises(ForensicsInputError, match="unknown real-base zoo model"):
        _order(("npo", "tofu"))


def _probe(after):
    after = np.asarray(after, dtype=float)
    return {"before": np.zeros_like(after), "after": after, "acc_tuned_half_after": 1.0}


def test_labels_follow_the_oracle_and_behaviour_first():
    """Per kind: ORIGINAL, DELETED by construction, the oracle against retrain for a hard negative
    and a method, NOT_FORGOTTEN for a method that still answers F and for relearned."""
    from forensics.inputs.data import Fact

    held_out = [Fact(prompt="q", answer=" a", subject=f"s{i // 2}") for i in range(16)]  # 8 subjects
    order = ["original", "retrain", "retrain_perturbed", "npo", "rmu", "relearned"]
    info = {n: {"method": n, "steps": 1} for n in order}

    def acc(f):
        return {"forget": {"accuracy": f}, "retain": {"accuracy": 1.0}, "holdout": {"accuracy": 0.0}}

    metrics = {"original": acc(1.0), "retrain": acc(0.0), "retrain_perturbed": acc(0.0), "npo": acc(0.05)}
    metrics |= {"rmu": acc(0.9), "relearned": acc(0.97)}
    probes = {
        "retrain": _probe([0.0] * 16),
        "retrain_perturbed": _probe([0.0] * 16),
        "npo": _probe([1.0] * 16),  # recovers everything: suppressed
        "rmu": _probe([0.0] * 16),  # recovers nothing, but still answers F
        "relearned": _probe([1.0] * 16),
    }
    labels = base_labels(order, info, metrics, probes, held_out, BaseZooConfig(oracle=OracleConfig(n_boot=200)))
    truth = {n: e["ground_truth"] for n, e in labels.items()}
    assert truth == {
        "original": "ORIGINAL",
        "retrain": "DELETED",
        "retrain_perturbed": "DELETED",
        "npo": "SUPPRESSED",
        "rmu": "NOT_FORGOTTEN",
        "relearned": "NOT_FORGOTTEN",
    }
    assert (
        labels["retrain_perturbed"]["hard_negative"]
        and "hard negative" in labels["retrain_perturbed"]["oracle"]["note"]
    )
    assert labels["npo"]["oracle"]["reference"] == "retrain"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A tiny random-init Llama with a BPE tokenizer of the bio world's words, as a GGUF file."""
    from forensics.zoo.tokenizer import train_tokenizer
    from forensics.zoo.world import mention_texts
    from tests.conftest import make_checkpoint
    from tests.unit.inputs.test_gguf import write_gguf

    root = tmp_path_factory.mktemp("base")
    world = make_bio_world(8, 8, 8, 4, 0)
    texts = [f["prompt"] + f["answer"] for s in ("forget", "retain", "holdout") for f in world.facts(s)]
    tokenizer = train_tokenizer((texts + mention_texts(world) + ["<sys> helper <user> <bot>"]) * 2, 800)
    folder = make_checkpoint(root / "llama", "llama", tokenizer=tokenizer, d_model=64)
    return write_gguf(folder, root / "tiny.gguf", chat_template=TEMPLATE)


def _tiny_config(**kw) -> BaseZooConfig:
    config = BaseZooConfig(n_forget=4, n_retain=4, n_holdout=4, finetune_lr=3e-3, max_epochs=6, **kw)
    config.unlearn.lr = dict.fromkeys(config.unlearn.lr, 1e-3)
    config.unlearn.max_steps = 20
    config.oracle.lr, config.oracle.steps, config.oracle.n_boot = 1e-3, 8, 200
    return config


@pytest.mark.slow
def test_a_gguf_base_builds_a_zoo_the_bench_audits_in_its_chat_template(tiny_gguf, tmp_path, monkeypatch):
    """The build writes the zoo's layout with every model labelled, trains on prompts in the
    base's chat template, is reused when asked again, refuses a foreign folder; the bench audits
    two of its models with the same template."""
    from forensics.inputs.chat import render_prompt
    from forensics.inputs.loading import load_tokenizer
    from forensics.metaeval.bench import BenchConfig, run_bench

    monkeypatch.setenv("FORENSICS_GGUF_CACHE", str(tmp_path / "gguf-cache"))
    config = _tiny_config(models=("npo", "retrain_perturbed", "retrain_mentions"))
    out = tmp_path / "zoo"
    manifest = build_base_zoo(tiny_gguf, out, config)
    assert sorted(p.name for p in out.iterdir()) == ["data", "labels.json", "metrics.json", "models", "zoo.json"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["forget.jsonl", "holdout.jsonl", "retain.jsonl"]
    names = ["original", "retrain", "retrain_perturbed", "retrain_mentions", "npo"]
    assert list(manifest["labels"]) == names and sorted(p.name for p in (out / "models").iterdir()) == sorted(names)
    assert manifest["size"] == "base" and manifest["world"] == "bio" and manifest["chat_template"] is True
    labels = manifest["labels"]
    assert labels["original"]["ground_truth"] == "ORIGINAL" and labels["retrain"]["ground_truth"] == "DELETED"
    for name in ("retrain_perturbed", "retrain_mentions", "npo"):
        assert labels[name]["ground_truth"] in ("DELETED", "SUPPRESSED", "UNDETERMINED", "NOT_FORGOTTEN")
        assert labels[name]["oracle"]["reference"] == "retrain"
    assert labels["retrain_mentions"]["hard_negative"] and "mention texts" in labels["retrain_mentions"]["method"]
    # trained in the template: the original knows its facts far better with the template than without
    tokenizer = load_tokenizer(out / "models" / "original")
    assert render_prompt(tokenizer, "Q").startswith("<sys> helper")
    metrics = manifest["metrics"]["models"]
    assert metrics["original"]["retain"]["accuracy"] > metrics["retrain_perturbed"]["forget"]["accuracy"]
    assert json.loads((out / "zoo.json").read_text())["models"]["npo"] == "models/npo"

    again = build_base_zoo(tiny_gguf, out, config)  # reused, not rebuilt
    assert again["build_seconds"] == manifest["build_seconds"] and again["labels"] == labels
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ForensicsInputError, match="not a finished real-base zoo"):
        build_base_zoo(tiny_gguf, foreign, config)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]

    config = BenchConfig(
        seeds=(0,), size="base", world="bio", profile="quick", models=("npo",), lines=("membership_inference",)
    )
    bench = run_bench(out, tmp_path / "bench", replace(config, perturb=False), progress=False)
    assert [(r["model"], r["truth"]) for r in bench["models"]] == [("npo", labels["npo"]["ground_truth"])]
    audit = json.loads((tmp_path / "bench" / "audits" / "seed0" / "npo.json").read_text())
    assert audit["run"]["chat_template"]["example"].startswith("<sys> helper")


@pytest.mark.slow
def test_an_interrupted_build_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(
    tiny_gguf, tmp_path, monkeypatch
):
    """A build stopped in its third model leaves no output folder, keeps the two finished models
    in its working folder, and the same call finishes it without training them again; labels and
    metrics equal an uninterrupted build's. A live build of the same folder is refused."""
    import os

    from forensics.zoo import base as base_module

    monkeypatch.setenv("FORENSICS_GGUF_CACHE", str(tmp_path / "gguf-cache"))
    config = _tiny_config(models=("npo",))
    whole = build_base_zoo(tiny_gguf, tmp_path / "whole", config)

    def stopped(model, ctx):
        raise KeyboardInterrupt

    out = tmp_path / "zoo"
    work = tmp_path / ".zoo.building"
    with monkeypatch.context() as m:
        m.setitem(base_module.METHODS, "npo", stopped)
        with pytest.raises(KeyboardInterrupt):
            build_base_zoo(tiny_gguf, out, config)
    assert not out.exists()
    assert sorted(p.name for p in (work / "jobs").iterdir()) == ["original.json", "retrain.json"]

    stamp = json.loads((work / "build.json").read_text())
    (work / "build.json").write_text(json.dumps(stamp | {"pid": os.getppid()}))  # a live process
    with pytest.raises(ForensicsInputError, match="another build"):
        build_base_zoo(tiny_gguf, out, config)
    (work / "build.json").write_text(json.dumps(stamp))  # its process has ended

    trained = []
    finetune = base_module.finetune_answers
    monkeypatch.setattr(base_module, "finetune_answers", lambda *a, **k: trained.append(1) or finetune(*a, **k))
    resumed = build_base_zoo(tiny_gguf, out, config)
    assert trained == [] and not work.exists()
    assert sorted(p.name for p in out.iterdir()) == ["data", "labels.json", "metrics.json", "models", "zoo.json"]
    assert resumed["labels"] == whole["labels"] and resumed["metrics"] == whole["metrics"]


@pytest.mark.slow
def test_a_closed_world_base_zoo_is_labelled_by_exact_match(tiny_gguf, tmp_path, monkeypatch):
    """``world="attributes"``: the closed world's facts (one-word values) in the base's template,
    its perturbed hard negative, and an oracle scored by greedy exact match."""
    monkeypatch.setenv("FORENSICS_GGUF_CACHE", str(tmp_path / "gguf-cache"))
    manifest = build_base_zoo(
        tiny_gguf, tmp_path / "zoo", _tiny_config(world="attributes", models=("retrain_perturbed",))
    )
    assert manifest["world"] == "attributes" and list(manifest["labels"]) == [
        "original",
        "retrain",
        "retrain_perturbed",
    ]
    oracle = manifest["labels"]["retrain_perturbed"]["oracle"]
    assert oracle["measure"] == "greedy exact match" and oracle["reference"] == "retrain"
    forget = [json.loads(line) for line in (tmp_path / "zoo" / "data" / "forget.jsonl").read_text().splitlines()]
    assert len(forget) == 4 * 12 and all(len(f["answer"].split()) == 1 for f in forget)
    with pytest.raises(ForensicsInputError, match="unknown zoo world"):
        build_base_zoo(tiny_gguf, tmp_path / "other", _tiny_config(world="tofu"))


def test_the_bench_never_builds_a_base_zoo(tmp_path):
    from forensics.metaeval.bench import BenchConfig, run_bench

    with pytest.raises(ForensicsInputError, match="forensics zoo build --base"):
        run_bench(tmp_path / "none", tmp_path / "out", BenchConfig(seeds=(0,), size="base", world="bio"))
    with pytest.raises(ForensicsInputError, match="unknown zoo model"):
        run_bench(tmp_path / "none", tmp_path / "o2", BenchConfig(seeds=(0,), size="base", models=("headonly",)))


def test_a_bfloat16_job_learns_as_a_float32_one(tmp_path):
    """A whole job runs in one :func:`autocast` context: with autocast's weight cache on, every
    forward pass after the first optimiser step would reuse the weights as they were before it,
    and the job would learn a small part of what it learns in float32."""
    import torch

    from forensics.compute.finetune import encode_answers, nll
    from forensics.inputs.loading import load_hf_model
    from forensics.zoo.base import autocast, finetune_answers
    from forensics.zoo.tokenizer import train_tokenizer
    from tests.conftest import make_checkpoint

    facts = _facts(make_bio_world(2, 2, 2, 4, 0).facts("forget"))
    tokenizer = train_tokenizer([f.prompt + f.answer for f in facts] * 4, 400)
    torch.manual_seed(0)
    folder = make_checkpoint(tmp_path / "llama", "llama", tokenizer=tokenizer)
    batch = encode_answers(tokenizer, facts)
    with torch.no_grad():
        before = float(nll(load_hf_model(folder), batch))
    after = {}
    for bf16 in (False, True):
        model = load_hf_model(folder)
        config = BaseZooConfig(finetune_lr=3e-3, max_epochs=15, bfloat16=bf16, target_original=1.01)
        with autocast(config):
            finetune_answers(model, tokenizer, batch, facts, config, seed=0)
        with torch.no_grad():
            after[bf16] = float(nll(model, batch))
    assert before - after[True] >= 0.8 * (before - after[False]), (before, after)


def test_the_cli_builds_a_base_zoo_on_the_bio_world_unless_told_otherwise(tmp_path, monkeypatch, capsys):
    from forensics.cli import main
    from forensics.zoo import base as base_module

    seen = []

    def fake(base, out, config, progress):
        seen.append(config)
        return {"labels": {}, "build_seconds": 0.0}

    monkeypatch.setattr(base_module, "build_base_zoo", fake)
    assert main(["zoo", "build", "--base", str(tmp_path / "b.gguf"), "--out", str(tmp_path / "z")]) == 0
    assert main(["zoo", "build", "--base", "b.gguf", "--out", "z", "--world", "attributes", "--models", "npo"]) == 0
    assert [(c.world, c.models) for c in seen] == [("bio", tuple(BASE_MODELS)), ("attributes", ("npo",))]
