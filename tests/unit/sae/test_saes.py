"""SAE lines (issue 4): SAELens training/caching/loading, expert-feature survival, steering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forensics.core.context import AuditContext
from forensics.core.errors import ForensicsInputError
from forensics.core.registry import LINES
from forensics.inputs.data import Fact
from forensics.lines.sae_features import sae_feature_line
from forensics.lines.steering_restoration import (
    Intervention,
    SteeringConfig,
    make_hooks,
    split_indices_by_subject,
    steering_line,
)
from forensics.sae.experts import FeatureConfig
from forensics.sae.train import SAETrainConfig, get_sae, load_sae_folder, token_texts

#: Small enough for tests: the tiny zoo's SAE trains in a few seconds.
TEST_SAE = dict(training_tokens=150_000)


@pytest.fixture(scope="module")
def zoo_data(tiny_zoo):
    from forensics.inputs.data import load_facts, load_sequences

    data = {name: load_facts(tiny_zoo / "data" / f"{name}.jsonl")[0] for name in ("forget", "retain", "holdout")}
    data["seq_retain"] = load_sequences(tiny_zoo / "data" / "seq_retain.jsonl")[0]
    return data


@pytest.fixture(scope="module")
def models(tiny_zoo):
    from forensics.inputs.loading import load_model

    return {
        name: load_model(tiny_zoo / "models" / name)
        for name in ("original", "retrain", "rmu", "headonly", "retrain_lineage")
    }


@pytest.fixture(scope="module")
def trained(models, zoo_data, tmp_path_factory):
    """O's SAE, trained once into an on-disk cache folder: (sae, config, texts, cache folder)."""
    cache = tmp_path_factory.mktemp("sae-cache")
    config = SAETrainConfig(**TEST_SAE)
    texts = token_texts(zoo_data["forget"], zoo_data["retain"], zoo_data["holdout"], zoo_data["seq_retain"])
    return get_sae(models["original"], texts, config, cache_dir=cache), config, texts, cache


def _inputs(models, data, name):
    return AuditContext(
        models["original"], models[name], data["forget"], data["retain"], data["holdout"], None, data["seq_retain"]
    )


def test_sae_is_saelens_format_cached_and_reloads(trained, models):
    from sae_lens import SAE

    sae, config, texts, cache = trained
    assert not sae.from_cache and sae.train_seconds is not None
    assert (sae.path / "cfg.json").is_file() and (sae.path / "sae_weights.safetensors").is_file()
    assert json.loads((sae.path / "cfg.json").read_text())["architecture"] == "topk"
    assert sae.hook == "blocks.0.hook_resid_post"  # middle of a 2-block model
    # SAELens' own loader reads the cached folder and encodes identically.
    again = SAE.load_from_disk(str(sae.path))
    x = torch.randn(5, models["original"].model.cfg.d_model)
    assert torch.allclose(again.encode(x), sae.encode(x))
    q = sae.quality
    assert 0.7 <= q.explained_variance <= 1.0 and q.trustworthy, q
    assert q.mean_l0 == pytest.approx(config.k)
    from forensics.sae import train as sae_module

    # The same model, layer, config and texts: read back from the cache, not retrained.
    cached = get_sae(models["original"], texts, config, cache_dir=cache)
    assert cached.from_cache and cached.path == sae.path and sae.path.parent == cache
    assert torch.equal(cached.decoder, sae.decoder)
    # The key changes with the hook, the training config and the model's weights.
    key = sae_module.cache_key("w", sae.hook, config, "t")
    assert key != sae_module.cache_key("w", "blocks.1.hook_resid_post", config, "t")
    assert key != sae_module.cache_key("w2", sae.hook, config, "t")
    assert key != sae_module.cache_key("w", sae.hook, SAETrainConfig(**TEST_SAE, k=8), "t")
    # an equal config gives the same key (the cache folder is get_sae's argument, not part of the key)
    assert key == sae_module.cache_key("w", sae.hook, SAETrainConfig(**TEST_SAE), "t")


def test_user_sae_folder(trained, models, zoo_data, tmp_path):
    sae, config, texts, _ = trained
    user = get_sae(models["original"], texts, SAETrainConfig(sae_path=sae.path))
    assert user.path == sae.path and user.hook == sae.hook
    with pytest.raises(ForensicsInputError, match="not found"):
        load_sae_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ForensicsInputError, match="not a SAELens SAE folder"):
        load_sae_folder(tmp_path / "empty")
    with pytest.raises(ForensicsInputError, match="d_in"):
        load_sae_folder(sae.path, d_in=7)


def test_untrained_sae_is_not_trustworthy_and_does_not_vote(models, zoo_data, tmp_path):
    """A random SAELens SAE reconstructs badly: the line reports it and stays out of the verdict."""
    from sae_lens import TopKSAE, TopKSAEConfig

    d = models["original"].model.cfg.d_model
    torch.manual_seed(0)
    TopKSAE(TopKSAEConfig(d_in=d, d_sae=4 * d, k=16)).save_model(tmp_path / "random")
    config = FeatureConfig(sae=SAETrainConfig(sae_path=tmp_path / "random", layer=0))
    ev = sae_feature_line(_inputs(models, zoo_data, "headonly"), config)
    assert ev.vote is None and ev.status == "descriptive"
    assert ev.details["sae"]["trustworthy"] is False


def test_feature_survival_reads_right_on_the_zoo_and_never_votes(trained, models, zoo_data):
    sae = trained[0]
    config = FeatureConfig(sae=trained[1])
    # headonly changed only the last block and the head: the SAE's layer is untouched.
    head = sae_feature_line(_inputs(models, zoo_data, "headonly"), config, sae=sae)
    assert head.vote is None and head.status == "descriptive", head.reason
    assert "still fire" in head.reason
    # A model that knows F's subjects (O's first steps, the mentions) but never learned F's
    # answers keeps their features as well: the reason this line does not vote.
    lineage = sae_feature_line(_inputs(models, zoo_data, "retrain_lineage"), config, sae=sae)
    assert lineage.vote is None and lineage.effect >= config.min_survival, lineage.reason
    assert head.effect == pytest.approx(1.0) and len(head.details["experts"]["indices"]) > 0
    assert set(head.figures) == {"sae_feature_survival"}
    # A model retrained from scratch does not live in O's basis: no vote, and it says why.
    retrain = sae_feature_line(_inputs(models, zoo_data, "retrain"), config, sae=sae)
    assert retrain.vote is None and "does not transfer" in retrain.reason
    assert LINES["sae_features"].run is sae_feature_line


def test_split_by_subject_is_disjoint(zoo_data):
    facts = zoo_data["forget"]
    a, b = split_indices_by_subject(facts, seed=0)
    assert sorted(a + b) == list(range(len(facts)))
    assert not {facts[i].subject for i in a} & {facts[i].subject for i in b}
    assert abs(len({facts[i].subject for i in a}) - len({facts[i].subject for i in b})) <= 1


def test_hooks_do_what_they_say():
    d = torch.tensor([3.0, 4.0, 0.0])
    act = torch.tensor([[[1.0, 2.0, 5.0]]])
    unit = d / d.norm()
    ablate = make_hooks(Intervention("ablate", 0, 1.0), {0: d}, None, 0, "cpu", torch.float32)
    ((name, fn),) = ablate
    assert name == "blocks.0.hook_resid_post"
    assert float(fn(act.clone(), None)[0, 0] @ unit) == pytest.approx(0.0, abs=1e-6)
    reverse = make_hooks(Intervention("reverse", 0, 2.0), {0: d}, None, 0, "cpu", torch.float32)
    assert torch.allclose(reverse[0][1](act.clone(), None), act - 2 * d)
    both = make_hooks(Intervention("ablate", "all", 1.0), {0: d, 1: d}, None, 0, "cpu", torch.float32)
    assert [n for n, _ in both] == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    feats = make_hooks(Intervention("features", 1, 0.5), {}, d, 1, "cpu", torch.float32)
    assert torch.allclose(feats[0][1](act.clone(), None), act + 0.5 * d)


STEER = dict(alphas=(1.0, 2.0), n_retain=120, n_boot=500)


def test_rmu_is_restored_by_ablation_and_retrain_is_not(trained, models, zoo_data):
    sae = trained[0]
    config = SteeringConfig(features=FeatureConfig(sae=trained[1]), **STEER)
    rmu = steering_line(_inputs(models, zoo_data, "rmu"), config, sae=sae)
    assert rmu.vote == "suppressed", rmu.reason
    ablate = rmu.details["best"]["ablate"]
    assert ablate["ci"][0] > 0 and ablate["forget"] > ablate["holdout"] + 0.1
    assert set(rmu.figures) == {"steering_restoration", "steering_retain_cost"}
    retrain = steering_line(_inputs(models, zoo_data, "retrain"), config, sae=sae)
    assert retrain.vote is None
    for best in retrain.details["best"].values():
        assert best["ci"][0] <= 0, best  # nothing restored beyond the H control


def test_steering_refuses_missing_holdout(models, zoo_data):
    inputs = _inputs(models, zoo_data, "rmu")
    inputs.holdout = None
    ev = steering_line(inputs, SteeringConfig())
    assert ev.status == "not_run" and "holdout" in ev.reason
    ev = sae_feature_line(inputs, FeatureConfig())
    assert ev.status == "not_run" and "holdout" in ev.reason


def test_restoration_counts_from_the_holdout_level_not_from_each_facts_own():
    """A model that answers none of F (its F prompts learned other continuations) and chance on
    H: a push that brings back the answer format lifts F to chance. Counted from each fact's own
    unsteered correctness that is a restoration; counted from H's level it is none."""
    from types import SimpleNamespace

    from forensics.lines.steering_restoration import summarise

    n = 40
    forget = [Fact(f"f{i} lives in", " x", subject=f"f{i // 4}") for i in range(n)]
    holdout = [Fact(f"h{i} lives in", " x", subject=f"h{i // 4}") for i in range(n)]
    chance = (np.arange(n) % 8 == 0).astype(float)  # 1 in 8 right
    base = {"O_F": np.ones(n), "U_F": np.zeros(n), "U_H": chance, "U_R": np.ones(4)}
    cell = {
        "iv": SimpleNamespace(kind="ablate", layer=0, alpha=1.0),
        "F": chance.copy(),
        "H": chance.copy(),
        "R": np.ones(4),
    }
    sweep = {"base": base, "results": {"ablate-0-1": cell}, "cells": []}
    ctx = AuditContext(None, None, forget, [], holdout)
    summary = summarise(sweep, ctx, SteeringConfig(n_boot=200))
    best = summary["best"]["ablate"]
    assert best["difference"] == pytest.approx(0.0) and best["ci"][0] <= 0 <= best["ci"][1]
    # a push that restores real answers on F does count
    cell["F"] = np.ones(n)
    best = summarise(sweep, ctx, SteeringConfig(n_boot=200))["best"]["ablate"]
    assert best["difference"] == pytest.approx(1.0 - chance.mean()) and best["ci"][0] > 0
