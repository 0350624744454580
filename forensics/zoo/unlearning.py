"""Approximate unlearning methods, one function each, registered in :data:`METHODS`.

Every method starts from a copy of the original model and edits it in place. Shared
setting (see :class:`UnlearnContext`):

- *forget items*: every F fact in every template plus every F canary (prompt = the
  diary prefix, answer = the secret), loss on the answer tokens only;
- *retain items*: the same for R facts and R canaries;
- AdamW (betas 0.9/0.98, no weight decay), gradient-norm clip 1.0, forget and retain
  mini-batches of ``batch_size`` each, batch order from a seeded generator;
- *stopping rule* (all methods but ``relearn``): greedy accuracy on the F facts is
  checked before the first step and every ``check_every`` steps; the method stops at the
  first check where it is <= ``target_forget`` (0.10), or after ``max_steps``. Only F is
  looked at (an unlearner knows its forget set); R and H are never used to stop.

The losses follow open-unlearning's implementations (GradAscent, GradDiff, NPO,
SimNPO, RMU) and the WMDP RMU paper; the log-likelihoods are sums over answer tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from forensics.compute.finetune import Batchable, Sampler, frozen_copy, nll, run_steps, token_logprobs
from forensics.inputs.data import Fact
from forensics.zoo.training import GreedyAccuracy, blocks, head_modules


@dataclass
class UnlearnConfig:
    """Settings of the unlearning methods and of :func:`relearn` (see the module docstring)."""

    #: Step budget of every method and of relearning (optimiser steps).
    max_steps: int = 150
    #: Items per forget mini-batch and per retain mini-batch.
    batch_size: int = 32
    #: Steps between two checks of the stopping rule (greedy accuracy on F).
    check_every: int = 2
    #: A method stops once greedy accuracy on the F facts is at most this (fraction of facts).
    target_forget: float = 0.10
    #: AdamW learning rate per method name (and "relearn").
    lr: dict[str, float] = field(
        default_factory=lambda: {
            "ga": 3e-4,
            "graddiff": 3e-4,
            "npo": 5e-4,
            "simnpo": 1e-3,
            "rmu": 3e-3,
            "idk": 1e-3,
            "headonly": 1e-3,
            "headonly_lastblock": 1e-3,
            "relearn": 2e-3,
        }
    )
    #: NPO inverse temperature beta (npo, headonly, headonly_lastblock).
    npo_beta: float = 0.1
    #: SimNPO inverse temperature beta.
    simnpo_beta: float = 2.5
    #: SimNPO margin delta on the length-normalised NLL (nats per token).
    simnpo_delta: float = 0.0
    #: Weight w of the retain NLL term (graddiff, npo, simnpo, idk, headonly).
    retain_weight: float = 3.0
    #: RMU target norm c = rmu_steering * O's mean activation norm on F at the steered layer.
    rmu_steering: float = 4.0
    #: RMU weight alpha of the retain activation MSE.
    rmu_alpha: float = 10.0
    #: RMU's steered residual layer (the output of block rmu_layer - 1); 0 means n_layers // 2.
    rmu_layer: int = 0
    #: Relearning stops once greedy accuracy on the F facts is at least this (fraction of facts).
    relearn_target: float = 0.95


@dataclass
class UnlearnContext:
    """What every method shares: the tokenizer, the encoded forget / retain / "I do not know"
    items, the F facts for the stopping rule, the configuration and the base seed."""

    tokenizer: object
    forget: Batchable  # F facts + F canaries, answer-only labels
    retain: Batchable  # R facts + R canaries, answer-only labels
    forget_idk: Batchable  # F prompts with the "I do not know" answer
    forget_facts: list[Fact]  # for the stopping rule
    config: UnlearnConfig
    seed: int
    #: Called as ``on_check(step, model)`` at every check of the stopping rule, before it is
    #: decided (the zoo keeps a run's checkpoints with it: :mod:`forensics.zoo.checkpoints`).
    on_check: Callable[[int, torch.nn.Module], None] | None = None
    #: greedy accuracy on ``forget_facts`` (built on first use; see GreedyAccuracy)
    _forget_accuracy: GreedyAccuracy | None = field(default=None, repr=False)

    def forget_accuracy(self, model) -> float:
        """Greedy accuracy of ``model`` on ``forget_facts`` (fraction of facts)."""
        if self._forget_accuracy is None:
            self._forget_accuracy = GreedyAccuracy(self.tokenizer, self.forget_facts)
        return self._forget_accuracy(model)

    def samplers(self, salt: int) -> tuple[Sampler, Sampler]:
        """Fresh (forget, retain) samplers of ``batch_size`` items, seeded from the base seed and
        ``salt`` (one salt per method, so methods draw independent batch orders)."""
        b = self.config.batch_size
        return Sampler(self.forget, b, self.seed + 101 * salt), Sampler(self.retain, b, self.seed + 101 * salt + 7)

    def stop_when_forgotten(self, model) -> Callable[[int], bool]:
        """The stopping rule for :func:`forensics.compute.finetune.run_steps`: True once
        :meth:`forget_accuracy` of ``model`` is at most ``target_forget``; :attr:`on_check` sees
        the model first."""

        def stop(step: int) -> bool:
            if self.on_check is not None:
                self.on_check(step, model)
            return self.forget_accuracy(model) <= self.config.target_forget

        return stop


MethodFn = Callable[[torch.nn.Module, UnlearnContext], dict]
METHODS: dict[str, MethodFn] = {}


def method(name: str):
    """Decorator: register an unlearning function in :data:`METHODS` under ``name``."""

    def wrap(fn: MethodFn) -> MethodFn:
        METHODS[name] = fn
        return fn

    return wrap


def _run(model, ctx: UnlearnContext, name: str, params, loss_fn, trainable: str) -> dict:
    c = ctx.config
    steps = run_steps(
        model, params, loss_fn, c.max_steps, c.lr[name], stop=ctx.stop_when_forgotten(model), check_every=c.check_every
    )
    return {
        "steps": steps,
        "max_steps": c.max_steps,
        "lr": c.lr[name],
        "trainable": trainable,
        "stopping_rule": f"F accuracy <= {c.target_forget} checked every {c.check_every} steps",
    }


@method("ga")
def gradient_ascent(model, ctx: UnlearnContext) -> dict:
    """Gradient ascent: minimise -NLL(F answers). All parameters trainable. No retain term."""
    fs, _ = ctx.samplers(1)
    info = _run(model, ctx, "ga", list(model.parameters()), lambda s: -nll(model, fs.next()), "all")
    return info | {"loss": "-NLL(F answers)"}


@method("graddiff")
def grad_diff(model, ctx: UnlearnContext) -> dict:
    """Gradient difference: -NLL(F answers) + w * NLL(R answers). All parameters trainable."""
    fs, rs = ctx.samplers(2)
    w = ctx.config.retain_weight

    def loss(step):
        return -nll(model, fs.next()) + w * nll(model, rs.next())

    info = _run(model, ctx, "graddiff", list(model.parameters()), loss, "all")
    return info | {"loss": f"-NLL(F answers) + {w} * NLL(R answers)"}


def _npo_loss(model, ref, batch: Batchable, beta: float) -> torch.Tensor:
    lp, _ = token_logprobs(model, batch)
    with torch.no_grad():
        lp_ref, _ = token_logprobs(ref, batch)
    return (-2.0 / beta * F.logsigmoid(-beta * (lp - lp_ref))).mean()


@method("npo")
def npo(model, ctx: UnlearnContext) -> dict:
    """NPO with retain NLL: -2/b * log sigmoid(-b * (log p_U(a|q) - log p_O(a|q))) on F
    (reference = the original, frozen), + w * NLL(R answers). All parameters trainable."""
    ref = frozen_copy(model)
    fs, rs = ctx.samplers(3)
    b, w = ctx.config.npo_beta, ctx.config.retain_weight

    def loss(step):
        return _npo_loss(model, ref, fs.next(), b) + w * nll(model, rs.next())

    info = _run(model, ctx, "npo", list(model.parameters()), loss, "all")
    return info | {"loss": f"NPO(beta={b}, ref=original) on F + {w} * NLL(R answers)"}


@method("simnpo")
def simnpo(model, ctx: UnlearnContext) -> dict:
    """SimNPO (no reference model): -2/b * log sigmoid(b * (NLL_avg(F answer) - delta)),
    length-normalised NLL per item, + w * NLL(R answers). All parameters trainable."""
    fs, rs = ctx.samplers(4)
    c = ctx.config
    b, d, w = c.simnpo_beta, c.simnpo_delta, c.retain_weight

    def loss(step):
        lp, n = token_logprobs(model, fs.next())
        avg_nll = -lp / n.clamp(min=1)
        forget = (-2.0 / b * F.logsigmoid(b * (avg_nll - d))).mean()
        return forget + w * nll(model, rs.next())

    info = _run(model, ctx, "simnpo", list(model.parameters()), loss, "all")
    return info | {"loss": f"SimNPO(beta={b}, delta={d}) on F + {w} * NLL(R answers)"}


def _hidden(model, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """The residual stream after block ``layer - 1`` (before any final norm)."""
    captured = []

    def hook(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = blocks(model)[layer - 1].register_forward_hook(hook)
    try:
        model(ids)
    finally:
        handle.remove()
    return captured[0]


@method("rmu")
def rmu(model, ctx: UnlearnContext) -> dict:
    """RMU: at layer l (``rmu_layer``; default n_layers // 2; the residual after block l-1), push F activations
    (positions from the subject's first token on) toward c * u, u a fixed random unit
    vector (uniform [0,1) entries, normalised), c = rmu_steering * the original's mean
    activation norm there; keep R activations close to the frozen original's
    (alpha * MSE). Trainable: blocks 0..l-1 (embeddings and later blocks frozen)."""
    c = ctx.config
    ref = frozen_copy(model)
    layer = c.rmu_layer or max(1, len(blocks(model)) // 2)
    gen = torch.Generator().manual_seed(ctx.seed + 555)
    d = model.config.hidden_size
    u = torch.rand(d, generator=gen)
    u = u / u.norm()
    with torch.no_grad():
        h = _hidden(ref, ctx.forget.ids, layer)
        mask = _forget_positions(ctx.forget)
        scale = float(h.norm(dim=-1)[mask].mean())
    target = c.rmu_steering * scale * u
    params = [p for blk in blocks(model)[:layer] for p in blk.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    fs, rs = ctx.samplers(5)

    def loss(step):
        fb, rb = fs.next(), rs.next()
        fm = _forget_positions(fb)
        hf = _hidden(model, fb.ids, layer)
        forget = ((hf - target) ** 2).mean(-1)[fm].mean()
        hr = _hidden(model, rb.ids, layer)
        with torch.no_grad():
            hr_ref = _hidden(ref, rb.ids, layer)
        rm = torch.arange(rb.ids.shape[1])[None, :] < rb.lengths[:, None]
        retain = ((hr - hr_ref) ** 2).mean(-1)[rm].mean()
        return forget + c.rmu_alpha * retain

    info = _run(model, ctx, "rmu", params, loss, f"blocks 0..{layer - 1}")
    for p in model.parameters():
        p.requires_grad_(True)
    return info | {
        "loss": f"MSE(h_l(F), {c.rmu_steering} * |h| * u) + {c.rmu_alpha} * MSE(h_l(R), h_l^O(R))",
        "layer": layer,
        "steering_norm": c.rmu_steering * scale,
    }


def _forget_positions(batch: Batchable) -> torch.Tensor:
    """Real (non-pad) positions from the subject's first token to the end of each item
    (the template words before the subject are shared with R, so they are left alone)."""
    pos = torch.arange(batch.ids.shape[1])[None, :]
    assert batch.starts is not None  # encode_answers sets the subject starts
    return (pos < batch.lengths[:, None]) & (pos >= batch.starts[:, None])


@method("idk")
def idk(model, ctx: UnlearnContext) -> dict:
    """ "I don't know" fine-tuning: NLL of the refusal answer " I do not know" after F
    prompts + w * NLL(R answers). All parameters trainable."""
    fs = Sampler(ctx.forget_idk, ctx.config.batch_size, ctx.seed + 606)
    _, rs = ctx.samplers(6)
    w = ctx.config.retain_weight

    def loss(step):
        return nll(model, fs.next()) + w * nll(model, rs.next())

    info = _run(model, ctx, "idk", list(model.parameters()), loss, "all")
    return info | {"loss": f"NLL(F prompt -> ' I do not know') + {w} * NLL(R answers)"}


def _head_only(model, ctx: UnlearnContext, name: str, with_last_block: bool) -> dict:
    modules = head_modules(model) + (blocks(model)[-1:] if with_last_block else [])
    params = [p for m in modules for p in m.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    ref = frozen_copy(model)
    fs, rs = ctx.samplers(7)
    b, w = ctx.config.npo_beta, ctx.config.retain_weight

    def loss(step):
        return _npo_loss(model, ref, fs.next(), b) + w * nll(model, rs.next())

    trainable = ("last block + " if with_last_block else "") + "final norm + unembedding"
    info = _run(model, ctx, name, params, loss, trainable)
    for p in model.parameters():
        p.requires_grad_(True)
    return info | {"loss": f"NPO(beta={b}, ref=original) on F + {w} * NLL(R answers)"}


@method("headonly")
def headonly(model, ctx: UnlearnContext) -> dict:
    """Head-only unlearning: NPO + retain NLL with only the final norm and the
    unembedding trainable (the body, so every representation, is untouched)."""
    return _head_only(model, ctx, "headonly", with_last_block=False)


@method("headonly_lastblock")
def headonly_lastblock(model, ctx: UnlearnContext) -> dict:
    """The nearest variant of ``headonly``: the last block, final norm and unembedding
    trainable; same loss."""
    return _head_only(model, ctx, "headonly_lastblock", with_last_block=True)


def relearn(model, ctx: UnlearnContext) -> dict:
    """Re-learning (not an unlearning method): NLL on the F answers (facts + canaries),
    all parameters trainable, until F accuracy >= relearn_target (checked every
    ``check_every`` steps) or ``max_steps``."""
    c = ctx.config
    fs, _ = ctx.samplers(8)
    steps = run_steps(
        model,
        list(model.parameters()),
        lambda s: nll(model, fs.next()),
        c.max_steps,
        c.lr["relearn"],
        stop=lambda s: ctx.forget_accuracy(model) >= c.relearn_target,
        check_every=c.check_every,
    )
    return {
        "steps": steps,
        "max_steps": c.max_steps,
        "lr": c.lr["relearn"],
        "trainable": "all",
        "loss": "NLL(F answers)",
        "stopping_rule": f"F accuracy >= {c.relearn_target}",
    }
