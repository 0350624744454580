"""Sparse autoencoders (SAELens), the library the SAE evidence lines share.

- :mod:`forensics.sae.train`: a SAELens TopK SAE on O's residual stream (trained with
  ``SAETrainer`` from an in-memory activation iterator, offline; cached; quality bar), or the
  user's own SAELens SAE folder;
- :mod:`forensics.sae.experts`: expert features (F vs R in O) and their survival in U.

The lines that use them are :mod:`forensics.lines.sae_features` and
:mod:`forensics.lines.steering_restoration`.
"""
