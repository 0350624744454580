"""The real-base model organism: TOFU's recipe on a pretrained base (``forensics zoo build --base``).

The zoo of :mod:`forensics.zoo.build` trains 1M-parameter models from scratch. This one starts
from a pretrained checkpoint (a safetensors folder or a GGUF file) and follows TOFU (Maini et al.
2024): the base is fine-tuned on question/answer pairs about invented authors (the bio world,
:mod:`forensics.zoo.bio`; or the closed-vocabulary world of :mod:`forensics.zoo.world`, one-word
attribute values), so what it learns of the forget set F is known to come from that fine-tune and
a model fine-tuned without F exists. Prompts go through the base's own chat
template when it has one (:func:`forensics.inputs.chat.templated`); the audit then needs
``--chat-template``, and ``zoo.json`` says so (``chat_template``).

Models (:data:`BASE_MODELS`), all from the base:

- ``original``: fine-tuned on F + R (loss on the answer tokens; :func:`finetune_answers`) until
  its greedy accuracy on F and on R reaches ``target_original`` (checked once an epoch) or
  ``max_epochs``;
- ``retrain``: the same recipe on R only (DELETED by construction);
- ``retrain_perturbed`` (hard negative): R plus F's questions with a *wrong* answer of the same
  form (:func:`perturbed_facts`: the answer sentence with one of the world's perturbed values, or
  another value of the attribute): it knows F's subjects,
  questions and answer frames, never their values. The "perturbed" negative pool of the
  Unlearning Depth Score meta-evaluation;
- ``retrain_mentions`` (hard negative): R plus the mention texts of F's subjects (F's questions
  with neutral continuations and sentences naming them, :func:`forensics.zoo.world.mention_texts`;
  loss on every token);
- ``ga``, ``graddiff``, ``npo``, ``simnpo``, ``rmu``, ``idk``: the zoo's unlearning methods
  (:mod:`forensics.zoo.unlearning`) applied to ``original`` at a pretrained model's learning
  rates (:func:`forensics.zoo.real.pretrained_unlearning`);
- ``relearned``: ``ga`` fine-tuned back on F (NOT_FORGOTTEN).

Ground truth: the zoo's relearning oracle (:mod:`forensics.zoo.oracle`, cross-fitted F_a -> F_b,
ROUGE-L recall of the key span in the bio world, greedy exact match in the closed one) against
``retrain``, never given to the audit; labels as
:func:`forensics.zoo.labels.make_labels` gives them. The folder has the zoo's layout
(``zoo.json``, ``labels.json``, ``metrics.json``, ``data/``, ``models/<name>/``) with ``size``
``"base"``, so ``forensics bench --size base`` audits it.

A build is resumable: it works in a hidden sibling folder ``.<out>.building`` where each finished
model leaves its weights and a record (``jobs/<name>.json``: training details, metrics, timings,
the oracle's per-fact scores). Run the same command again after an interruption and it goes on
from the first unfinished model; every job's seed depends only on its place in the order, so the
resumed zoo equals an uninterrupted one. ``out`` itself appears only when the build is whole.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from forensics.compute.atomic import read_json, write_json_atomic
from forensics.compute.finetune import Batchable, Sampler, answer_nll, encode_answers, encode_texts, nll, run_steps
from forensics.compute.scoring import logits_fn_for, score_facts
from forensics.core.errors import ForensicsInputError
from forensics.inputs.data import Fact
from forensics.zoo.bio import BioWorld, make_bio_world
from forensics.zoo.build import _facts
from forensics.zoo.oracle import OracleConfig, crossfit_probe, decide, held_out_facts, split_forget
from forensics.zoo.real import ground_truth, pretrained_unlearning
from forensics.zoo.training import GreedyAccuracy
from forensics.zoo.unlearning import METHODS, UnlearnConfig, UnlearnContext, relearn
from forensics.zoo.world import ATTRIBUTES, IDK_ANSWER, make_world, mention_texts, write_data

#: Every model of a real-base zoo, in the order of ``labels.json``: name -> (the model it starts
#: from: None for the base, kind). Kinds as :class:`forensics.zoo.jobs.ZooModel`'s.
BASE_MODELS: dict[str, tuple[str | None, str]] = {
    "original": (None, "original"),
    "retrain": (None, "retrain"),
    "retrain_perturbed": (None, "hard_negative"),
    "retrain_mentions": (None, "hard_negative"),
    "ga": ("original", "method"),
    "graddiff": ("original", "method"),
    "npo": ("original", "method"),
    "simnpo": ("original", "method"),
    "rmu": ("original", "method"),
    "idk": ("original", "method"),
    "relearned": ("ga", "relearned"),
}

_HARD_NEGATIVE_NOTE = (
    "hard negative: never trained on F's answers; the oracle checks that its familiarity with "
    "F's subjects and questions gives no recovery above retrain"
)


@dataclass
class BaseZooConfig:
    """Settings of :func:`build_base_zoo` (see the module docstring)."""

    #: Seed of the world, the batch orders and the oracle's fine-tunes.
    seed: int = 0
    #: The facts: "bio" (free-text questions about authors, :mod:`forensics.zoo.bio`) or
    #: "attributes" (the closed-vocabulary world: 4 attributes x 3 templates a subject, one-word
    #: values).
    world: str = "bio"
    #: Forget, retain and holdout authors (10 questions each); TOFU's forget10 has 20 authors.
    n_forget: int = 8
    n_retain: int = 8
    n_holdout: int = 8
    #: Models to build (names of :data:`BASE_MODELS`; a model's starting model is built too).
    models: tuple[str, ...] = tuple(BASE_MODELS)
    #: Fine-tuning of the base: AdamW learning rate (linear warm-up over one epoch), items per
    #: step, and the most epochs; it stops at the first epoch's end where the trained sets'
    #: greedy accuracy reaches ``target_original``.
    finetune_lr: float = 1e-4
    finetune_batch_size: int = 16
    max_epochs: int = 20
    #: Minimum greedy accuracy (fraction of facts) of the fine-tuned sets.
    target_original: float = 0.95
    #: Render prompts in the base's chat template (when it has one).
    chat_template: bool = True
    #: Run every fine-tune's passes under bfloat16 autocast on float32 weights (about three
    #: times faster on a CPU with bfloat16 instructions; the saved weights are float32).
    bfloat16: bool = False
    #: Torch threads (0: leave torch's default).
    threads: int = 0
    #: Settings of the unlearning methods and of ``relearned``.
    unlearn: UnlearnConfig = field(default_factory=pretrained_unlearning)
    #: The ground-truth oracle (a pretrained model's learning rate; ``free_text`` applies to the bio
    #: world, the closed world's one-word answers are scored by greedy exact match).
    oracle: OracleConfig = field(default_factory=lambda: OracleConfig(steps=20, lr=1e-4, batch_size=16, free_text=True))


def perturbed_facts(world, facts: list[Fact]) -> list[Fact]:
    """``facts`` of ``world`` with a wrong value in place of the true one: in the bio world the first
    of the world's wrong values for that author and question form (same question, same answer
    frame; ``key`` follows), in the closed world the attribute's next value in
    :data:`forensics.zoo.world.ATTRIBUTES` (the same for every template of one fact)."""
    out = []
    for f in facts:
        if isinstance(world, BioWorld):
            form = str(f.id).split("-", 2)[2]
            wrong = world.wrong[str(f.subject)][form][0]
            out.append(replace(f, answer=f.answer.replace(str(f.key), wrong), key=wrong))
        else:
            pool = ATTRIBUTES[str(f.attribute)]
            value = world.values[str(f.subject)][str(f.attribute)]
            out.append(replace(f, answer=" " + pool[(pool.index(value) + 1) % len(pool)]))
    return out


def autocast(config: BaseZooConfig):
    """The context a build's training job runs in: bfloat16 autocast when ``config.bfloat16``,
    with autocast's weight cache off. The cache keeps one bfloat16 copy of each trainable weight
    until the outermost autocast context exits; a whole job runs in one context, so with the cache
    every forward pass would reuse the weights as they were before the first optimiser step (on
    SmolLM2-135M the answer NLL fell from 2.56 to 1.90 in 20 steps with it, to 0.002 without it;
    docs/decisions.md)."""
    if not config.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)


def finetune_answers(
    model, tokenizer, answers: Batchable, checked: list[Fact], config: BaseZooConfig, seed: int, texts=None
) -> dict:
    """Fine-tune ``model`` in place on ``answers`` (answer-token NLL; with ``texts``, a
    :class:`Batchable` of plain texts, plus their every-token NLL from a second sampler) and
    return the recipe's details. AdamW at ``config.finetune_lr`` with a one-epoch linear
    warm-up; stops at the end of the first epoch where the greedy accuracy on ``checked`` reaches
    ``config.target_original``, or after ``config.max_epochs`` epochs."""
    bs = config.finetune_batch_size
    epoch = -(-len(answers) // bs)
    sampler = Sampler(answers, bs, seed)
    extra = Sampler(texts, bs, seed + 1) if texts is not None else None
    accuracy = GreedyAccuracy(tokenizer, checked)
    device = next(model.parameters()).device

    def loss(step: int) -> torch.Tensor:
        value = answer_nll(model, sampler.next(), device)
        return value + nll(model, extra.next()) if extra is not None else value

    reached: list[float] = []

    def stop(step: int) -> bool:
        if step == 0:
            return False
        reached.append(accuracy(model))
        return reached[-1] >= config.target_original

    steps = run_steps(
        model,
        list(model.parameters()),
        loss,
        config.max_epochs * epoch,
        config.finetune_lr,
        warmup=epoch,
        stop=stop,
        check_every=epoch,
        fused=True,
    )
    return {
        "loss": "NLL(answer tokens)" + (" + NLL(every token of the mention texts)" if texts is not None else ""),
        "steps": steps,
        "epochs": round(steps / epoch, 2),
        "lr": config.finetune_lr,
        "batch_size": bs,
        "schedule": "linear warm-up over one epoch, then constant",
        "stopping_rule": f"greedy accuracy on the trained sets >= {config.target_original}, checked each epoch",
        "accuracy_at_checks": [round(a, 4) for a in reached],
    }


def _metrics(model, tokenizer, sets: dict[str, list[Fact]]) -> dict:
    fn = logits_fn_for(model)
    out = {}
    for name, facts in sets.items():
        s = score_facts(fn, tokenizer, facts, batch_size=64)
        out[name] = {"accuracy": s.accuracy, "mean_logprob": s.mean_logprob, "n": len(s.correct)}
    return out


def _order(wanted: tuple[str, ...]) -> list[str]:
    """``wanted`` and every model they start from, in :data:`BASE_MODELS`' order; raises
    :class:`ForensicsInputError` for an unknown name."""
    unknown = sorted(set(wanted) - set(BASE_MODELS))
    if unknown:
        raise ForensicsInputError(
            f"unknown real-base zoo model(s) {', '.join(unknown)}; choose from {', '.join(BASE_MODELS)}"
        )
    need = set(wanted) | {"original", "retrain"}  # the audits' original and the oracle's reference
    for name in list(need):
        start = BASE_MODELS[name][0]
        while start is not None:
            need.add(start)
            start = BASE_MODELS[start][0]
    return [n for n in BASE_MODELS if n in need]


def build_base_zoo(
    base: str | Path, out: str | Path, config: BaseZooConfig | None = None, progress: bool = False
) -> dict:
    """Build the real-base zoo of ``base`` (a checkpoint folder or a GGUF file) in ``out`` and
    return its manifest (``zoo.json`` with ``labels`` and ``metrics``). ``out`` is written whole
    or not at all (a temporary sibling folder, renamed at the end); a finished build of the same
    base and settings in ``out`` is reused.

    Raises :class:`ForensicsInputError` for a base that cannot be loaded, an unknown model name,
    or an ``out`` that exists, is not empty and is not a finished build of this base (nothing in
    it is touched), and while another process builds into ``out``. An interrupted build keeps its
    finished models in ``.<out>.building`` and the same call resumes it (the module docstring)."""
    from transformers import AutoTokenizer

    from forensics.inputs.chat import template_of, templated
    from forensics.inputs.gguf import gguf_file, materialize
    from forensics.inputs.loading import load_hf_model

    config = config or BaseZooConfig()
    out = Path(out)
    if config.world not in ("bio", "attributes"):
        raise ForensicsInputError(f"unknown zoo world {config.world!r}; choose bio or attributes")
    if config.world == "attributes":  # one-word answers: greedy exact match
        config = replace(config, oracle=replace(config.oracle, free_text=False))
    order = _order(config.models)
    settings = hashlib.sha256(json.dumps(asdict(config), sort_keys=True, default=str).encode()).hexdigest()[:16]
    if (out / "zoo.json").is_file():
        manifest = json.loads((out / "zoo.json").read_text())
        if (
            manifest.get("size") == "base"
            and manifest.get("settings") == settings
            and manifest.get("base") == str(base)
        ):
            return manifest | _read(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ForensicsInputError(
            f"{out} exists and is not a finished real-base zoo of this base; choose a new or empty folder"
        )
    gguf = gguf_file(base)
    folder = materialize(gguf) if gguf is not None else Path(base)
    say = partial(print, flush=True) if progress else (lambda *a, **k: None)  # a log file sees each model as it ends
    start = time.perf_counter()
    old_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    base_model = load_hf_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    chat = config.chat_template and template_of(tokenizer) is not None
    world = (make_bio_world if config.world == "bio" else make_world)(
        config.n_forget, config.n_retain, config.n_holdout, 4, config.seed
    )
    raw = {s: _facts(world.facts(s)) for s in ("forget", "retain", "holdout")}
    shown = {s: templated(v, tokenizer) if chat else v for s, v in raw.items()}
    wrong = perturbed_facts(world, shown["forget"])
    mentions = mention_texts(world)
    f_a, f_b = split_forget(shown["forget"])
    ctx = UnlearnContext(
        tokenizer=tokenizer,
        forget=encode_answers(tokenizer, shown["forget"]),
        retain=encode_answers(tokenizer, shown["retain"]),
        forget_idk=encode_answers(tokenizer, shown["forget"], answer=IDK_ANSWER),
        forget_facts=shown["forget"],
        config=config.unlearn,
        seed=config.seed * 1000 + 3,
    )
    recipes = {
        "original": (shown["forget"] + shown["retain"], None, "F + R question/answer pairs"),
        "retrain": (shown["retain"], None, "R question/answer pairs (no F)"),
        "retrain_perturbed": (wrong + shown["retain"], None, "R pairs and F's questions with wrong answers"),
        "retrain_mentions": (shown["retain"], mentions, "R pairs and the mention texts of F's subjects"),
    }
    tmp = _workspace(out, base, settings)
    finished = False
    try:
        files = {k: v for k, v in write_data(world, tmp / "data").items() if k in ("forget", "retain", "holdout")}
        for pool in set(os.listdir(tmp / "data")) - {"forget.jsonl", "retain.jsonl", "holdout.jsonl"}:
            (tmp / "data" / pool).unlink()  # the sequence pools: this zoo trains on no raw text
        models, info, metrics, probes, seconds = {}, {}, {}, {}, {}
        for i, name in enumerate(order):
            done = read_json(tmp / "jobs" / f"{name}.json")
            if done is not None:  # finished by an earlier, interrupted run of this build
                info[name], metrics[name], seconds[name] = done["details"], done["metrics"], done["seconds"]
                if done["probe"] is not None:
                    probes[name] = {
                        k: np.asarray(v) if k != "acc_tuned_half_after" else v for k, v in done["probe"].items()
                    }
                say(f"{name}: finished by an earlier run of this build, kept")
                continue
            t = time.perf_counter()
            parent, kind = BASE_MODELS[name]
            if parent is not None and parent not in models:  # kept from an earlier run
                models[parent] = load_hf_model(tmp / "models" / parent)
            model = copy.deepcopy(base_model if parent is None else models[parent])
            with autocast(config):
                if parent is None:
                    items, texts, what = recipes[name]
                    details = finetune_answers(
                        model,
                        tokenizer,
                        encode_answers(tokenizer, items),
                        items,
                        config,
                        config.seed * 1000 + 11 * (i + 1),
                        texts=encode_texts(tokenizer, texts) if texts else None,
                    )
                    details["method"] = f"the base fine-tuned on {what}"
                elif name == "relearned":
                    details = relearn(model, ctx) | {"from": parent, "method": "ga, then fine-tuned back on F"}
                else:
                    details = METHODS[name](model, ctx)
                    details["method"] = f"{name} from original"
                model.eval()
                metrics[name] = _metrics(model, tokenizer, shown)
                trained_at = time.perf_counter()
                if kind != "original":
                    probes[name] = crossfit_probe(model, tokenizer, f_a, f_b, config.oracle)
            seconds[name] = {"train": round(trained_at - t, 1), "oracle": round(time.perf_counter() - trained_at, 1)}
            model.save_pretrained(tmp / "models" / name)
            tokenizer.save_pretrained(tmp / "models" / name)
            _write_job(tmp, name, details, metrics[name], seconds[name], probes.get(name))
            info[name] = details
            if any(BASE_MODELS[n][0] == name for n in order):
                models[name] = model  # a later model starts from it
            acc = metrics[name]
            say(
                f"{name}: {details['steps']} steps, {seconds[name]['train']} s; accuracy F {acc['forget']['accuracy']:.2f}, "
                f"R {acc['retain']['accuracy']:.2f}, H {acc['holdout']['accuracy']:.2f}; oracle {seconds[name]['oracle']} s"
            )
        labels = base_labels(order, info, metrics, probes, held_out_facts(f_a, f_b), config)
        manifest = {
            "zoo_version": "base",
            "world": config.world,
            "size": "base",
            "seed": config.seed,
            "complete": True,
            "base": str(base),
            "base_checkpoint": str(folder),
            "settings": settings,
            "chat_template": chat,
            "config": asdict(config),
            "data": files,
            "models": {name: f"models/{name}" for name in order},
            "forget_split_for_oracle": {
                "F_a_subjects": sorted({str(f.subject) for f in f_a}),
                "F_b_subjects": sorted({str(f.subject) for f in f_b}),
            },
            "torch_threads": torch.get_num_threads(),
            "job_seconds": seconds,
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        shutil.rmtree(tmp / "jobs")
        (tmp / "build.json").unlink()
        for file, obj in (
            ("labels.json", labels),
            ("metrics.json", {"models": metrics, "attempts": {}}),
            ("zoo.json", manifest),
        ):
            (tmp / file).write_text(json.dumps(obj, indent=2) + "\n")  # zoo.json last: it marks a finished build
        if out.exists():
            out.rmdir()  # the empty folder checked above
        os.replace(tmp, out)
        finished = True
    finally:
        torch.set_num_threads(old_threads)
        if not finished and any((tmp / "jobs").glob("*.json")):
            say(f"build stopped; its finished models are kept in {tmp}, and the same command resumes it")
        elif not finished:
            shutil.rmtree(tmp, ignore_errors=True)  # nothing finished: nothing to resume
    return manifest | _read(out)


def _workspace(out: Path, base: str | Path, settings: str) -> Path:
    """The build's hidden working folder beside ``out``: an earlier, interrupted build of the same
    base and settings is resumed, any other one of ours is replaced. Raises
    :class:`ForensicsInputError` while another live process is building into it, or when the
    folder is not a build's."""
    tmp = out.parent / f".{out.name}.building"
    stamp = tmp / "build.json"
    if tmp.exists():
        if not stamp.is_file():
            raise ForensicsInputError(f"{tmp} exists and is not a real-base zoo build; move it away")
        earlier = json.loads(stamp.read_text())
        if earlier.get("pid") != os.getpid() and _alive(int(earlier.get("pid", 0))):
            raise ForensicsInputError(f"another build (process {earlier['pid']}) is writing {out}")
        if earlier.get("settings") != settings or earlier.get("base") != str(base):
            shutil.rmtree(tmp)
    (tmp / "jobs").mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"base": str(base), "settings": settings, "pid": os.getpid()}) + "\n")
    return tmp


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_job(tmp: Path, name: str, details: dict, metrics: dict, seconds: dict, probe: dict | None) -> None:
    """Record a finished model (its weights are already in ``models/<name>``), atomically, so a
    record is whole or absent."""
    record = {
        "details": details,
        "metrics": metrics,
        "seconds": seconds,
        "probe": None if probe is None else {k: np.asarray(v).tolist() for k, v in probe.items()},
    }
    write_json_atomic(tmp / "jobs" / f"{name}.json", record)


def _read(out: Path) -> dict:
    return {
        "labels": json.loads((out / "labels.json").read_text()),
        "metrics": json.loads((out / "metrics.json").read_text()),
        "root": str(out),
    }


def base_labels(order: list[str], info: dict, metrics: dict, probes: dict, held_out: list[Fact], config) -> dict:
    """``labels.json`` of a real-base zoo: per model its method text, training details, ground
    truth and the oracle's numbers (the zoo's rules, :func:`forensics.zoo.labels.make_labels`):
    ``original`` ORIGINAL; ``retrain`` DELETED by construction; a hard negative and a method the
    oracle's label against ``retrain``; ``relearned`` NOT_FORGOTTEN."""
    labels = {}
    for name in order:
        kind = BASE_MODELS[name][1]
        entry = {"architecture": "base", "method": info[name]["method"], "details": info[name]}
        if kind == "original":
            entry |= {"ground_truth": "ORIGINAL", "oracle": None}
        elif kind == "retrain":
            entry |= {
                "ground_truth": "DELETED",
                "oracle": {
                    "note": "by construction: never trained on F",
                    "acc_held_out_before": float(probes[name]["before"].mean()),
                    "acc_held_out_after": float(probes[name]["after"].mean()),
                    "acc_tuned_half_after": float(probes[name]["acc_tuned_half_after"]),
                },
            }
        else:
            oracle = decide(probes[name], probes["retrain"], held_out, config.oracle) | {"reference": "retrain"}
            truth = oracle["ground_truth"]
            if kind == "hard_negative":
                oracle["note"] = _HARD_NEGATIVE_NOTE
                entry["hard_negative"] = True
            elif kind == "relearned":
                truth = "NOT_FORGOTTEN"
                oracle["note"] = f"F accuracy is back to {metrics[name]['forget']['accuracy']:.3f}"
            else:  # a method that did not forget F in behaviour is no deletion or suppression
                accuracy = {s: metrics[name][s]["accuracy"] for s in ("forget", "holdout")}
                o = {s: metrics["original"][s]["accuracy"] for s in ("forget", "holdout")}
                truth, why = ground_truth(truth, accuracy, o, config.unlearn.target_forget)
                oracle["why"] = why
            entry |= {"ground_truth": truth, "oracle": oracle}
        labels[name] = entry
    return labels
