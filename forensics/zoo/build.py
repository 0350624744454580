"""Build the model-organism zoo: world, tokenizer, models, metrics, oracle, labels.

Layout of a zoo folder::

    zoo.json            manifest: version, world, size, seed, config, files, labels, timings
    labels.json         model -> ground_truth, method, architecture, oracle numbers
    metrics.json        {"models": model -> per-set accuracy / log-prob / canaries,
                         "attempts": measured variants that were not delivered}
    data/*.jsonl        forget/retain/holdout facts, sequence pools (see world.py)
    models/<name>/      Hugging Face folder (safetensors + tokenizer)
    series/npo/         checkpoint-<step>/ folders of the npo run and their labels.json
                        (:mod:`forensics.zoo.checkpoints`)

Models are trained by independent, individually seeded jobs in a pool of worker
processes (see ``_JOBS``); the zoo is bitwise the same for any number of workers.

The build runs in a temporary sibling folder that is moved into place with
``os.replace`` at the very end, so an interrupted build never leaves a half-written
zoo. A folder that already holds a complete zoo of the same size, seed and zoo code
version is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from forensics.compute.finetune import encode_answers, encode_texts
from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import Fact
from forensics.zoo import world as W
from forensics.zoo.bio import make_bio_world
from forensics.zoo.checkpoints import SERIES_FOLDER, SERIES_METHOD, series_labels
from forensics.zoo.jobs import (
    _JOBS,
    _PROBED,
    MODEL_ORDER,
    _run_jobs,
    _set_torch_for_build,
    _Shared,
)
from forensics.zoo.labels import check_targets, make_labels
from forensics.zoo.oracle import OracleConfig, held_out_facts, split_forget
from forensics.zoo.tokenizer import train_tokenizer
from forensics.zoo.training import ArchConfig
from forensics.zoo.unlearning import UnlearnConfig, UnlearnContext

ZOO_FORMAT = 1


#: Modules of this folder that the zoo build never runs (the real-knowledge organism,
#: ``forensics zoo real``, and the real-base zoo, ``forensics zoo build --base``): editing them
#: does not rebuild cached zoos.
NOT_IN_THE_ZOO_BUILD = ("real.py", "real_facts.py", "base.py")


def zoo_version() -> str:
    """Format number + a hash of the zoo's source and the framework modules it trains with
    (fine-tuning, scoring, data, free text): any change to them rebuilds the cache. (The
    audit's own cache key is :func:`forensics.core.keys.code_version`.)"""
    digest = hashlib.sha256()
    package = Path(__file__).parent.parent
    shared = [
        package / name
        for name in ("compute/finetune.py", "compute/scoring.py", "inputs/data.py", "compute/freetext.py")
    ]
    own = [f for f in sorted(Path(__file__).parent.glob("*.py")) if f.name not in NOT_IN_THE_ZOO_BUILD]
    for file in own + shared:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return f"{ZOO_FORMAT}-{digest.hexdigest()[:12]}"


@dataclass
class ZooConfig:
    """Everything that shapes a zoo: world size, architectures, training budgets, the
    unlearning methods' and the oracle's settings, and the targets (:meth:`preset`)."""

    #: Forget subjects (F); each gives 4 attributes x 3 templates = 12 facts (bio world: 10
    #: free-text questions).
    n_forget: int
    #: Retain subjects (R).
    n_retain: int
    #: Holdout subjects (H), never in any training text.
    n_holdout: int
    #: Memorisation-probe items, each with an M, a C and a B sequence.
    n_memprobe: int
    #: Shape of the GPT-NeoX models.
    neox: ArchConfig
    #: Shape of the Llama models.
    llama: ArchConfig
    #: AdamW steps of each pre-training run (original, retrain and their Llama twins).
    pretrain_steps: int
    #: Peak learning rate of pre-training (5% warm-up, linear decay).
    pretrain_lr: float = 5e-3
    #: Pre-training texts per step.
    batch_size: int = 32
    #: BPE vocabulary size in tokens, the 3 special tokens included.
    vocab_size: int = 700
    #: Copies of each M memorisation-probe sequence in the pre-training corpus.
    memprobe_repeats: int = 8
    #: Copies of each trained canary in the pre-training corpus.
    canary_repeats: int = 1
    #: Share (fraction) of the pre-training steps the originals spend on R and the mentions
    #: before F is added: the training history ``retrain_lineage`` shares with ``original``.
    lineage_fraction: float = 0.25
    #: Torch threads per build process; fixed, so the weights are bitwise reproducible.
    threads: int = 1
    #: Settings of the unlearning methods and of the relearned model.
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    #: Settings of the ground-truth relearning oracle.
    oracle: OracleConfig = field(default_factory=OracleConfig)
    # targets (checked and recorded, never used to pick numbers after the fact)
    #: Minimum F and R accuracy of the originals, and R accuracy of retrain (fraction of facts).
    target_original: float = 0.95
    #: Maximum F accuracy of an unlearned model (fraction of facts).
    target_forget: float = 0.10
    #: Minimum R accuracy of an unlearned model (fraction of facts).
    target_retain: float = 0.80
    #: The world: "attributes" (closed-vocabulary attributes, :mod:`forensics.zoo.world`) or
    #: "bio" (free-text questions about invented authors, :mod:`forensics.zoo.bio`).
    world: str = "attributes"
    #: Checkpoints of the GPT-NeoX npo run kept as a series (``series/npo``,
    #: :mod:`forensics.zoo.checkpoints`).
    series_checkpoints: int = 6

    @classmethod
    def preset(cls, size: str, world: str = "attributes") -> ZooConfig:
        """The configuration of the ``"tiny"`` or ``"small"`` zoo of a world; raises
        :class:`ForensicsInputError` for any other size or world."""
        if world == "bio":
            return _bio_preset(size)
        if world != "attributes":
            raise ForensicsInputError(f"unknown zoo world {world!r}; choose attributes or bio")
        if size == "tiny":
            return cls(
                n_forget=20,
                n_retain=40,
                n_holdout=20,
                n_memprobe=16,
                neox=ArchConfig("gpt-neox", 64, 2),
                llama=ArchConfig("llama", 64, 2),
                pretrain_steps=500,
                # 2 blocks: steering the residual after block 0 reached F=0.096 only at
                # R=0.606 (126 steps, measured); after block 1 it reaches both targets.
                unlearn=UnlearnConfig(rmu_layer=2),
            )
        if size == "small":
            return cls(
                n_forget=40,
                n_retain=80,
                n_holdout=40,
                n_memprobe=32,
                neox=ArchConfig("gpt-neox", 128, 4),
                llama=ArchConfig("llama", 128, 4),
                pretrain_steps=900,
                pretrain_lr=3e-3,
                # measured on the first small build: rmu_alpha=10 ended at R=0.799 and
                # headonly_lastblock at lr 1e-3 at F=0.121 after 300 steps
                unlearn=_small_unlearn(),
                oracle=OracleConfig(steps=40),
            )
        raise ForensicsInputError(f"unknown zoo size {size!r}; choose tiny or small")


def _bio_preset(size: str) -> ZooConfig:
    """The bio world's presets: 10 questions per author, sentence answers (about 35 tokens a
    fact against 8 in the attribute world), so fewer subjects and more pre-training steps;
    the oracle scores ROUGE-L recall of the key span (:class:`OracleConfig`)."""
    if size == "tiny":
        return ZooConfig(
            n_forget=16,
            n_retain=32,
            n_holdout=16,
            n_memprobe=16,
            neox=ArchConfig("gpt-neox", 64, 2),
            llama=ArchConfig("llama", 64, 2),
            pretrain_steps=800,
            vocab_size=1000,
            unlearn=UnlearnConfig(rmu_layer=2),
            oracle=OracleConfig(free_text=True),
            world="bio",
        )
    if size == "small":
        return ZooConfig(
            n_forget=30,
            n_retain=60,
            n_holdout=30,
            n_memprobe=32,
            neox=ArchConfig("gpt-neox", 128, 4),
            llama=ArchConfig("llama", 128, 4),
            pretrain_steps=1200,
            pretrain_lr=3e-3,
            vocab_size=1000,
            unlearn=_small_unlearn(),
            oracle=OracleConfig(steps=40, free_text=True),
            world="bio",
        )
    raise ForensicsInputError(f"unknown zoo size {size!r}; choose tiny or small")


def _small_unlearn() -> UnlearnConfig:
    config = UnlearnConfig(max_steps=300, rmu_alpha=30.0)
    config.lr["headonly_lastblock"] = 3e-3
    return config


GROUND_TRUTHS = ("DELETED", "SUPPRESSED", "NOT_FORGOTTEN", "UNDETERMINED", "ORIGINAL")


# ------------------------------------------------------------------------------ public


def build_zoo(
    out_dir: str | Path,
    size: str = "small",
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
    world: str = "attributes",
) -> dict:
    """Build (or reuse) the zoo in ``out_dir``; return its manifest (``zoo.json`` + ``root``).

    ``world``: ``"attributes"`` (closed-vocabulary attributes) or ``"bio"`` (free-text
    questions about invented authors, :mod:`forensics.zoo.bio`).

    ``workers``: processes that train models side by side (default: the usable CPUs, at
    most 4; 1 runs everything in this process). The zoo is bitwise the same for any
    number. Worker processes are started with "spawn", so a script that calls this with
    ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    out = Path(out_dir)
    config = ZooConfig.preset(size, world)
    workers = default_workers() if workers is None else max(1, int(workers))
    version = zoo_version()
    cached = _cached_manifest(out, size, seed, version, world)
    if cached is not None:
        if progress:
            print(f"reusing the zoo in {out} (world={world}, size={size}, seed={seed})")
        return cached
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        manifest = _build(tmp, config, size, seed, version, progress, workers)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["root"] = str(out)
    if progress:
        print(format_table(manifest["metrics"], manifest["labels"]))
        print(f"zoo written to {out} in {manifest['build_seconds']:.1f} s")
    return manifest


def read_manifest(out_dir: str | Path) -> dict:
    """A built zoo's ``zoo.json`` with ``labels``, ``metrics`` (from their files) and ``root`` added."""
    out = Path(out_dir)
    manifest = json.loads((out / "zoo.json").read_text(encoding="utf-8"))
    manifest["labels"] = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    manifest["metrics"] = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    manifest["root"] = str(out)
    return manifest


def format_table(metrics: dict, labels: dict | None = None) -> str:
    """Render ``metrics.json`` (optionally with ``labels.json``) as a fixed-width table."""
    models = metrics.get("models", metrics)
    head = (
        f"{'model':<20}{'arch':<10}{'acc F':>7}{'acc R':>7}{'acc H':>7}"
        f"{'lp F':>8}{'lp R':>8}{'lp H':>8}{'can F':>7}{'can R':>7}{'can H':>7}  label"
    )
    lines = [head, "-" * len(head)]
    for name, m in models.items():
        label = (labels or {}).get(name, {}).get("ground_truth", "")
        lines.append(
            f"{name:<20}{m['architecture']:<10}"
            f"{m['forget']['accuracy']:>7.3f}{m['retain']['accuracy']:>7.3f}{m['holdout']['accuracy']:>7.3f}"
            f"{m['forget']['mean_logprob']:>8.2f}{m['retain']['mean_logprob']:>8.2f}"
            f"{m['holdout']['mean_logprob']:>8.2f}"
            f"{m['canaries']['forget']:>7.2f}{m['canaries']['retain']:>7.2f}{m['canaries']['holdout']:>7.2f}"
            f"  {label}"
        )
    for name, m in metrics.get("attempts", {}).items():
        lines.append(
            f"(attempt, not delivered) {name}: acc F {m['forget']['accuracy']:.3f}, "
            f"acc R {m['retain']['accuracy']:.3f}, acc H {m['holdout']['accuracy']:.3f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- caching


def _cached_manifest(out: Path, size: str, seed: int, version: str, world: str = "attributes") -> dict | None:
    """The manifest of a complete matching zoo in ``out``; None when a (re)build is due.

    Raises ForensicsInputError when ``out`` is a file, or a non-empty folder that is
    not a zoo (we never overwrite what we did not write).
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise ForensicsInputError(f"zoo output {out} exists and is not a folder")
    zoo_json = out / "zoo.json"
    if not zoo_json.is_file():
        if any(out.iterdir()):
            raise ForensicsInputError(
                f"zoo output {out} is a non-empty folder that is not a zoo; choose another folder"
            )
        return None
    try:
        manifest = read_manifest(out)
    except (OSError, json.JSONDecodeError):
        return None  # our own but damaged: rebuild
    folders = list(manifest.get("models", {}).values()) + list(manifest.get("series", {}).get("checkpoints", []))
    complete = manifest.get("complete") and all((out / rel / "config.json").is_file() for rel in folders)
    if (
        complete
        and manifest.get("size") == size
        and manifest.get("seed") == seed
        and manifest.get("world", "attributes") == world
        and manifest.get("zoo_version") == version
    ):
        return manifest
    return None


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():  # an empty folder or an outdated zoo of ours
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def default_workers() -> int:
    """Worker processes for a build: the usable CPUs, at most 4 (the tiny zoo has at most
    4 jobs ready at once early on, and each worker holds its own copy of torch)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _build(root: Path, cfg: ZooConfig, size: str, seed: int, version: str, progress: bool, workers: int) -> dict:
    start = time.perf_counter()
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    _set_torch_for_build(cfg.threads)
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(_JOBS), desc="zoo", unit="model")
    try:
        return _build_inner(root, cfg, size, seed, version, workers, bar, start)
    finally:
        if bar is not None:
            bar.close()
        if bars_were_on:
            hf_logging.enable_progress_bar()
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _facts(records: list[dict]) -> list[Fact]:
    return [
        Fact(**cast("dict[str, Any]", {k: tuple(v) if isinstance(v, list) else v for k, v in r.items()}))
        for r in records
    ]


def _prepare(root: Path, cfg: ZooConfig, seed: int) -> _Shared:
    """World, data files, tokenizer, encoded sets: the inputs every job shares."""
    make = make_bio_world if cfg.world == "bio" else W.make_world
    world = make(cfg.n_forget, cfg.n_retain, cfg.n_holdout, cfg.n_memprobe, seed)
    files = W.write_data(world, root / "data")
    shadow = make(400, 400, 0, 64, f"tokenizer-{seed}")  # other names: no subject is favoured
    tok_texts = (
        W.training_texts(shadow, True, 1)
        + [r["text"] for p in ("memprobe_C", "memprobe_B") for r in shadow.sequences[p]]
        + W.mention_texts(shadow)
        + [W.IDK_ANSWER.strip()] * 50
    )
    tokenizer = train_tokenizer(tok_texts, cfg.vocab_size)
    facts = {s: _facts(world.facts(s)) for s in ("forget", "retain", "holdout")}
    canaries = {s: _facts(W.canary_facts(world, s)) for s in ("forget", "retain", "holdout")}
    for _split, fs in facts.items():
        for f in fs:
            n = len(tokenizer(f.answer, add_special_tokens=False)["input_ids"])
            if cfg.world == "attributes" and not 1 <= n <= 2:
                raise RuntimeError(f"zoo answer {f.answer!r} tokenises to {n} tokens (want 1-2)")

    def corpus(include_forget: bool) -> list[str]:
        texts = W.training_texts(world, include_forget, cfg.memprobe_repeats)
        extra = [r["text"] for r in world.sequences["seq_retain"]]
        if include_forget:
            extra += [r["text"] for r in world.sequences["seq_forget"]]
        return texts + extra * (cfg.canary_repeats - 1)

    corpora = {"forget": corpus(True), "retain": corpus(False), "mentions": corpus(False) + W.mention_texts(world)}

    forget_items = facts["forget"] + canaries["forget"]
    retain_items = facts["retain"] + canaries["retain"]
    ctx = UnlearnContext(
        tokenizer=tokenizer,
        forget=encode_answers(tokenizer, forget_items),
        retain=encode_answers(tokenizer, retain_items),
        forget_idk=encode_answers(tokenizer, forget_items, answer=W.IDK_ANSWER),
        forget_facts=facts["forget"],
        config=cfg.unlearn,
        seed=seed * 1000 + 3,
    )
    mem = {p: encode_texts(tokenizer, [r["text"] for r in world.sequences[f"memprobe_{p}"]]) for p in "MCB"}
    f_a, f_b = split_forget(facts["forget"])
    work = root / ".work"
    work.mkdir()
    return _Shared(cfg, seed, tokenizer, corpora, facts, canaries, mem, ctx, f_a, f_b, files, root, work)


# ----------------------------------------------------------------------- labels, save


def _build_inner(root, cfg: ZooConfig, size, seed, version, workers: int, bar, start) -> dict:
    shared = _prepare(root, cfg, seed)
    stage_seconds = {"world": round(time.perf_counter() - start, 2)}
    t = time.perf_counter()

    def on_done(name: str) -> None:
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(1)

    results = _run_jobs(shared, workers, on_done)
    shutil.rmtree(shared.work)
    stage_seconds["models (train, metrics, oracle probe, save)"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    info = {name: results[name]["info"] for name in MODEL_ORDER}
    metrics = {
        "models": {name: results[name]["metrics"] for name in MODEL_ORDER},
        "attempts": {n: a for name in MODEL_ORDER for n, a in results[name]["attempts"].items()},
    }
    probes = {name: results[name]["probe"] for name in _PROBED}
    held_out = held_out_facts(shared.f_a, shared.f_b)

    labels = make_labels(info, metrics["models"], probes, held_out, cfg)
    targets = check_targets(metrics["models"], cfg)
    series = series_labels(
        results[SERIES_METHOD]["series"], metrics["models"]["original"], probes["retrain"], held_out, cfg
    )

    # -- save (the model folders were written by the jobs)
    _dump(root / "labels.json", labels)
    _dump(root / "metrics.json", metrics)
    _dump(root / SERIES_FOLDER / "labels.json", series)
    stage_seconds["labels and save"] = round(time.perf_counter() - t, 2)
    manifest = {
        "zoo_version": version,
        "world": cfg.world,
        "size": size,
        "seed": seed,
        "complete": True,
        "config": asdict(cfg),
        "data": shared.files,
        "models": {name: f"models/{name}" for name in MODEL_ORDER},
        "series": {
            "method": SERIES_METHOD,
            "labels": f"{SERIES_FOLDER}/labels.json",
            "checkpoints": [f"{SERIES_FOLDER}/{name}" for name in series["checkpoints"]],
        },
        "targets": targets,
        "targets_missed": sorted(f"{n}: {k}" for n, t in targets.items() for k, ok in t.items() if not ok),
        "forget_split_for_oracle": {
            "F_a_subjects": sorted(cast("set[str]", {f.subject for f in shared.f_a})),
            "F_b_subjects": sorted(cast("set[str]", {f.subject for f in shared.f_b})),
        },
        "torch_threads": cfg.threads,
        "workers": workers,
        "stage_seconds": stage_seconds,
        "job_seconds": {name: results[name]["seconds"] for name in MODEL_ORDER},
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    _dump(root / "zoo.json", manifest)  # written last: its presence marks a complete zoo
    return manifest | {"labels": labels, "metrics": metrics}


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x).__name__)
