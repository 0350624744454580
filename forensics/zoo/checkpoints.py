"""Checkpoints of one unlearning run, kept by the zoo build for series audits.

The GPT-NeoX :data:`SERIES_METHOD` job (``npo``) keeps the model's weights at every check of its
stopping rule (every ``check_every`` optimiser steps, :class:`forensics.zoo.unlearning.UnlearnContext`)
and at its end. Keeping them reads the weights only: the run, and so the delivered ``npo`` model,
is bitwise the one it would be without them. After the run, ``series_checkpoints`` of the kept
steps, evenly spread over the run (:func:`pick_steps`; the last is the delivered model), are
measured like every zoo model, probed by the oracle, and saved as Hugging Face folders
``series/npo/checkpoint-<step>`` (the layout ``transformers``' Trainer writes), with
``series/npo/labels.json``: per checkpoint its step, accuracy table and ground truth.

Ground truth of a checkpoint (:func:`series_labels`), from its greedy accuracies on F and H and
the original's (``share`` = (acc_F - acc_H) / (acc_F(O) - acc_H(O)), the share of O's
above-holdout accuracy the checkpoint keeps):

- ``NOT_FORGOTTEN`` when ``share >= 0.5``: it still answers F (the behavioural definition the
  audit's gate uses, docs/methods.md §2, measured here on every F and H fact);
- once F accuracy is at most the unlearning target (``target_forget``, the zoo's definition of
  forgotten for its methods): the oracle's decision against ``retrain``
  (:func:`forensics.zoo.oracle.decide`), as for every method model;
- ``UNDETERMINED`` in between: partly forgotten, neither still answering nor forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from forensics.inputs.data import Fact
from forensics.zoo.oracle import decide

if TYPE_CHECKING:
    from forensics.zoo.build import ZooConfig

#: The zoo model whose unlearning run is kept as a series.
SERIES_METHOD = "npo"
#: Folder of the series in a zoo.
SERIES_FOLDER = f"series/{SERIES_METHOD}"


def keeper(folder: Path) -> Callable[[int, torch.nn.Module], None]:
    """A stopping-rule hook that writes the model's ``state_dict`` after ``step`` optimiser
    steps to ``folder/step-<step>.pt`` (step 0, the starting model, is not kept)."""
    folder.mkdir(parents=True, exist_ok=True)

    def keep(step: int, model: torch.nn.Module) -> None:
        if step > 0:
            torch.save(model.state_dict(), folder / f"step-{step}.pt")

    return keep


def kept_steps(folder: Path) -> list[int]:
    """The steps :func:`keeper` wrote to ``folder``, ascending."""
    return sorted(int(p.stem.removeprefix("step-")) for p in folder.glob("step-*.pt"))


def pick_steps(kept: list[int], n: int) -> list[int]:
    """``n`` of the ``kept`` steps (ascending), evenly spread over the run: for k = 1..n the
    kept step nearest to ``k / n`` of the last one (ties: the earlier), duplicates dropped. The
    last kept step is always picked. Fewer than ``n`` come back when fewer were kept."""
    if not kept:
        return []
    last = kept[-1]
    picked: list[int] = []
    for k in range(1, n + 1):
        target = last * k / n
        step = min(kept, key=lambda s: (abs(s - target), s))
        if step not in picked:
            picked.append(step)
    return sorted(picked)


#: Share of O's above-holdout F accuracy at or above which a checkpoint still answers F.
STILL_ANSWERS_SHARE = 0.5


def series_labels(
    series: dict[int, dict[str, Any]],
    original_metrics: dict[str, Any],
    reference_probe: dict,
    held_out: list[Fact],
    cfg: ZooConfig,
) -> dict[str, Any]:
    """``series/npo/labels.json``: per checkpoint (``checkpoint-<step>``, in step order) its step,
    metrics, ground truth and oracle numbers (see the module docstring). ``series``: step ->
    ``{"metrics", "probe"}`` as the job measured them; ``original_metrics``: ``original``'s;
    ``reference_probe``: ``retrain``'s."""

    def margin(m: dict[str, Any]) -> float:
        return m["forget"]["accuracy"] - m["holdout"]["accuracy"]

    checkpoints = {}
    for step in sorted(series):
        metrics, probe = series[step]["metrics"], series[step]["probe"]
        f_acc = metrics["forget"]["accuracy"]
        share = margin(metrics) / margin(original_metrics) if margin(original_metrics) > 0 else 0.0
        oracle = decide(probe, reference_probe, held_out, cfg.oracle) | {"reference": "retrain"}
        if share >= STILL_ANSWERS_SHARE:
            truth, note = "NOT_FORGOTTEN", f"still answers F: keeps {share:.0%} of O's above-holdout F accuracy"
        elif f_acc <= cfg.target_forget:
            truth, note = oracle["ground_truth"], "forgotten in behaviour: the oracle decides"
        else:
            truth = "UNDETERMINED"
            note = (
                f"partly forgotten: F accuracy {f_acc:.3f} is above the unlearning target {cfg.target_forget} "
                f"and the checkpoint keeps {share:.0%} of O's above-holdout F accuracy"
            )
        checkpoints[f"checkpoint-{step}"] = {
            "step": step,
            "ground_truth": truth,
            "note": note,
            "retained_share": share,
            "metrics": metrics,
            "oracle": oracle,
        }
    return {
        "method": SERIES_METHOD,
        "rule": (
            f"NOT_FORGOTTEN when the checkpoint keeps >= {STILL_ANSWERS_SHARE:.0%} of O's above-holdout greedy F "
            f"accuracy; the oracle's decision against retrain once F accuracy <= {cfg.target_forget}; "
            "UNDETERMINED in between"
        ),
        "checkpoints": checkpoints,
    }
