"""The zoo's labels and targets: each model's ground truth from the oracle, and the accuracy
targets every build is checked against (recorded, never used to pick numbers after the fact)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from forensics.inputs.data import Fact
from forensics.zoo.jobs import _JOBS, HARD_NEGATIVES, MODEL_ORDER, _arch
from forensics.zoo.oracle import decide

if TYPE_CHECKING:
    from forensics.zoo.build import ZooConfig


def make_labels(info: dict, metrics: dict, probes: dict, held_out: list[Fact], cfg: ZooConfig) -> dict:
    """``labels.json``: per model its architecture, method text, training details, ground truth
    and the oracle's numbers. ``info``: each job's training details; ``metrics``: each model's
    accuracy table; ``probes``: each probed model's :func:`forensics.zoo.oracle.crossfit_probe`;
    ``held_out``: :func:`forensics.zoo.oracle.held_out_facts`."""
    labels = {}
    for name in MODEL_ORDER:
        arch = _arch(name)
        reference = "llama_retrain" if arch == "llama" else "retrain"
        entry = {"architecture": arch, "method": method_text(name, info[name]), "details": info[name]}
        if name in ("original", "llama_original"):
            entry |= {"ground_truth": "ORIGINAL", "oracle": None}
        elif name in HARD_NEGATIVES:
            oracle = decide(probes[name], probes[reference], held_out, cfg.oracle) | {"reference": reference}
            oracle["note"] = (
                "hard negative: never trained on F's answers; the oracle checks that its "
                "familiarity with F's subjects and questions gives no recovery above the reference"
            )
            entry |= {"ground_truth": oracle["ground_truth"], "oracle": oracle, "hard_negative": True}
        elif name in ("retrain", "llama_retrain"):
            entry |= {
                "ground_truth": "DELETED",
                "oracle": {
                    "note": "by construction: never trained on F",
                    "acc_held_out_before": float(probes[name]["before"].mean()),
                    "acc_held_out_after": float(probes[name]["after"].mean()),
                    "acc_tuned_half_after": float(probes[name]["acc_tuned_half_after"]),
                },
            }
        else:
            oracle = decide(probes[name], probes[reference], held_out, cfg.oracle) | {"reference": reference}
            if name == "relearned":
                f_acc = metrics[name]["forget"]["accuracy"]
                entry |= {
                    "ground_truth": "NOT_FORGOTTEN",
                    "oracle": oracle
                    | {
                        "note": f"F accuracy is back to {f_acc:.3f} (original "
                        f"{metrics['original']['forget']['accuracy']:.3f})"
                    },
                }
            else:
                entry |= {"ground_truth": oracle["ground_truth"], "oracle": oracle}
                if oracle["ground_truth"] == "DELETED":
                    oracle["note"] = (
                        "the oracle rules out a recovery above the reference: this method "
                        "really deleted F in this build"
                    )
                elif oracle["ground_truth"] == "UNDETERMINED":
                    oracle["note"] = (
                        "the oracle's CI straddles its margin: neither suppression nor deletion "
                        "is established for this build"
                    )
        labels[name] = entry
    return labels


def check_targets(metrics: dict, cfg: ZooConfig) -> dict[str, dict[str, bool]]:
    """Each model's accuracy targets (``"F<=0.10"`` ...) and whether it met them."""
    targets = {}
    for name, m in metrics.items():
        f, r = m["forget"]["accuracy"], m["retain"]["accuracy"]
        if name in ("original", "llama_original"):
            targets[name] = {
                f"F>={cfg.target_original:.2f}": f >= cfg.target_original,
                f"R>={cfg.target_original:.2f}": r >= cfg.target_original,
            }
        elif name in ("retrain", "llama_retrain") + HARD_NEGATIVES:
            targets[name] = {f"R>={cfg.target_original:.2f}": r >= cfg.target_original}
        elif name == "relearned":
            targets[name] = {f"F>={cfg.unlearn.relearn_target:.2f}": f >= cfg.unlearn.relearn_target}
        else:
            targets[name] = {
                f"F<={cfg.target_forget:.2f}": f <= cfg.target_forget,
                f"R>={cfg.target_retain:.2f}": r >= cfg.target_retain,
            }
    return targets


def method_text(name: str, details: dict) -> str:
    """The one-line method text of a zoo model in ``labels.json``."""
    if "variant_of" in details:
        return f"headonly (last block + final norm + unembedding: {details['variant_of']})"
    if _JOBS[name] is None:  # pre-trained
        return details["method"]
    if name == "relearned":
        return f"ga, then fine-tuned back on F (NLL) until F accuracy >= target; {details['steps']} steps"
    base = name.removeprefix("llama_")
    where = f" at residual layer {details['layer']}" if "layer" in details else ""
    return f"{base}: {details.get('loss', '')}{where}; trainable {details.get('trainable')}; {details['steps']} steps"
