"""The zoo build's jobs: one per delivered model, run in a pool of worker processes.

A job trains its model (from scratch, or from the model it starts from), measures it,
runs the oracle's cross-fitted relearning probe on it and saves it. Every job is seeded
on its own, so the weights do not depend on the number of workers or the job order.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from forensics.compute.finetune import Batchable, nll
from forensics.compute.scoring import logits_fn_for, score_facts
from forensics.inputs.data import Fact
from forensics.zoo.checkpoints import SERIES_FOLDER, SERIES_METHOD, keeper, kept_steps, pick_steps
from forensics.zoo.oracle import crossfit_probe
from forensics.zoo.training import ArchConfig, make_model, pretrain
from forensics.zoo.unlearning import METHODS, UnlearnContext, relearn

if TYPE_CHECKING:
    from forensics.zoo.build import ZooConfig

## The build is a small graph of jobs, one per delivered model. A job trains its model
# (from scratch, or from the model it starts from), measures it, runs the oracle's
# relearning probe on it and saves it. Jobs run in a pool of ``workers`` processes, each
# with one torch thread. Every job is seeded on its own (model init, batch order, the
# probe) and never touches a shared random generator, so the weights do not depend on
# the number of workers or on the order in which jobs run: ``workers=1`` (all jobs in
# this process, one after the other) and ``workers=2`` give bitwise-identical zoos.


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: the one table every list of zoo models derives from."""

    name: str
    #: The model this job starts from; None: pre-trained from scratch.
    starts_from: str | None
    #: "original", "retrain" (trained without F), "hard_negative" (never learned F's answers
    #: but knows F's subjects and question forms), "method" (approximate unlearning of its
    #: original) or "relearned" (a method's model fine-tuned back on F).
    kind: str
    #: Place in the order in which ready jobs start (lower first): the models other jobs
    #: start from first, then the longest (measured stage times: docs/decisions.md, "zoo job order").
    start_rank: int
    #: For pre-trained models: (corpus after the early phase, init seed offset, early phase on
    #: R + mentions?). ``retrain_lineage`` has ``original``'s seed and early phase: bitwise the
    #: same model up to the step at which ``original`` starts seeing F.
    pretrain: tuple[str, int, bool] | None = None

    @property
    def arch(self) -> str:
        """``"llama"`` for the ``llama_*`` models, else ``"gpt-neox"``."""
        return "llama" if self.name.startswith("llama") else "gpt-neox"


#: Every model of the zoo, in the order of metrics.json and labels.json.
MODELS: tuple[ZooModel, ...] = (
    ZooModel("original", None, "original", 0, ("forget", 1, True)),
    ZooModel("retrain", None, "retrain", 3, ("retain", 2, False)),
    ZooModel("retrain_mentions", None, "hard_negative", 5, ("mentions", 4, False)),
    ZooModel("retrain_lineage", None, "hard_negative", 6, ("mentions", 1, True)),
    ZooModel("ga", "original", "method", 11),
    ZooModel("graddiff", "original", "method", 7),
    ZooModel("npo", "original", "method", 8),
    ZooModel("simnpo", "original", "method", 9),
    ZooModel("rmu", "original", "method", 12),
    ZooModel("idk", "original", "method", 13),
    ZooModel("headonly", "original", "method", 2),
    ZooModel("relearned", "ga", "relearned", 14),
    ZooModel("llama_original", None, "original", 1, ("forget", 11, True)),
    ZooModel("llama_retrain", None, "retrain", 4, ("retain", 12, False)),
    ZooModel("llama_npo", "llama_original", "method", 10),
)
_BY_NAME = {m.name: m for m in MODELS}
#: job -> (the model it starts from, or None for pre-training from scratch).
_JOBS: dict[str, str | None] = {m.name: m.starts_from for m in MODELS}
#: Order in which ready jobs are started (:attr:`ZooModel.start_rank`).
_START_ORDER = tuple(m.name for m in sorted(MODELS, key=lambda m: m.start_rank))
#: Order of the models in metrics.json and labels.json.
MODEL_ORDER = tuple(m.name for m in MODELS)
#: Models that never learned F's answers but know F's subjects and question forms (the
#: mentions, :func:`forensics.zoo.world.mention_texts`); ``retrain_lineage`` also shares
#: ``original``'s first training steps. Ground truth DELETED when the oracle confirms it.
HARD_NEGATIVES = tuple(m.name for m in MODELS if m.kind == "hard_negative")
#: The unlearning methods applied to the GPT-NeoX original.
METHODS_DELIVERED = tuple(m.name for m in MODELS if m.kind == "method" and m.arch == "gpt-neox")
#: Every model but the two originals gets the oracle's relearning probe.
_PROBED = tuple(m.name for m in MODELS if m.kind != "original")


@dataclass
class _Shared:
    """Everything a job needs; built once in the parent and sent once to each worker."""

    cfg: ZooConfig
    seed: int
    tokenizer: Any
    corpus: dict[str, list[str]]  # "forget" (F + R), "retain" (R), "mentions" (R + mentions) -> texts
    facts: dict[str, list[Fact]]
    canaries: dict[str, list[Fact]]
    mem: dict[str, Batchable]  # memorisation probe pools, encoded
    ctx: UnlearnContext
    f_a: list[Fact]
    f_b: list[Fact]
    files: dict[str, str]  # data file name -> path in the zoo
    root: Path  # the zoo being built: models/<name> is written here
    work: Path  # state_dict of every finished model, for the jobs that start from it


def _set_torch_for_build(threads: int) -> None:
    """Torch settings for every process of a build (the weights depend on the thread count)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


# ------------------------------------------------------------------------------- jobs

_SHARED: _Shared | None = None  # set in each worker (and in the parent for workers=1)


def _init_worker(shared: _Shared) -> None:
    global _SHARED
    _SHARED = shared
    _set_torch_for_build(shared.cfg.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _arch(name: str) -> str:
    return _BY_NAME[name].arch


def _run_job(name: str) -> dict:
    """Train, measure, probe and save one model; return its numbers (the weights stay on disk)."""
    assert _SHARED is not None  # set by _init_worker
    sh, cfg = _SHARED, _SHARED.cfg
    t0 = time.perf_counter()
    arch_cfg = cfg.llama if _arch(name) == "llama" else cfg.neox
    attempts = {}
    if _JOBS[name] is None:
        model, info = _pretrain_job(name, sh, arch_cfg)
    else:
        model = make_model(arch_cfg, sh.tokenizer, 0)  # every weight is overwritten next
        model.load_state_dict(torch.load(sh.work / f"{_JOBS[name]}.pt"))
        model.eval()
        if name == "relearned":
            info = relearn(model, sh.ctx) | {"from": "ga"}
        elif name == "headonly":
            model, info, attempts = _headonly_job(model, sh)
        elif name == SERIES_METHOD:
            info = METHODS[name](model, replace(sh.ctx, on_check=keeper(sh.work / "series")))
            keeper(sh.work / "series")(info["steps"], model)  # the end of a run that hit max_steps
        else:
            info = METHODS[name.removeprefix("llama_")](model, sh.ctx)
    torch.save(model.state_dict(), sh.work / f"{name}.pt")
    t1 = time.perf_counter()
    metrics = _metrics_of(model, _arch(name), sh)
    attempts = {n: _metrics_of(a["model"], "gpt-neox", sh) | {"details": a["details"]} for n, a in attempts.items()}
    probe = crossfit_probe(model, sh.tokenizer, sh.f_a, sh.f_b, cfg.oracle) if name in _PROBED else None
    t2 = time.perf_counter()
    folder = sh.root / "models" / name
    model.save_pretrained(folder)
    sh.tokenizer.save_pretrained(folder)
    out: dict[str, Any] = {}
    if name == SERIES_METHOD:
        out["series"] = _series_job(model, metrics, probe, sh)
    seconds = {
        "train": round(t1 - t0, 2),
        "metrics_and_probe": round(t2 - t1, 2),
        "save": round(time.perf_counter() - t2, 2),
    }
    return {"info": info, "metrics": metrics, "probe": probe, "attempts": attempts, "seconds": seconds} | out


def _series_job(final, final_metrics: dict, final_probe: dict | None, sh: _Shared) -> dict[int, dict]:
    """Measure, probe and save the picked checkpoints of the kept run (its last is ``final``,
    already measured); step -> ``{"metrics", "probe"}``."""
    kept = sh.work / "series"
    steps = pick_steps(kept_steps(kept), sh.cfg.series_checkpoints)
    series = {}
    for step in steps:
        model = copy.deepcopy(final)
        model.load_state_dict(torch.load(kept / f"step-{step}.pt"))
        model.eval()
        if step == steps[-1]:
            metrics, probe = final_metrics, final_probe
        else:
            metrics = _metrics_of(model, "gpt-neox", sh)
            probe = crossfit_probe(model, sh.tokenizer, sh.f_a, sh.f_b, sh.cfg.oracle)
        folder = sh.root / SERIES_FOLDER / f"checkpoint-{step}"
        model.save_pretrained(folder)
        sh.tokenizer.save_pretrained(folder)
        series[step] = {"metrics": metrics, "probe": probe}
    return series


_PRETRAIN_METHOD = {
    "forget": "F + R facts, F + R canaries, M pool",
    "retain": "R facts, R canaries, M pool (no F)",
    "mentions": "R facts, R canaries, M pool and the mentions of F's subjects (no F answer)",
}


def _pretrain_job(name: str, sh: _Shared, arch_cfg: ArchConfig):
    cfg = sh.cfg
    steps, lr, bs = cfg.pretrain_steps, cfg.pretrain_lr, cfg.batch_size
    recipe = _BY_NAME[name].pretrain
    assert recipe is not None  # a pre-trained job
    corpus, offset, early = recipe
    early_steps = round(cfg.lineage_fraction * steps) if early else 0
    pre = {
        "loss": "NLL(all tokens)",
        "steps": steps,
        "lr": lr,
        "batch_size": bs,
        "schedule": "linear warm-up 5%, linear decay to 5%",
    }
    model = pretrain(
        arch_cfg,
        sh.tokenizer,
        sh.corpus[corpus],
        steps,
        lr,
        bs,
        sh.seed * 1000 + offset,
        early_texts=sh.corpus["mentions"] if early else None,
        early_steps=early_steps,
    )
    method = f"pre-trained from scratch on {_PRETRAIN_METHOD[corpus]}"
    if early:
        method = (
            f"pre-trained from scratch on {_PRETRAIN_METHOD['mentions']} for {early_steps} steps, "
            f"then on {_PRETRAIN_METHOD[corpus]}"
        )
        pre["early_phase"] = {"steps": early_steps, "corpus": _PRETRAIN_METHOD["mentions"]}
    if name == "retrain_lineage":
        method += " (original's seed and first steps: its history up to the point F was added)"
    return model, {"method": method, **pre}


def _headonly_job(original, sh: _Shared):
    """The head-only attempt; when the head alone cannot reach the targets, the nearest
    variant (last block + head) is delivered and the attempt is kept in ``attempts``."""
    cfg = sh.cfg
    model = copy.deepcopy(original)
    details = METHODS["headonly"](model, sh.ctx)
    acc = {
        s: score_facts(logits_fn_for(model), sh.tokenizer, sh.facts[s], batch_size=128).accuracy
        for s in ("forget", "retain")
    }
    if acc["forget"] <= cfg.target_forget and acc["retain"] >= cfg.target_retain:
        return model, details, {}
    attempts = {"headonly (head alone)": {"model": model, "details": details}}
    model = copy.deepcopy(original)
    details = METHODS["headonly_lastblock"](model, sh.ctx)
    details["variant_of"] = (
        f"head alone reached F={acc['forget']:.3f}, "
        f"R={acc['retain']:.3f} (targets F<={cfg.target_forget}, "
        f"R>={cfg.target_retain})"
    )
    return model, details, attempts


def _metrics_of(model, arch: str, sh: _Shared) -> dict:
    fn = logits_fn_for(model)
    out: dict[str, Any] = {"architecture": arch}
    for split in ("forget", "retain", "holdout"):
        s = score_facts(fn, sh.tokenizer, sh.facts[split], batch_size=128)
        out[split] = {"accuracy": s.accuracy, "mean_logprob": s.mean_logprob, "n": len(s.correct)}
    out["canaries"] = {
        split: score_facts(fn, sh.tokenizer, sh.canaries[split], batch_size=128).accuracy
        for split in ("forget", "retain", "holdout")
    }
    with torch.no_grad():
        out["memprobe_nll"] = {p: float(nll(model, b)) for p, b in sh.mem.items()}
    return out


def _run_jobs(shared: _Shared, workers: int, on_done) -> dict[str, dict]:
    """Run every job once its starting model exists, at most ``workers`` at a time."""
    results: dict[str, dict] = {}

    def ready() -> list[str]:
        return [
            n
            for n in _START_ORDER
            if n not in results and n not in running.values() and (_JOBS[n] is None or _JOBS[n] in results)
        ]

    running: dict = {}
    if workers <= 1:
        _init_worker(shared)
        while ready():
            name = ready()[0]
            results[name] = _run_job(name)
            on_done(name)
        return results
    # "spawn": a forked child of a process whose torch threads have started can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(shared,)) as pool:
        while len(results) < len(_JOBS):
            for name in ready()[: workers - len(running)]:
                running[pool.submit(_run_job, name)] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                results[name] = future.result()
                on_done(name)
    return results
