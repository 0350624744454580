"""The relearning attack (the ``relearning_attack`` line; docs/methods.md §8): the line and its
vote (:mod:`.line`), its settings (:mod:`.config`) and its positive control (:mod:`.control`)."""

from forensics.compute.relearning import model_lr, split_by_subject
from forensics.lines.relearning_attack.config import DECISION_ONLY, RelearningConfig, attack_lr, resolved
from forensics.lines.relearning_attack.control import original_mean, original_signal, positive_control
from forensics.lines.relearning_attack.line import (
    check_inputs,
    decide,
    deletion_scale,
    relearning_line,
)

__all__ = [
    "DECISION_ONLY",
    "RelearningConfig",
    "attack_lr",
    "check_inputs",
    "decide",
    "deletion_scale",
    "model_lr",
    "original_mean",
    "original_signal",
    "positive_control",
    "relearning_line",
    "resolved",
    "split_by_subject",
]
