"""Validation table for the SAE lines (issue 4): every zoo model against its original.

    python benchmarks/saes_zoo_table.py [--zoo zoo] [--models rmu retrain ...] [--json out.json] [--cache DIR]

Per model: the SAE's quality (trained once per original, cached in ``--cache`` by
:func:`forensics.sae.train.get_sae`), expert-feature survival on F vs H and the sae_features vote,
the best restoration rate per steering intervention on F vs H (with the CI of F - H) and
the steering vote. Llama models are compared with ``llama_original``, the others with
``original``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from forensics.core.context import AuditContext
    from forensics.inputs.data import load_facts, load_sequences
    from forensics.inputs.loading import load_model
    from forensics.lines.sae_features import sae_feature_line
    from forensics.lines.steering_restoration import SteeringConfig, steering_line
    from forensics.sae.experts import FeatureConfig
    from forensics.sae.train import get_sae, token_texts

    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--json")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "forensics-sae-cache"))
    args = parser.parse_args()
    zoo = Path(args.zoo)
    info = json.loads((zoo / "zoo.json").read_text())
    labels = json.loads((zoo / "labels.json").read_text())
    data = {k: zoo / v for k, v in info["data"].items()}
    F, _ = load_facts(data["forget"])
    R, _ = load_facts(data["retain"])
    H, _ = load_facts(data["holdout"])
    S, _ = load_sequences(data["seq_retain"])
    names = args.models or [n for n in info["models"] if n not in ("original", "llama_original")]
    fcfg = FeatureConfig()
    scfg = SteeringConfig(features=fcfg)
    originals, saes, rows = {}, {}, []
    header = (
        f"{'model':<15}{'truth':<14}{'SAE EV/L0/dead':<17}{'surv F':>7}{'surv H':>7}{'feat vote':>11}"
        f"{'ablate F/H':>13}{'reverse F/H':>13}{'feats F/H':>13}{'best CI(F-H)':>17}{'steer vote':>12}{'s':>6}"
    )
    print(header, flush=True)
    for name in names:
        base = "llama_original" if name.startswith("llama_") else "original"
        if base not in originals:
            originals[base] = load_model(zoo / info["models"][base])
            saes[base] = get_sae(originals[base], token_texts(F, R, H, S), fcfg.sae, cache_dir=Path(args.cache))
        O, sae = originals[base], saes[base]
        U = load_model(zoo / info["models"][name])
        start = time.perf_counter()
        # One fresh context per line (no cache folder): each line captures and scores on its own.
        feat = sae_feature_line(AuditContext(O, U, F, R, H, None, S), fcfg, sae=sae)
        steer = steering_line(AuditContext(O, U, F, R, H, None, S), scfg, sae=sae)
        seconds = time.perf_counter() - start
        q = sae.quality
        best = steer.details.get("best", {})

        def fh(kind):
            b = best.get(kind)  # noqa: B023 - called within this iteration
            return f"{b['forget']:+.2f}/{b['holdout']:+.2f}" if b else "-"

        surv = feat.details.get("survival", {})
        ci = f"[{steer.ci[0]:+.2f},{steer.ci[1]:+.2f}]" if steer.ci else "-"
        fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else "-"  # noqa: E731
        print(
            f"{name:<15}{labels[name]['ground_truth']:<14}"
            f"{q.explained_variance:.2f}/{q.mean_l0:.0f}/{q.dead_fraction:.2f}   "
            f"{fmt(surv.get('survival_forget')):>7}{fmt(surv.get('survival_holdout')):>7}{str(feat.vote):>11}"
            f"{fh('ablate'):>13}{fh('reverse'):>13}{fh('features'):>13}{ci:>17}{str(steer.vote):>12}{seconds:>6.0f}",
            flush=True,
        )
        rows.append(
            {
                "model": name,
                "ground_truth": labels[name]["ground_truth"],
                "sae_quality": q.to_dict(),
                "sae_features": feat.to_json(),
                "steering": steer.to_json(),
                "seconds": seconds,
            }
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
