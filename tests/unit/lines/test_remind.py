"""REMIND scan: batched losses equal one-by-one losses, neighbours are what the docstring
says, bad input is refused, and on the tiny zoo the retrained model shows no landscape
contrast while the original's memorised F does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forensics.compute.scoring import sequence_losses
from forensics.core.context import AuditContext
from forensics.inputs.data import Fact
from forensics.lines.remind.landscape import FEATURES, landscape_features, make_neighbours, nearest_tokens
from forensics.lines.remind.line import RemindConfig, Scan, decide, length_adjusted_slopes, remind_line, token_counts


def contrast(o_ci, u_ci):
    side = lambda ci: {"forget": 0.0, "holdout": 0.0, "difference": sum(ci) / 2, "ci": list(ci)}  # noqa: E731
    return {"original": side(o_ci), "unlearned": side(u_ci)}


def test_length_adjustment_removes_a_length_gap_and_keeps_a_real_one():
    rng = np.random.default_rng(0)
    lengths = {
        "forget": rng.integers(8, 12, 200),
        "retain": rng.integers(8, 15, 400),
        "holdout": rng.integers(10, 15, 200),
    }
    tokens = {k: [[1] * int(n) for n in v] for k, v in lengths.items()}
    scan = Scan({k: [] for k in lengths}, tokens, {}, {})

    def feats(shift):  # slope = 2 - 0.1 * length (+ shift on F), noise-free
        out = {}
        for k, n in lengths.items():
            x = np.zeros((len(n), len(FEATURES)))
            x[:, FEATURES.index("slope")] = 2 - 0.1 * n + (shift if k == "forget" else 0.0)
            out[k] = {"features": x}
        return out

    raw = feats(0.0)
    assert raw["forget"]["features"][:, -1].mean() - raw["holdout"]["features"][:, -1].mean() > 0.15  # F is shorter
    adjusted, b = length_adjusted_slopes(raw, token_counts(scan))
    assert b == pytest.approx(-0.1) and adjusted["forget"].mean() == pytest.approx(adjusted["holdout"].mean())
    adjusted, b = length_adjusted_slopes(feats(0.5), token_counts(scan))
    # F's own shift (what a model knows about F) does not tilt the common within-set line
    assert b == pytest.approx(-0.1)
    assert adjusted["forget"].mean() - adjusted["holdout"].mean() == pytest.approx(0.5)


def test_vote_is_one_sided_on_o_s_side():
    config = RemindConfig(deleted_share=0.25)
    # O's F is sharper than H; U's too: O's signature survives
    assert decide(contrast((0.4, 0.6), (0.1, 0.3)), config)[0] == "suppressed"
    # U's F flatter than H where O's is sharper: a trace of the unlearning, no vote
    vote, reason = decide(contrast((0.4, 0.6), (-0.3, -0.1)), config)
    assert vote is None and "trace of the unlearning" in reason
    # the same holds when O's contrast is the other way round
    assert decide(contrast((-0.6, -0.4), (-0.3, -0.1)), config)[0] == "suppressed"
    assert decide(contrast((-0.6, -0.4), (0.1, 0.3)), config)[0] is None
    # no contrast in O: no power, no vote either way
    assert decide(contrast((-0.1, 0.1), (0.1, 0.3)), config)[0] is None
    assert decide(contrast((-0.1, 0.1), (-0.01, 0.01)), config)[0] is None
    # U within a quarter of O's contrast: deleted; a wider CI: no vote
    assert decide(contrast((0.4, 0.6), (-0.1, 0.1)), config)[0] == "deleted"
    assert decide(contrast((0.4, 0.6), (-0.1, 0.2)), config)[0] is None


@pytest.fixture(scope="module")
def zoo_inputs(tiny_zoo):
    from forensics.inputs.data import load_facts
    from forensics.inputs.loading import load_model

    sets = {s: load_facts(tiny_zoo / "data" / f"{s}.jsonl")[0] for s in ("forget", "retain", "holdout")}
    models = {n: load_model(tiny_zoo / "models" / n) for n in ("original", "retrain")}
    return sets, models


def test_batched_losses_equal_one_by_one(zoo_inputs):
    _, models = zoo_inputs
    loaded = models["original"]
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(3, 200, size=n)) for n in (3, 9, 5, 12, 7, 2)]
    batched = sequence_losses(loaded.model, seqs, batch_size=4)
    for seq, value in zip(seqs, batched):
        with torch.no_grad():
            lp = torch.log_softmax(loaded.model(torch.tensor([seq]))[0, :-1].float(), -1)
        manual = -float(lp.gather(1, torch.tensor(seq[1:])[:, None]).mean())
        assert value == pytest.approx(manual, abs=1e-4)


def test_neighbours_substitute_nearest_tokens_at_the_stated_radii():
    torch.manual_seed(0)
    emb = torch.randn(50, 8)
    special = {0}
    seqs = [[0, 5, 6, 7, 8, 9, 10, 11, 12, 13], [0, 20, 21, 22, 23, 24, 25]]
    nearest = nearest_tokens(emb, {t for s in seqs for t in s}, k=3, exclude=[0])
    cfg = RemindConfig(n_neighbours=15, k_nearest=3)
    nbs, owner, radius = make_neighbours(seqs, special, nearest, cfg.n_neighbours, cfg.substitution_share, cfg.seed)
    again = make_neighbours(seqs, special, nearest, cfg.n_neighbours, cfg.substitution_share, cfg.seed)
    assert nbs == again[0]  # seeded
    assert len(nbs) == 30 and set(owner) == {0, 1}
    for nb, i, r in zip(nbs, owner, radius):
        changed = [p for p, (a, b) in enumerate(zip(seqs[i], nb)) if a != b]
        assert len(changed) == r and 0 not in changed  # the special token is never substituted
        assert all(nb[p] in nearest[seqs[i][p]] for p in changed)
    # 9 substitutable tokens -> radii 1..3; 6 -> radii 1..2
    assert set(radius[owner == 0]) == {1, 2, 3} and set(radius[owner == 1]) == {1, 2}
    # nearest excludes the token itself and the special token, and really is the closest by cosine
    e = torch.nn.functional.normalize(emb, dim=-1)
    sims = (e[5] @ e.T).clone()
    sims[[0, 5]] = -2
    assert set(nearest[5]) == set(sims.topk(3).indices.tolist())


def test_slope_feature_is_the_least_squares_slope():
    orig = np.array([1.0])
    nb = np.array([2.0, 3.0, 4.0, 2.0, 3.0, 4.0])
    radius = np.array([1, 2, 3, 1, 2, 3])
    feats = landscape_features(orig, nb, np.zeros(6, dtype=int), radius)
    assert feats[0].tolist() == pytest.approx([1.0, 3.0, 4.0, np.std(nb), 1.0])


def test_too_short_sequences_are_not_run(zoo_inputs):
    _, models = zoo_inputs
    short = [Fact("A", " b", subject=f"s{i}") for i in range(20)]
    inputs = AuditContext(models["original"], models["retrain"], short, short, short)
    ev = remind_line(inputs)
    assert ev.status == "not_run" and "too short" in ev.reason


def test_retrain_shows_no_contrast_and_original_does(zoo_inputs):
    sets, models = zoo_inputs
    cfg = RemindConfig(max_per_set=120, n_boot=300, n_perm=300)
    ev = remind_line(AuditContext(models["original"], models["retrain"], **sets), cfg)
    assert ev.status == "ok" and ev.vote != "suppressed"
    assert ev.ci[0] <= 0 <= ev.ci[1]
    contrast_o = ev.details["contrast"]["original"]
    assert contrast_o["ci"][0] > 0  # O memorised F: its landscape on F differs from unseen facts'
    assert set(ev.figures) == {"remind_loss_by_radius"}
    assert ev.details["classifiers"]["logistic"]["auc_multiclass_ovr"] > 0.5
