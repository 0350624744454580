"""Expert SAE features: which latents of O's SAE carry the forget set, and how many of
them still fire in U (docs/methods.md §5).

Units are *facts*: a latent's activation on a fact is its maximum over the fact's prompt
tokens (it "fires" when that is above 0), read from the residual stream at the SAE's hook.
Experts are latents that fire on F far more than on R in O: the firing-frequency
log-ratio ``log((freq_F + 1/n_F) / (freq_R + 1/n_R))`` (add-one-fact smoothing) at least
``min_log_ratio`` and the Welch t-statistic of the per-fact activation, F vs R, at least
``min_t``; the ``top_k`` with the largest t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from forensics.compute.capture import CaptureSpec
from forensics.core.minimum import VoteMinimum
from forensics.inputs.data import Fact
from forensics.sae.train import SAETrainConfig, TrainedSAE


@dataclass
class FeatureConfig(VoteMinimum):
    """Expert selection (see the module docstring) and the SAE feature line's vote settings."""

    #: How O's SAE is obtained (:class:`forensics.sae.train.SAETrainConfig`).
    sae: SAETrainConfig = field(default_factory=SAETrainConfig)
    #: Most expert latents kept (largest t first).
    top_k: int = 16
    #: Minimum firing-frequency log-ratio F vs R (natural log; log 2: twice as often on F).
    min_log_ratio: float = float(np.log(2.0))
    #: Minimum Welch t-statistic of the per-fact activation, F vs R.
    min_t: float = 3.0
    #: Minimum mean survival on F (fraction of O's firing experts still firing in U) for a finding
    #: (the line is descriptive: it reports, never votes).
    min_survival: float = 0.5
    #: Equivalence margin: the CI lower bound of survival F - H must be at least -margin for a finding.
    margin: float = 0.1
    #: Minimum drop of greedy accuracy on F from O to U (fraction of facts) for the line to read F.
    min_forgetting: float = 0.2
    #: Minimum F and H facts on which some expert fires in O (else no sound control).
    min_control_facts: int = 10
    #: Subject-bootstrap resamples of the CI.
    n_boot: int = 2000
    #: Seed of the bootstrap.
    seed: int = 0
    #: Prompts per forward pass when capturing activations.
    batch_size: int = 64


@torch.no_grad()
def fact_activations(ctx, loaded, facts: Sequence[Fact], sae: TrainedSAE, batch_size: int = 64) -> torch.Tensor:
    """``[n_facts, d_sae]``: each latent's maximum activation over the fact's prompt tokens.

    ``ctx``: the audit context whose shared capture supplies the prompt-token activations."""
    acts = ctx.capture(loaded, [f.prompt for f in facts], CaptureSpec((sae.hook,), "all"), batch_size=batch_size)
    x = acts[sae.hook]
    feats = sae.encode(x)
    lengths = acts.prompt_lengths
    index = torch.repeat_interleave(torch.arange(len(facts)), lengths)
    out = torch.zeros(len(facts), feats.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(feats), feats, reduce="amax", include_self=True)


@torch.no_grad()
def prompt_tokens(ctx, loaded, facts: Sequence[Fact], hook: str, batch_size: int = 64) -> torch.Tensor:
    """Activations at ``hook`` at every prompt token, ``[n_tokens, d]``, through ``ctx``'s shared capture."""
    return ctx.capture(loaded, [f.prompt for f in facts], CaptureSpec((hook,), "all"), batch_size=batch_size)[hook]


@torch.no_grad()
def explained_variance(sae: TrainedSAE, x: torch.Tensor) -> float:
    """``1 - sum|x - x_hat|^2 / sum|x - mean x|^2`` of ``sae`` on activations ``x`` ``[n_tokens, d]``
    (NaN when ``x`` has no variance)."""
    recon = sae.sae.decode(sae.encode(x))
    total = ((x - x.mean(0)) ** 2).sum()
    return float(1 - ((x - recon) ** 2).sum() / total) if total > 0 else float("nan")


def expert_features(a_f: torch.Tensor, a_r: torch.Tensor, config: FeatureConfig) -> dict:
    """Expert latents (F far more than R) from O's per-fact activations ``a_f`` ``[n_F, d_sae]`` and
    ``a_r`` ``[n_R, d_sae]`` (:func:`fact_activations`); see the module docstring. Returns the chosen
    ``indices`` with their ``log_ratio``, ``t``, ``freq_forget``, ``freq_retain`` (each ``[n_experts]``)
    and ``n_candidates`` (latents passing both thresholds)."""
    f, r = a_f.numpy(), a_r.numpy()
    n_f, n_r = len(f), len(r)
    freq_f, freq_r = (f > 0).mean(0), (r > 0).mean(0)
    log_ratio = np.log((freq_f + 1 / n_f) / (freq_r + 1 / n_r))
    var = f.var(0, ddof=1) / n_f + r.var(0, ddof=1) / n_r
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(var > 0, (f.mean(0) - r.mean(0)) / np.sqrt(var), 0.0)
    ok = np.flatnonzero((log_ratio >= config.min_log_ratio) & (t >= config.min_t))
    chosen = ok[np.argsort(-t[ok])][: config.top_k]
    return {
        "indices": chosen,
        "log_ratio": log_ratio[chosen],
        "t": t[chosen],
        "freq_forget": freq_f[chosen],
        "freq_retain": freq_r[chosen],
        "n_candidates": int(len(ok)),
    }


def survival(a_o: torch.Tensor, a_u: torch.Tensor, experts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per fact: (fraction of the experts firing in O that still fire in U, activation ratio U/O),
    two ``[n_facts]`` arrays from ``[n_facts, d_sae]`` activations of O and U and the expert
    indices; NaN where no expert fires in O."""
    o, u = a_o[:, experts].numpy(), a_u[:, experts].numpy()
    fires_o = o > 0
    n = fires_o.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(n > 0, ((u > 0) & fires_o).sum(1) / np.maximum(n, 1), np.nan)
        mass = o.sum(1)
        ratio = np.where(mass > 0, u.sum(1) / np.where(mass > 0, mass, 1), np.nan)
    return frac, ratio
