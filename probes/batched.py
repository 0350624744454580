"""Many small probes fitted at once, in torch.

The probe lines fit hundreds of small classifiers that share their inputs: every fold of
a grouped cross-validation, every regularisation strength of a grid, every label
permutation of a null distribution is the same activation matrix ``X`` with another
training mask, label vector or strength. Fitted one at a time with scikit-learn, the
small zoo's attribute line took minutes (about 1 s per 960 x 128, 32-class fit, ~1100
fits). Here all the tasks that share one ``X`` are fitted together: each task's
standardisation is folded into its weights, so the forward pass of every task is a
single matrix product ``X @ W_all``, and the tasks' objectives are summed (they are
independent, so the joint optimum is each task's optimum).

- ``linear``: L2 multinomial logistic regression on standardised features, the objective
  of scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C))``:
  ``mean training cross-entropy + ||W||^2 / (2 C n_train)``, intercept unpenalised,
  minimised with L-BFGS (strong Wolfe line search). Classes absent from a task's training
  rows cannot be predicted (scikit-learn never sees them either). A test checks the
  predictions against scikit-learn's.
- ``mlp``: one hidden ReLU layer on standardised features, the L2 penalty
  ``alpha ||W||^2 / (2 n_train)`` of scikit-learn's ``MLPClassifier``, Glorot-uniform
  initialisation, full-batch Adam for a fixed number of steps (seeded: the same task
  gives the same probe). Unlike scikit-learn it has no early stopping and no
  mini-batches; it is our probe, not a copy of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Task:
    """One probe to fit on the rows ``train`` of a shared ``X``, with labels ``y``."""

    y: np.ndarray  # [n] int class ids in [0, n_classes)
    train: np.ndarray  # [n] bool
    strength: float  # C (linear) or alpha (mlp)


@dataclass(frozen=True)
class BatchedConfig:
    linear_max_iter: int = 300
    linear_tol: float = 1e-3
    # 32 hidden units and 100 steps read the small zoo's attributes as well as 64 and 300
    # (within 0.05 accuracy at every depth we tried) at a quarter of the cost.
    mlp_hidden: int = 32
    mlp_steps: int = 100
    mlp_lr: float = 3e-2
    seed: int = 0
    #: tasks fitted together are chunked so that one chunk's logits stay below this many numbers
    max_chunk_elements: int = 2**24


def fit_predict(kind: str, X: np.ndarray, tasks: list[Task], n_classes: int, X_score: list[np.ndarray] | None = None,
                config: BatchedConfig = BatchedConfig()) -> list[list[np.ndarray]]:
    """Fit every task on its training rows of ``X``; predict each matrix of ``X_score``
    (default: ``[X]``) with every task. Returns, per task, one int array of predicted
    class ids per matrix of ``X_score``."""
    X_score = [X] if X_score is None else X_score
    if not tasks:
        return []
    Xt = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
    Xs = [torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32) for x in X_score]
    per_task = n_classes * (config.mlp_hidden if kind == "mlp" else 1)
    chunk = max(1, config.max_chunk_elements // max(1, len(X) * per_task))
    out: list[list[np.ndarray]] = []
    for start in range(0, len(tasks), chunk):
        part = tasks[start:start + chunk]
        if kind == "linear":
            out.extend(_linear(Xt, part, n_classes, Xs, config))
        elif kind == "mlp":
            out.extend(_mlp(Xt, part, n_classes, Xs, config, seed=config.seed + start))
        else:
            raise ValueError(f"unknown probe kind {kind!r}")
    return out


def _prepare(X: torch.Tensor, tasks: list[Task], n_classes: int):
    """Per task: training weights [n, P], one-hot labels [n, P, K], standardisation and class masks."""
    mask = torch.as_tensor(np.stack([t.train for t in tasks], axis=1), dtype=torch.float32)  # [n, P]
    labels = torch.as_tensor(np.stack([t.y for t in tasks], axis=1), dtype=torch.long)  # [n, P]
    n_train = mask.sum(0).clamp(min=1)  # [P]
    mean = (mask.T @ X) / n_train[:, None]  # [P, d]
    var = (mask.T @ X.square()) / n_train[:, None] - mean.square()
    scale = var.clamp(min=0).sqrt()
    scale = torch.where(scale > 1e-8 * (1 + mean.abs()), scale, torch.ones_like(scale))
    present = torch.zeros(len(tasks), n_classes, dtype=torch.bool)  # [P, K]: classes seen in training
    for p, task in enumerate(tasks):
        present[p, np.unique(task.y[task.train])] = True
    # Absent classes get a large negative logit offset: never predicted, no gradient.
    absent = torch.where(present, 0.0, -1e4)
    weight = mask / n_train  # each task's rows weigh 1/n_train
    strength = torch.tensor([t.strength for t in tasks], dtype=torch.float32)
    return weight, labels, absent, mean, scale, n_train, strength


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over tasks of each task's weighted mean cross-entropy; logits [n, P, K]."""
    target = logits.gather(-1, labels[:, :, None])[:, :, 0]
    return (weight * (torch.logsumexp(logits, -1) - target)).sum()


def _linear(X, tasks, n_classes, X_score, config: BatchedConfig) -> list[list[np.ndarray]]:
    weight, labels, absent, mean, scale, n_train, C = _prepare(X, tasks, n_classes)
    P, d = mean.shape
    W = torch.zeros(P, d, n_classes, requires_grad=True)
    b = torch.zeros(P, n_classes, requires_grad=True)

    def logits_of(x):  # standardisation folded into the weights: one matmul for all tasks
        W_eff = W / scale[:, :, None]  # [P, d, K]
        b_eff = b + absent - torch.einsum("pd,pdk->pk", mean, W_eff)
        return (x @ W_eff.permute(1, 0, 2).reshape(d, P * n_classes)).view(len(x), P, n_classes) + b_eff

    optimiser = torch.optim.LBFGS([W, b], lr=1.0, max_iter=config.linear_max_iter, history_size=10,
                                  tolerance_grad=config.linear_tol, tolerance_change=1e-10,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = _cross_entropy(logits_of(X), labels, weight)
        loss = loss + (W.square().sum((1, 2)) / (2 * C * n_train)).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        predictions = [logits_of(x).argmax(-1) for x in X_score]
    return [[p[:, i].numpy() for p in predictions] for i in range(P)]


def _mlp(X, tasks, n_classes, X_score, config: BatchedConfig, seed: int) -> list[list[np.ndarray]]:
    weight, labels, absent, mean, scale, n_train, alpha = _prepare(X, tasks, n_classes)
    P, d = mean.shape
    H = config.mlp_hidden
    generator = torch.Generator().manual_seed(seed)

    def glorot(fan_in, fan_out, *shape):
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        return ((torch.rand(*shape, generator=generator) * 2 - 1) * bound).requires_grad_()

    W1, b1 = glorot(d, H, P, d, H), glorot(d, H, P, H)
    W2, b2 = glorot(H, n_classes, P, H, n_classes), glorot(H, n_classes, P, n_classes)

    def logits_of(x):
        W1_eff = W1 / scale[:, :, None]
        b1_eff = b1 - torch.einsum("pd,pdh->ph", mean, W1_eff)
        hidden = torch.relu((x @ W1_eff.permute(1, 0, 2).reshape(d, P * H)).view(len(x), P, H) + b1_eff)
        return torch.einsum("nph,phk->npk", hidden, W2) + b2 + absent

    optimiser = torch.optim.Adam([W1, b1, W2, b2], lr=config.mlp_lr)
    for _ in range(config.mlp_steps):
        optimiser.zero_grad()
        loss = _cross_entropy(logits_of(X), labels, weight)
        penalty = W1.square().sum((1, 2)) + W2.square().sum((1, 2))
        loss = loss + (alpha * penalty / (2 * n_train)).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predictions = [logits_of(x).argmax(-1) for x in X_score]
    return [[p[:, i].numpy() for p in predictions] for i in range(P)]
