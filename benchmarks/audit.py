"""Benchmark: wall time of a standard audit of one small-zoo pair, by stage, and the share of
time spent in model forward / backward passes (the physical floor).

Runs ``forensics.audit`` (profile ``standard`` by default) of ``--model`` against its
original on the zoo's F / R / H, writing the reports into a temporary folder (PDF
included, as the command does), with no cache to start from. Instrumentation:

- **stages**: each evidence line's wall time is timed around its ``run`` function (the
  registry entries are wrapped before the audit starts) and assigned to a stage: probes
  (behaviour gate, attribute probes, logit lens, trace detector, memorisation, CKA), SAE
  (sae_features), steering, REMIND, attacks (relearning, quantization, membership
  inference). **capture** is the time inside :func:`forensics.compute.capture.capture` (and
  ``capture_facts``), wherever a line calls it (outermost call only), and is *subtracted*
  from the line it happened in, so the stages partition the wall time: loading (models,
  data, validation: everything before the first line), capture, the line stages (net of
  capture), report (``AuditResult.write``: HTML, PDF, JSON, figures) and other (the rest:
  verdict, examples table).
- **forward passes by (model, set)**: every outermost LM call attributed to O, U or a
  derived model and to the F / R / H set its rows come from (``benchmarks/forward_passes.py``),
  and the audit context's shared results: how many captures and answer scorings were
  computed and how many were served from the context instead;
- **per line**: its wall time, the LM forward and backward seconds spent inside it and their
  share of its wall time, beside the budget the line declares for the config it ran with
  (``register(..., budget=...)``: which models, sets, token positions, blocks and steps);
- **model passes**: global module hooks (``torch.nn.modules.module.register_module_forward_pre_hook``
  / ``register_module_forward_hook``) time every *outermost* module call (and
  ``HookedTransformer.forward`` is wrapped, since ``run_with_hooks`` calls it directly); a call whose
  outermost module is a language model (a TransformerLens ``HookedTransformer`` or a
  ``transformers`` ``PreTrainedModel``) counts as an LM forward, anything else (SAEs,
  probe MLPs) as another module's forward. ``torch.autograd.backward`` / ``torch.autograd.grad``
  are wrapped with a timer; a backward counts as an LM backward when an LM forward ran with
  gradients enabled since the previous backward. The floor share is
  (LM forward + LM backward) / wall time.

    python benchmarks/audit.py [--zoo zoo] [--model npo] [--profile standard] [--threads 2] [--dtype float32]

Prints the machine's load average next to the timings: other processes slow every stage.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
# Run as a script, this folder is sys.path[0]: put the repository root first, so that the
# working tree's `forensics` is the one imported.
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

STAGES = {
    "behaviour": "probes",
    "attribute_probes": "probes",
    "logit_lens": "probes",
    "trace_detector": "probes",
    "memorisation_probe": "probes",
    "cka": "probes",
    "sae_features": "SAE",
    "steering_restoration": "steering",
    "remind": "REMIND",
    "relearning_attack": "attacks",
    "quantization_attack": "attacks",
    "membership_inference": "attacks",
}


class Timers:
    def __init__(self):
        self.capture = 0.0
        self.capture_in_line: dict[str, float] = {}
        self.line_wall: dict[str, float] = {}
        self.current_line: str | None = None
        self.first_line_start: float | None = None
        self.report = 0.0
        self.lm_forward = 0.0
        self.other_forward = 0.0
        self.backward_lm = 0.0
        self.backward_other = 0.0
        self.n_lm_forward = 0
        self.lm_tokens = 0  # token positions through LM forwards (batch x length of the input ids)
        self.lm_grad_tokens = 0  # of which with gradients enabled (a backward follows)
        self.lm_tokens_by_line: dict[str, int] = {}  # forward token positions by the line that ran them
        self.lm_seconds_by_line: dict[str, float] = {}  # LM forward + backward seconds by the line that ran them
        self.line_config: dict[str, object] = {}  # each line's config as the audit ran it
        self._depth = 0
        self._capture_depth = 0
        self._fwd_start = 0.0
        self._fwd_is_lm = False
        self._grad_lm_since_backward = False


def instrument(t: Timers) -> None:
    import torch
    from torch.nn.modules import module as nn_module
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedModel

    import forensics.compute.capture as capture_mod
    from forensics.core.registry import LINES, discover_lines
    from forensics.reports.results import AuditResult

    def pre(module, args):
        if t._depth == 0:
            t._fwd_start = time.perf_counter()
            t._fwd_is_lm = isinstance(module, (HookedTransformer, PreTrainedModel))
            if t._fwd_is_lm:
                x = args[0] if args and isinstance(args[0], torch.Tensor) else None
                # token ids [batch, pos], or a residual stream [batch, pos, d_model] (a pass that starts at a block)
                tokens = 0 if x is None else (x.shape[0] * x.shape[1] if x.dim() >= 2 else x.numel())
                t.lm_tokens += tokens
                where = t.current_line or "loading and other"
                t.lm_tokens_by_line[where] = t.lm_tokens_by_line.get(where, 0) + tokens
                if torch.is_grad_enabled():
                    t._grad_lm_since_backward = True
                    t.lm_grad_tokens += tokens
        t._depth += 1

    def post(module, args, output):
        t._depth -= 1
        if t._depth == 0:
            dt = time.perf_counter() - t._fwd_start
            if t._fwd_is_lm:
                t.lm_forward += dt
                t.n_lm_forward += 1
                where = t.current_line or "loading and other"
                t.lm_seconds_by_line[where] = t.lm_seconds_by_line.get(where, 0.0) + dt
            else:
                t.other_forward += dt

    nn_module.register_module_forward_pre_hook(pre)
    nn_module.register_module_forward_hook(post)

    # ``run_with_hooks`` calls ``HookedTransformer.forward`` directly, not through ``__call__``,
    # so the module hooks above never see that pass as an LM forward: count it here.
    forward = HookedTransformer.forward

    @functools.wraps(forward)
    def counted_forward(self, *args, **kwargs):
        if t._depth > 0:  # called through __call__ (already counted) or inside another module
            return forward(self, *args, **kwargs)
        pre(self, args)
        output = None
        try:
            output = forward(self, *args, **kwargs)
            return output
        finally:
            post(self, args, output)

    HookedTransformer.forward = counted_forward

    def timed_backward(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                if t._grad_lm_since_backward:
                    t.backward_lm += dt
                    where = t.current_line or "loading and other"
                    t.lm_seconds_by_line[where] = t.lm_seconds_by_line.get(where, 0.0) + dt
                else:
                    t.backward_other += dt
                t._grad_lm_since_backward = False

        return wrapper

    torch.autograd.backward = timed_backward(torch.autograd.backward)
    torch.autograd.grad = timed_backward(torch.autograd.grad)

    def timed_capture(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t._capture_depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                t._capture_depth -= 1
                if t._capture_depth == 0:
                    dt = time.perf_counter() - t0
                    t.capture += dt
                    if t.current_line:
                        t.capture_in_line[t.current_line] = t.capture_in_line.get(t.current_line, 0.0) + dt

        return wrapper

    registry, _ = discover_lines()  # imports every line module first
    originals = {name: getattr(capture_mod, name) for name in ("capture", "capture_facts")}
    wrapped = {name: timed_capture(fn) for name, fn in originals.items()}
    for mod in list(sys.modules.values()):
        for name, fn in originals.items():
            if getattr(mod, name, None) is fn:
                setattr(mod, name, wrapped[name])

    def timed_line(name, run):
        @functools.wraps(run)
        def wrapper(*args, **kwargs):
            if t.first_line_start is None:
                t.first_line_start = time.perf_counter()
            t.current_line = name
            if len(args) > 1:
                t.line_config[name] = args[1]
            t0 = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                t.line_wall[name] = t.line_wall.get(name, 0.0) + time.perf_counter() - t0
                t.current_line = None

        return wrapper

    for name, line in registry.items():
        LINES[name] = replace(line, run=timed_line(name, line.run))

    write = AuditResult.write

    def timed_write(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return write(self, *args, **kwargs)
        finally:
            t.report += time.perf_counter() - t0

    AuditResult.write = timed_write


def _pass_counter(zoo: Path, original: str, model: str):
    """A started :class:`PassCounter` from benchmarks/forward_passes.py (loaded by path: this
    folder is kept off sys.path, see above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("forward_passes", HERE / "forward_passes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counter = module.PassCounter(zoo, original, model)
    counter.watch_loading()
    counter.install()
    return counter


def _watch_contexts() -> list:
    """Every AuditContext created from now on, in order (to read its ``counts``)."""
    from forensics.core.context import AuditContext

    seen: list = []
    init = AuditContext.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen.append(self)

    AuditContext.__init__ = recording
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default="zoo")
    parser.add_argument("--model", default="npo")
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="the audit's --dtype")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--progress", action="store_true", help="the audit's progress lines on stderr")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    zoo = Path(args.zoo)
    original = "llama_original" if args.model.startswith("llama_") else "original"
    passes = _pass_counter(zoo, original, args.model)
    t = Timers()
    instrument(t)
    contexts = _watch_contexts()
    from forensics.core.pipeline import audit
    from forensics.core.registry import LINES

    d = zoo / "data"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = audit(
            zoo / "models" / original,
            zoo / "models" / args.model,
            d / "forget.jsonl",
            d / "retain.jsonl",
            d / "holdout.jsonl",
            out=Path(tmp) / "report",
            profile=args.profile,
            progress=args.progress,
            seed=0,
            dtype=args.dtype,
        )
        wall = time.perf_counter() - start
    load_after = os.getloadavg()
    missing = sorted(set(STAGES) - set(t.line_wall))

    stages: dict[str, float] = {"loading": (t.first_line_start or start) - start, "capture": t.capture}
    for name, seconds in t.line_wall.items():
        stage = STAGES.get(name, "other lines")
        stages[stage] = stages.get(stage, 0.0) + seconds - t.capture_in_line.get(name, 0.0)
    stages["report"] = t.report
    stages["other"] = wall - sum(stages.values())
    floor = t.lm_forward + t.backward_lm
    print(
        f"audit of {args.model} vs {original} ({zoo}), profile {args.profile}, {args.dtype}, {args.threads} torch threads: "
        f"verdict {result.verdict.label} ({result.verdict.confidence})"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1-min; other processes share the CPU)")
    print(f"\n{'stage':<12} {'seconds':>8} {'share':>7}")
    for stage, seconds in stages.items():
        print(f"{stage:<12} {seconds:>8.1f} {seconds / wall:>7.1%}")
    print(f"{'total':<12} {wall:>8.1f}")
    print(f"\n{'line':<22} {'wall s':>7} {'LM passes s':>11} {'share':>6}  budget (the line's declared model passes)")
    for name, seconds in t.line_wall.items():
        lm = t.lm_seconds_by_line.get(name, 0.0)
        spec, config = LINES.get(name), t.line_config.get(name)
        budget = spec.budget(config) if spec is not None and spec.budget is not None and config is not None else ""
        print(f"{name:<22} {seconds:>7.1f} {lm:>11.1f} {lm / seconds if seconds else 0:>6.0%}  {budget}")
    print("(LM passes: forward and backward of O, U and models derived from them, inside the line)")
    if missing:
        print(f"lines that did not run through the timer (not registered or not applicable): {', '.join(missing)}")
    print(f"\nLM forward passes   {t.lm_forward:8.1f} s  ({t.n_lm_forward} calls)")
    print(f"LM backward passes  {t.backward_lm:8.1f} s")
    print(f"other forward       {t.other_forward:8.1f} s  (SAEs, probes)")
    print(f"other backward      {t.backward_other:8.1f} s")
    print(f"model passes (LM forward + backward) / wall: {floor / wall:.1%}")
    print(f"\nLM forward calls by (model, set):\n{passes.table()}")
    shared = contexts[-1].counts if contexts else {}
    print("audit context: " + ", ".join(f"{k} {v}" for k, v in sorted(shared.items())))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": args.model,
                    "profile": args.profile,
                    "dtype": args.dtype,
                    "threads": args.threads,
                    "wall": wall,
                    "stages": stages,
                    "lines": t.line_wall,
                    "capture_in_line": t.capture_in_line,
                    "lm_seconds_by_line": t.lm_seconds_by_line,
                    "lm_tokens_by_line": t.lm_tokens_by_line,
                    "lm_forward": t.lm_forward,
                    "lm_backward": t.backward_lm,
                    "other_forward": t.other_forward,
                    "other_backward": t.backward_other,
                    "floor_share": floor / wall,
                    "load_before": load_before,
                    "load_after": load_after,
                    "forward_calls": {f"{m}/{s}": v for (m, s), v in sorted(passes.counts.items())},
                    "context_counts": dict(shared),
                    "verdict": result.verdict.label,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
