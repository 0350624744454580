"""SAE training time on one small-zoo layer, and the steering sweep time (issue 4).

    python benchmarks/saes.py [--zoo zoo] [--model rmu]

Prints, measured in this one run: the capture of O's tokens, the SAELens training of the
default SAE (no cache) with its quality and tokens/second, and one full default steering
sweep (every intervention, layer and alpha, both folds) on ``original`` vs ``--model``
with facts scored per second. Target: one small-zoo layer's SAE in under 2 minutes on
2 CPU cores. Record ``uptime`` next to the numbers: other jobs on the machine slow them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import torch

    from forensics.compute.capture import layer_hook
    from forensics.core.context import AuditContext
    from forensics.inputs.data import load_facts, load_sequences
    from forensics.inputs.loading import load_model
    from forensics.lines.steering_restoration import SteeringConfig, grid, restoration_sweep
    from forensics.sae.train import (
        SAETrainConfig,
        _split_texts,
        capture_tokens,
        default_layer,
        measure_quality,
        token_texts,
        train_sae,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--model", default="rmu")
    args = parser.parse_args()
    zoo = Path(args.zoo)
    F, _ = load_facts(zoo / "data/forget.jsonl")
    R, _ = load_facts(zoo / "data/retain.jsonl")
    H, _ = load_facts(zoo / "data/holdout.jsonl")
    S, _ = load_sequences(zoo / "data/seq_retain.jsonl")
    O = load_model(zoo / "models/original")
    U = load_model(zoo / f"models/{args.model}")
    print(f"torch threads {torch.get_num_threads()}; load before: {os.getloadavg()}")

    config = SAETrainConfig()
    layer = default_layer(O.n_layers)
    hook = layer_hook(layer)
    texts = token_texts(F, R, H, S)
    start = time.perf_counter()
    x, offsets = capture_tokens(O, texts, hook)
    t_capture = time.perf_counter() - start
    train_rows, eval_rows = _split_texts(offsets, config.eval_fraction, config.seed)
    start = time.perf_counter()
    sae = train_sae(x[train_rows], config, hook)
    t_train = time.perf_counter() - start
    quality = measure_quality(sae, x[eval_rows], x, config)
    samples = (config.training_tokens // config.batch_size) * config.batch_size
    print(
        f"capture {len(x)} tokens of {len(texts)} texts at {hook}: {t_capture:.1f} s "
        f"({len(x) / t_capture:,.0f} tokens/s)"
    )
    print(
        f"SAE training (TopK k={config.k}, d_sae={config.expansion}x{O.model.cfg.d_model}, {samples:,} samples "
        f"over {int(train_rows.sum())} distinct tokens): {t_train:.1f} s ({samples / t_train:,.0f} tokens/s)"
    )
    print(
        f"quality: EV {quality.explained_variance:.3f}, L0 {quality.mean_l0:.1f}, dead {quality.dead_fraction:.2f}, "
        f"trustworthy {quality.trustworthy}"
    )

    from forensics.sae.train import TrainedSAE, _to_inference

    trained = TrainedSAE(_to_inference(sae), hook, layer, quality)
    steer = SteeringConfig()
    ctx = AuditContext(O, U, F, R, H, None, S)
    n_cells = len(grid(steer, U.n_layers, layer))
    start = time.perf_counter()
    restoration_sweep(ctx, steer, trained)
    t_sweep = time.perf_counter() - start
    n_scored = n_cells * (len(F) + len(H) + 2 * min(steer.n_retain, len(R)))
    print(
        f"steering sweep ({n_cells} cells x 2 folds, {n_scored:,} fact scorings): {t_sweep:.1f} s "
        f"({n_scored / t_sweep:,.0f} facts/s)"
    )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
