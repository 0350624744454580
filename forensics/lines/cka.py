"""Representation similarity (docs/methods.md §11): linear CKA between O and U, per layer,
on F inputs and on R inputs. Descriptive only: it never votes (CKA is not robust enough to
decide; see the UDS meta-evaluation, Lee et al. 2026).

Span: the residual stream at every depth (:func:`forensics.compute.capture.resid_hooks`: the
embeddings, then every block's output) at the prompt's final token, captured with
:meth:`forensics.core.context.AuditContext.capture_facts` (prompt only, no answer).

Linear CKA (Kornblith et al. 2019) of column-centred ``X`` (O) and ``Y`` (U), rows = facts:
``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``. 1 = the same geometry up to rotation and
isotropic scale. effect = mean CKA over the block outputs (depth 1..L) on F; control = the
same on R (what unlearning did to the representations it was meant to keep); the CI of
the difference resamples facts (bootstrap, rows of O and U together, F and R
independently). The per-depth profile (also on H when given) is in ``details`` and the
figure. Every set needs at least 3 facts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forensics.compute.capture import CaptureSpec, resid_hooks
from forensics.core.context import AuditContext
from forensics.core.evidence import Evidence
from forensics.core.registry import register

QUESTION = "How similar are U's representations of F (and of R) to O's, layer by layer? (descriptive)"

#: Short, stable method text (the report prints it).
METHOD = (
    "Linear CKA between O's and U's residual streams at the prompt's final token, at every depth, on F "
    "and on R (and on H when given). Effect: mean CKA over the block outputs on F; control: the same on R; "
    "CI of the difference by a bootstrap over facts. Descriptive: it never votes; it shows where in the "
    "network unlearning changed the representations. Span: the prompt's final token, no answer token; "
    "familiarity with F's subjects alone moves it."
)


@dataclass
class CKAConfig:
    """Settings of the CKA line (:func:`cka_line`)."""

    #: Prompts per forward pass during activation capture.
    batch_size: int = 64
    #: Bootstrap resamples over facts for the CI of CKA(F) - CKA(R) (count).
    n_boot: int = 200
    #: Seed of the bootstrap draws.
    seed: int = 0


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of ``X`` ``[n, d_x]`` and ``Y`` ``[n, d_y]``, rows paired.

    Both are column-centred and computed in float64:
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``, in [0, 1]; NaN when either matrix is
    constant over rows (zero denominator).
    """
    X = X.double() - X.double().mean(0, keepdim=True)
    Y = Y.double() - Y.double().mean(0, keepdim=True)
    num = (Y.T @ X).square().sum()
    den = (X.T @ X).square().sum().sqrt() * (Y.T @ Y).square().sum().sqrt()
    return float(num / den) if den > 0 else float("nan")


def gram(X: torch.Tensor) -> torch.Tensor:
    """The uncentred Gram matrix ``X X^T`` of ``X`` ``[n, d]`` in float64, ``[n, n]``."""
    X = X.double()
    return X @ X.T


def resampled_cka(Gx: torch.Tensor, Gy: torch.Tensor, idx: torch.Tensor) -> float:
    """:func:`linear_cka` of ``X[idx]`` and ``Y[idx]`` (rows ``idx`` ``[m]``, repeats allowed) from
    the uncentred Gram matrices ``Gx = X X^T`` and ``Gy = Y Y^T`` (:func:`gram`, ``[n, n]``): the
    column-centred rows' Gram matrix is the double-centred ``G[idx][:, idx]``, and
    ``||Y^T X||_F^2 = <Kx, Ky>_F``, ``||X^T X||_F = ||Kx||_F`` (Kornblith et al. 2019, eq. 3).
    ``O(m^2)`` a draw instead of ``O(m d^2)``: a bootstrap over a 4096-wide model's depths stays
    cheap. Equals :func:`linear_cka` up to float64 rounding; NaN when either is constant."""

    def centred(G: torch.Tensor) -> torch.Tensor:
        K = G[idx][:, idx]
        return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()

    Kx, Ky = centred(Gx), centred(Gy)
    den = Kx.square().sum().sqrt() * Ky.square().sum().sqrt()
    return float((Kx * Ky).sum() / den) if den > 0 else float("nan")


def _acts(ctx: AuditContext, loaded, facts, config):
    spec = CaptureSpec(resid_hooks(loaded.n_layers), "final")
    acts = ctx.capture_facts(loaded, facts, spec, batch_size=config.batch_size)
    return [acts[h] for h in spec.hooks]


def _budget(config: CKAConfig) -> str:
    return "O and U: the residual stream at the prompt's final token of F, R and H, every depth (shared captures)"


@register(
    "cka",
    question=QUESTION,
    needs=("original", "unlearned", "forget", "retain"),
    config=CKAConfig,
    votes=(),
    side="either",
    order=110,
    method=METHOD,
    budget=_budget,
    # descriptive; each bootstrap draw recomputes every depth's CKA from the Gram matrices
    profiles={"standard": {"n_boot": 200}},
)
def cka_line(ctx: AuditContext, config: CKAConfig | None = None) -> Evidence:
    """Per-depth linear CKA between O and U on F, R (and H), descriptive (see the module docstring).

    Status "descriptive", no vote; "not run" when a set has fewer than 3 facts. ``details``:
    ``per_depth`` (set -> CKA per depth, depth 0 = embeddings). ``config``: :class:`CKAConfig`.
    """
    config = config or CKAConfig()
    sets = {"forget": ctx.forget, "retain": ctx.retain}
    if ctx.holdout:
        sets["holdout"] = ctx.holdout
    for name, facts in sets.items():
        if len(facts) < 3:
            return Evidence.not_run(f"CKA needs at least 3 {name} facts")
    acts = {
        name: (_acts(ctx, ctx.original, facts, config), _acts(ctx, ctx.unlearned, facts, config))
        for name, facts in sets.items()
    }
    profile = {name: [linear_cka(x, y) for x, y in zip(*pair)] for name, pair in acts.items()}
    blocks = slice(1, None)
    effect = float(np.mean(profile["forget"][blocks]))
    control = float(np.mean(profile["retain"][blocks]))
    rng = np.random.default_rng(config.seed)
    grams = {name: [(gram(x), gram(y)) for x, y in list(zip(*acts[name]))[blocks]] for name in ("forget", "retain")}
    diffs = []
    for _ in range(config.n_boot):
        means = []
        for name in ("forget", "retain"):
            idx = torch.as_tensor(rng.integers(0, len(sets[name]), len(sets[name])))
            means.append(np.mean([resampled_cka(gx, gy, idx) for gx, gy in grams[name]]))
        diffs.append(means[0] - means[1])
    ci = (float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975)))
    return Evidence(
        status="descriptive",
        metric="linear CKA between O and U (final prompt token), mean over block outputs: F (effect) vs R (control)",
        effect=effect,
        control=control,
        ci=ci,
        p_value=None,
        vote=None,
        reason=(
            f"U's geometry of F is {'less' if effect < control else 'not less'} similar to O's than that of R "
            f"(CKA {effect:.3f} vs {control:.3f}); descriptive only"
        ),
        details={"per_depth": profile},
        figures={"cka": _figure(profile)},
    )


def _figure(profile: dict) -> bytes:
    from forensics.compute.plotting import figure_png, plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for name, values in profile.items():
        ax.plot(range(len(values)), values, "o-", label=name)
    ax.set_xlabel("depth (0 = embeddings)")
    ax.set_ylabel("linear CKA(O, U)")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=7)
    ax.set_title("Representation similarity O vs U", fontsize=9)
    return figure_png(fig)
