"""Many small probes fitted at once, in torch.

The probe lines fit hundreds of small classifiers: every fold of a grouped
cross-validation, every regularisation strength of a grid, every label permutation of a
null distribution, every attribute and every depth. Fitting them one at a time (with
scikit-learn, or one optimiser run per matrix) is dominated by per-fit overhead, so they
are fitted together.

Here a :class:`Problem` is one activation matrix ``X`` with the tasks that share it (same
rows, another training mask, label vector or strength); each task's standardisation is
folded into its weights, so the forward pass of all of a problem's tasks is one matrix
product, and one optimiser run fits them all: the objectives are independent and summed,
and the joint optimum is each task's optimum. For the MLP, problems (attributes, depths)
are also padded to a common shape and stacked into one run.

- ``linear``: L2 multinomial logistic regression on standardised features, the objective
  of scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C))``:
  ``mean training cross-entropy + ||W||^2 / (2 C n_train)``, intercept unpenalised,
  minimised with L-BFGS (strong Wolfe line search). Classes absent from a task's training
  rows cannot be predicted (scikit-learn never sees them either). A test checks the
  predictions against scikit-learn's.
- ``mlp``: one hidden ReLU layer on standardised features, the L2 penalty
  ``alpha ||W||^2 / (2 n_train)`` of scikit-learn's ``MLPClassifier``, Glorot-uniform
  initialisation, full-batch Adam for a fixed number of steps (seeded: the same tasks
  give the same probes). Unlike scikit-learn it has no early stopping and no
  mini-batches; it is our probe, not a copy of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Task:
    """One probe to fit on the rows ``train`` of its problem's ``X``, with labels ``y``."""

    y: np.ndarray  # [n] int class ids in [0, n_classes)
    train: np.ndarray  # [n] bool
    strength: float  # C (linear) or alpha (mlp)


@dataclass
class Problem:
    """An activation matrix, the tasks fitted on it, and the matrices each task predicts."""

    X: np.ndarray  # [n, d]
    tasks: list[Task]
    n_classes: int
    X_score: list[np.ndarray] = field(default_factory=list)  # default: [X]


@dataclass(frozen=True)
class BatchedConfig:
    """Optimiser settings of the batched probe fits (see the module docstring)."""

    #: Maximum L-BFGS iterations of one linear run.
    linear_max_iter: int = 300
    #: L-BFGS gradient tolerance of the linear probe (``tolerance_grad``).
    linear_tol: float = 1e-3
    #: Hidden ReLU units of the MLP probe.
    mlp_hidden: int = 32
    #: Full-batch Adam steps of the MLP probe.
    mlp_steps: int = 100
    #: Adam learning rate of the MLP probe.
    mlp_lr: float = 3e-2
    #: Seed of the MLP probe's Glorot initialisation.
    seed: int = 0
    #: MLP problems are stacked in chunks of at most this many numbers (rows x tasks x max(classes, hidden)).
    max_chunk_elements: int = 2**24


def fit_predict(
    kind: str,
    X: np.ndarray,
    tasks: list[Task],
    n_classes: int,
    X_score: list[np.ndarray] | None = None,
    config: BatchedConfig = BatchedConfig(),
) -> list[list[np.ndarray]]:
    """One problem (``X`` ``[n, d]``, ``kind`` "linear" or "mlp"): per task, the predicted class
    ids ``[m]`` for each ``[m, d]`` matrix of ``X_score`` (default: ``[X]``)."""
    return fit_predict_many(kind, [Problem(X, tasks, n_classes, list(X_score or []))], config)[0]


def fit_predict_many(
    kind: str,
    problems: list[Problem],
    config: BatchedConfig = BatchedConfig(),
) -> list[list[list[np.ndarray]]]:
    """Fit every task of every problem; per problem, per task, one array of predicted
    class ids per matrix of its ``X_score`` (all problems must have as many).

    Raises ``ValueError`` when the problems score different numbers of matrices or ``kind``
    is not "linear" or "mlp".
    """
    problems = [p if p.X_score else Problem(p.X, p.tasks, p.n_classes, [p.X]) for p in problems]
    out: list[list[list[np.ndarray]]] = [[] for _ in problems]
    live = [i for i, p in enumerate(problems) if p.tasks]
    if not live:
        return out
    if len({len(problems[i].X_score) for i in live}) != 1:
        raise ValueError("every problem must score the same number of matrices")
    width = config.mlp_hidden if kind == "mlp" else 1
    chunk: list[int] = []
    size = 0
    for i in live:
        p = problems[i]
        cost = len(p.X) * len(p.tasks) * max(p.n_classes, width)
        # L-BFGS keeps one curvature memory for everything it fits: tasks sharing an X are
        # alike, but stacking different X's (attributes, depths) made it take ~4x the
        # iterations (measured: 212 joint evaluations vs ~54 per problem alone, twice the
        # time), so each linear problem gets its own run. Adam runs a fixed number of steps,
        # so the MLP stacks.
        if chunk and (kind == "linear" or size + cost > config.max_chunk_elements):
            _fit_chunk(kind, [problems[j] for j in chunk], config, [out[j] for j in chunk])
            chunk, size = [], 0
        chunk.append(i)
        size += cost
    _fit_chunk(kind, [problems[j] for j in chunk], config, [out[j] for j in chunk])
    return out


def _pad_stack(arrays: list[np.ndarray], length: int, dtype=torch.float32) -> torch.Tensor:
    """Stack ``[n_i, ...]`` arrays into ``[G, length, ...]``, zero-padded."""
    first = np.asarray(arrays[0])
    out = torch.zeros((len(arrays), length) + first.shape[1:], dtype=dtype)
    for g, a in enumerate(arrays):
        if len(a):
            out[g, : len(a)] = torch.as_tensor(np.asarray(a), dtype=dtype)
    return out


def _fit_chunk(kind: str, problems: list[Problem], config: BatchedConfig, out: list[list]) -> None:
    G = len(problems)
    n = max(len(p.X) for p in problems)
    P = max(len(p.tasks) for p in problems)
    K = max(max(p.n_classes for p in problems), 2)
    X = _pad_stack([p.X for p in problems], n)  # [G, n, d]
    mask = torch.zeros(G, n, P)
    labels = torch.zeros(G, n, P, dtype=torch.long)
    present = torch.zeros(G, P, K, dtype=torch.bool)
    strength = torch.ones(G, P)
    for g, p in enumerate(problems):
        for t, task in enumerate(p.tasks):
            rows = len(task.y)
            mask[g, :rows, t] = torch.as_tensor(task.train, dtype=torch.float32)
            labels[g, :rows, t] = torch.as_tensor(task.y, dtype=torch.long)
            present[g, t, np.unique(task.y[task.train])] = True
            strength[g, t] = task.strength
    n_train = mask.sum(1).clamp(min=1)  # [G, P]
    mean = torch.einsum("gnp,gnd->gpd", mask, X) / n_train[..., None]
    var = torch.einsum("gnp,gnd->gpd", mask, X.square()) / n_train[..., None] - mean.square()
    scale = var.clamp(min=0).sqrt()
    scale = torch.where(scale > 1e-8 * (1 + mean.abs()), scale, torch.ones_like(scale))
    # Classes a task never saw get a large negative logit offset: never predicted, no gradient.
    absent = torch.where(present, 0.0, -1e4)
    weight = mask / n_train[:, None, :]  # each task's training rows weigh 1/n_train
    fit = _fit_linear if kind == "linear" else _fit_mlp if kind == "mlp" else None
    if fit is None:
        raise ValueError(f"unknown probe kind {kind!r}")
    logits_of = fit(X, labels, weight, absent, mean, scale, n_train, strength, config)
    n_scores = len(problems[0].X_score)
    with torch.no_grad():
        predicted = []
        for s in range(n_scores):
            m = max(len(p.X_score[s]) for p in problems)
            predicted.append(logits_of(_pad_stack([p.X_score[s] for p in problems], m)).argmax(-1))  # [G, m, P]
    for g, p in enumerate(problems):
        out[g].extend(
            [[predicted[s][g, : len(p.X_score[s]), t].numpy() for s in range(n_scores)] for t in range(len(p.tasks))]
        )


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over tasks of each task's weighted mean cross-entropy; logits [G, n, P, K]."""
    target = logits.gather(-1, labels[..., None])[..., 0]
    return (weight * (torch.logsumexp(logits, -1) - target)).sum()


def _fit_linear(X, labels, weight, absent, mean, scale, n_train, C, config: BatchedConfig):
    G, _, d = X.shape
    P, K = absent.shape[1:]
    W = torch.zeros(G, P, d, K, requires_grad=True)
    b = torch.zeros(G, P, K, requires_grad=True)

    def logits_of(x):  # standardisation folded into the weights: one batched matmul for all tasks
        W_eff = W / scale[..., None]  # [G, P, d, K]
        b_eff = b + absent - torch.einsum("gpd,gpdk->gpk", mean, W_eff)
        flat = W_eff.permute(0, 2, 1, 3).reshape(G, d, P * K)
        return torch.bmm(x, flat).view(G, x.shape[1], P, K) + b_eff[:, None]

    optimiser = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=config.linear_max_iter,
        history_size=10,
        tolerance_grad=config.linear_tol,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimiser.zero_grad()
        loss = _cross_entropy(logits_of(X), labels, weight)
        loss = loss + (W.square().sum((2, 3)) / (2 * C * n_train)).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return logits_of


def _fit_mlp(X, labels, weight, absent, mean, scale, n_train, alpha, config: BatchedConfig):
    G, _, d = X.shape
    P, K = absent.shape[1:]
    H = config.mlp_hidden
    generator = torch.Generator().manual_seed(config.seed)

    def glorot(fan_in, fan_out, *shape):
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        return ((torch.rand(*shape, generator=generator) * 2 - 1) * bound).requires_grad_()

    W1, b1 = glorot(d, H, G, P, d, H), glorot(d, H, G, P, H)
    W2, b2 = glorot(H, K, G, P, H, K), glorot(H, K, G, P, K)

    def logits_of(x):
        W1_eff = W1 / scale[..., None]
        b1_eff = b1 - torch.einsum("gpd,gpdh->gph", mean, W1_eff)
        flat = W1_eff.permute(0, 2, 1, 3).reshape(G, d, P * H)
        hidden = torch.relu(torch.bmm(x, flat).view(G, x.shape[1], P, H) + b1_eff[:, None])
        return torch.einsum("gnph,gphk->gnpk", hidden, W2) + (b2 + absent)[:, None]

    optimiser = torch.optim.Adam([W1, b1, W2, b2], lr=config.mlp_lr)
    for _ in range(config.mlp_steps):
        optimiser.zero_grad()
        loss = _cross_entropy(logits_of(X), labels, weight)
        penalty = W1.square().sum((2, 3)) + W2.square().sum((2, 3))
        loss = loss + (alpha * penalty / (2 * n_train)).sum()
        loss.backward()
        optimiser.step()
    return logits_of
