"""Shared numerics that several lines (and the zoo) use: activation capture
(:mod:`~forensics.compute.capture`), answer scoring and measures, free-text generation,
statistics, fine-tuning, quantization, the lenses, membership scores, plotting and the
atomic writers. Nothing here knows about evidence lines or the verdict."""
