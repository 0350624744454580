"""Sparse autoencoders (SAELens): training and loading, expert features, restoration by
steering (issue 4).

- :mod:`saes.sae`: a SAELens TopK SAE on O's residual stream (trained with ``SAETrainer``
  from an in-memory activation iterator, offline; cached; quality bar), or the user's own
  SAELens SAE folder;
- :mod:`saes.experts`: expert features (F vs R in O) and their survival in U;
- :mod:`saes.features`: the ``sae_features`` evidence line (expert features F vs R, their
  survival in U on F vs H);
- :mod:`saes.steering`: the ``steering_restoration`` evidence line (fact-agnostic
  interventions: ablate / reverse the mean unlearning direction, add expert features).
"""

from saes.experts import FeatureConfig, expert_features, fact_activations, survival
from saes.features import sae_feature_line
from saes.sae import (
    SAEQuality, SAETrainConfig, TrainedSAE, default_layer, get_sae, layer_from_probe_curves, load_sae_folder,
    token_texts, train_sae,
)
from saes.steering import (
    INTERVENTIONS, Intervention, SteeringConfig, make_hooks, restoration_sweep, split_by_subject, steering_line,
)

__all__ = [
    "FeatureConfig", "INTERVENTIONS", "Intervention", "SAEQuality", "SAETrainConfig", "SteeringConfig",
    "TrainedSAE", "default_layer", "expert_features", "fact_activations", "get_sae", "layer_from_probe_curves",
    "load_sae_folder", "make_hooks", "restoration_sweep", "sae_feature_line", "split_by_subject",
    "steering_line", "survival", "token_texts", "train_sae",
]
