"""``forensics memprobe``: the leave-one-out memorisation probe against a random-init twin (:mod:`forensics.probing.leave_one_out`)."""

from __future__ import annotations

import json
from pathlib import Path

from forensics.cli.common import device_args


def add_parser(sub) -> None:
    """Add the ``memprobe`` sub-command to ``sub``."""
    memprobe = sub.add_parser("memprobe", help="leave-one-out cross-sequence memorisation probe")
    memprobe.add_argument("--model", required=True, type=Path)
    memprobe.add_argument("--memorised", required=True, type=Path, help="M: sequences the model memorised")
    memprobe.add_argument("--matched", required=True, type=Path, help="C: M with distinctive tokens swapped")
    memprobe.add_argument("--paraphrase", required=True, type=Path, help="B: a further paraphrase of C")
    memprobe.add_argument("--out", required=True, type=Path)
    memprobe.add_argument("--seed", type=int, default=0)
    device_args(memprobe)


def run(args) -> int:
    """Per-depth memorisation gap of one model against its random-init twin."""
    from forensics.compute.atomic import atomic_output_dir, check_output_dir
    from forensics.inputs.data import load_sequences
    from forensics.inputs.loading import load_model
    from forensics.probing.leave_one_out import (
        MemorisationConfig,
        memorisation_gap,
        memprobe_figure,
        memprobe_table,
        random_init_twin,
    )

    check_output_dir(args.out)
    pools = [[s.text for s in load_sequences(path)[0]] for path in (args.memorised, args.matched, args.paraphrase)]
    loaded = load_model(args.model, args.device, args.dtype)
    config = MemorisationConfig(seed=args.seed)
    memorised, matched, paraphrase = pools
    result = memorisation_gap(loaded, memorised, matched, paraphrase, config)
    control = memorisation_gap(random_init_twin(loaded, seed=args.seed), memorised, matched, paraphrase, config)
    rows = memprobe_table(result, control, config)
    with atomic_output_dir(args.out) as out:
        (out / "memprobe.json").write_text(
            json.dumps(
                {
                    "model": str(args.model),
                    "n_keys": result["n_keys"],
                    "prefixes": list(config.prefixes),
                    "seed": args.seed,
                    "per_depth": rows,
                },
                indent=2,
            )
        )
        header = "depth,true_loo,pure_loo,gap,gap_ci_low,gap_ci_high,control_gap,gap_minus_control\n"
        (out / "memprobe.csv").write_text(
            header
            + "".join(
                f"{r['depth']},{r['true_loo']:.4f},{r['pure_loo']:.4f},{r['gap']:.4f},{r['gap_ci'][0]:.4f},"
                f"{r['gap_ci'][1]:.4f},{r['control_gap']:.4f},{r['gap_minus_control']:.4f}\n"
                for r in rows
            )
        )
        (out / "memprobe.png").write_bytes(memprobe_figure(rows, f"{args.model.name}: {result['n_keys']} keys"))
    print(f"{'depth':>5} {'true':>6} {'pure':>6} {'gap':>7} {'95% CI':>17} {'random':>7}")
    for r in rows:
        print(
            f"{r['depth']:>5} {r['true_loo']:>6.3f} {r['pure_loo']:>6.3f} {r['gap']:>+7.3f} "
            f"[{r['gap_ci'][0]:+.3f}, {r['gap_ci'][1]:+.3f}] {r['control_gap']:>+7.3f}"
        )
    print(f"written to {args.out}")
    return 0
