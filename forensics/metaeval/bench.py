"""The meta-evaluation bench: how often is the verdict right, and how trustworthy is each line?

``forensics bench --zoo DIR --out DIR [--seeds 0,1,2] [--size small|tiny] [--profile ...]``
(and :func:`run_bench`) does, for every seed ``s``:

1. **Zoo**: builds (or reuses, :func:`forensics.zoo.build_zoo` caches by size, seed and code
   version) the model-organism zoo in ``DIR/seed<s>``. When ``DIR`` itself holds a zoo
   (``DIR/zoo.json``) of the one seed asked for, that zoo is used in place.
2. **Audits** every zoo model with a ground truth against its own original (``llama_*``
   against ``llama_original``, the rest against ``original``) on the zoo's F / R / H, with
   the chosen profile. Audits of one original share an activation / SAE cache.
3. **Perturbs each deleted model** (ground truth DELETED: ``retrain``, ``llama_retrain``, and
   any method whose build the zoo's oracle found to have deleted F) twice and audits the
   perturbed copies the same way:
   - ``<name>~q4``: every ``nn.Linear`` weight of the blocks quantized to 4 bits
     (round-to-nearest per output channel, :func:`forensics.compute.quantize.quantize_model`);
   - ``<name>~relearn``: one epoch of fine-tuning on data unrelated to F: the retain facts R
     (disjoint subjects; loss on the answer tokens, AdamW, lr ``relearn_lr``, batch 16,
     shuffled with the seed).

Outputs (``--out``, written atomically: the folder appears whole or not at all):
``bench.json`` (everything below), ``bench.html`` (the tables, self-contained) and
``audits/seed<s>/<model>.json`` (each audit's ``results.json``). Work in progress (the
audits' report folders, caches, perturbed checkpoints) lives in the hidden sibling
``.DIR.work``; an interrupted bench re-run with the same command resumes from it (finished
audits are read back; a re-run whose audit settings differ is refused, :func:`check_resume`); it
is deleted after a successful run, unless it holds finished audits that run did not cover
(:func:`finish_work`).

Models the zoo's oracle labelled UNDETERMINED (its CI straddles its margin) are audited and
listed (``undetermined``) but not scored: not in the confusion matrices, not in faithfulness.

**Confusion matrix**: ground truth (rows: DELETED, SUPPRESSED, NOT_FORGOTTEN) by verdict
(columns: DELETED, SUPPRESSED, NOT_FORGOTTEN, INCONCLUSIVE), per seed and pooled, with the
accuracy (verdict == ground truth) and the number of deleted models called SUPPRESSED.
Perturbed models are reported separately (their ground truth stays DELETED).

**Reliability** (:func:`forensics.metaeval.scoring.reliability`): per verdict and confidence label, over the scored models
and the perturbed copies, how many audits got it, the share whose verdict was right and its
one-sided 95% lower bound (Clopper-Pearson); pooled over the decisive verdicts, the same per
confidence label (:func:`forensics.metaeval.scoring.label_accuracy`): what "high" or "medium"
has been worth on this bench. ``benchmarks/reliability.py`` pools several benches.

**Bound honesty** (:func:`forensics.metaeval.scoring.bound_honesty`, ``bound_honesty``): on each
suppressed model, every deletion bound a line stated (voted ``deleted`` or not) beside the zoo
oracle's recovery above ``retrain``, both as shares of O's signal on F (the gate's
``original_margin``); a bound under the oracle's share would have certified less than the oracle
recovered. Row ``verdict``: on each suppressed model where a recovery attack voted ``deleted``,
the bound a DELETED verdict would have stated (:func:`forensics.core.verdict.stated_bound`). Only
on the zoo's own data (``data_view="full"``), where the gate reads the oracle's measure.

**Line scores** (:func:`forensics.metaeval.scoring.line_score`): one number per (line, audited model), oriented so that
*higher means the knowledge is still there*. For the one-sided lines (behaviour, attribute
probes, logit lens, steering, relearning, benign fine-tuning, quantization and membership
attacks: they vote only on F above the control) it is the signed ``effect - control``; for
REMIND, which votes only on the side where O shows its own contrast, ``effect - control``
signed by O's side; for the others (SAE feature survival, CKA ...) it is
``|effect - control|``, a gap in either direction. A line that did not
run (or ran with no number) has no score for that model. ``verdict`` is the combined score
of the verdict: +1 for SUPPRESSED / NOT_FORGOTTEN, -1 for DELETED, 0 for INCONCLUSIVE,
times the confidence (high 1, medium 2/3, low 1/3).

**Faithfulness** (as in the UDS / OpenUnlearning meta-evaluation): ROC-AUC of a line's
score separating models that still hold the knowledge (ground truth SUPPRESSED and
NOT_FORGOTTEN: positives) from models that never had it (DELETED: negatives), pooled over
seeds (ties count one half). It is reported twice: with every model (``lines``) and
without the zoo's *hard negatives* (``lines_without_hard_negatives``): the deleted models
that know F's subjects and question forms but never learned F's answers
(``retrain_mentions``, ``retrain_lineage``; :data:`forensics.zoo.jobs.HARD_NEGATIVES`). A line
whose faithfulness falls when they are added was separating on familiarity with F's
subjects, not on the answers. ``hard_negatives`` lists their verdicts.

**Robustness** (UDS meta-evaluation, Lee et al. 2026): the score of each deleted model
before (``b``) and after (``a``) a perturbation; stability ``1 - |a - b| / (|a| + |b|)``
(1 when both are 0), averaged over seeds and deleted models, for 4-bit quantization (Q)
and relearning (R); robustness = harmonic mean of Q and R. UDS uses this formula for its
quantization stability; its relearning stability compares the unlearned model's change
with the retain model's change under relearning on the forget set, which has no
counterpart here (the perturbation is applied to the deleted model itself, on unrelated
data, so the expected change is zero): we use the quantization formula for both. Because
our scores are control-subtracted, a deleted model's score sits near 0 by design and this
relative change is noisy there; ``robustness_scaled`` is therefore also reported: stability
``max(0, 1 - |a - b| / gap)`` with ``gap = |median(positives) - median(negatives)|`` of the
same line, pooled (how much of the separation faithfulness relies on a perturbation eats);
``robustness_ci``: its 95% interval (:func:`forensics.metaeval.scoring.robustness_interval`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensics.core.errors import ForensicsInputError
from forensics.core.registry import discover_lines, gate_of
from forensics.metaeval.executor import ExecutorConfig
from forensics.metaeval.scoring import (
    PERTURBATIONS,
    PUBLISHED,
    TRUTHS,
    UNDETERMINED,
    bound_cases,
    bound_honesty,
    confusion,
    hard_negative_summary,
    label_accuracy,
    meta_evaluation,
    reliability,
    scored_audits,
    scores_of,
)


@dataclass
class BenchConfig:
    """What :func:`run_bench` builds, audits and perturbs (see the module docstring)."""

    #: Zoo seeds: one zoo per seed, each audited with its own seed.
    seeds: tuple[int, ...] = (0, 1, 2)
    #: Zoo size preset: "small" or "tiny" (:meth:`forensics.zoo.ZooConfig.preset`), or "base": a
    #: real-base zoo (:mod:`forensics.zoo.base`), which the bench never builds.
    size: str = "small"
    #: Zoo world: "attributes" (closed vocabulary) or "bio" (free-text questions).
    world: str = "attributes"
    #: Audit profile name (:data:`forensics.core.profiles.PROFILES`).
    profile: str = "standard"
    #: Torch device of the audits ("cpu" or "cuda[:N]").
    device: str = "cpu"
    #: Model dtype of the audits ("float32", "bfloat16" or "float16").
    dtype: str = "float32"
    #: Zoo models to audit (None: every model with a ground truth).
    models: tuple[str, ...] | None = None
    #: Evidence lines to run (None: all of the profile's).
    lines: tuple[str, ...] | None = None
    #: Also audit each deleted model's perturbed copies (4-bit quantized, relearned on R).
    perturb: bool = True
    #: AdamW learning rate of the relearning perturbation (one epoch on R).
    relearn_lr: float = 1e-3
    #: Facts per step of the relearning perturbation.
    relearn_batch: int = 16
    #: The audits' view of the zoo's data: "full" (as built) or "keyless", TOFU forget10's shape:
    #: every fact's ``key``, paraphrased and perturbed answers removed, and the holdout set cut to
    #: its first ``keyless_holdout_subjects`` subjects (:func:`audit_data`). The models and their
    #: oracle labels are the same; only what the audit is given changes.
    data_view: str = "full"
    #: Holdout subjects kept by the "keyless" view (TOFU-shaped data has 6-8).
    keyless_holdout_subjects: int = 7
    #: Per-line config overrides for every audit, as the audit's ``--set``:
    #: ``{line: {"field": value}}`` (:func:`forensics.core.config.parse_overrides`); None: the profile's.
    settings: dict[str, dict[str, Any]] | None = None


#: BenchConfig fields that change what an audit finds: a resumed bench must match them
#: (seeds and models may differ: they choose which audits run, not how).
AUDIT_FIELDS = (
    "size",
    "world",
    "profile",
    "device",
    "dtype",
    "lines",
    "relearn_lr",
    "relearn_batch",
    "data_view",
    "keyless_holdout_subjects",
    "settings",
)


def check_resume(work: Path, config: BenchConfig) -> None:
    """Refuse to resume an unfinished bench in ``work`` that ran with other audit settings
    (:data:`AUDIT_FIELDS`): its finished audits would be read back as if run with these.
    Records the settings in ``work/settings.json`` on a first run (and in a work folder written
    before the record existed). Raises :class:`ForensicsInputError` naming the fields."""
    wanted = json.loads(json.dumps({k: getattr(config, k) for k in AUDIT_FIELDS}))
    record = work / "settings.json"
    if record.is_file():
        found = json.loads(record.read_text())
        differ = sorted(k for k in AUDIT_FIELDS if found.get(k) != wanted[k])
        if differ:
            raise ForensicsInputError(
                f"an unfinished bench in {work} ran with other settings ({', '.join(differ)}); "
                "re-run it as it was, or remove that folder to start again"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=1))


# --------------------------------------------------------------------------- perturbations


def perturb_model(source: Path, dest: Path, kind: str, retain_facts, config: BenchConfig, seed: int) -> Path:
    """Write a perturbed copy of checkpoint ``source`` to ``dest`` (atomically): ``q4`` or ``relearn``.

    A checkpoint already at ``dest`` is reused as it is; returns ``dest``. Raises ``ValueError``
    for another ``kind``.
    """
    import torch

    from forensics.compute.quantize import quantize_model
    from forensics.inputs.loading import load_hf_model, load_tokenizer

    if (dest / "config.json").is_file():
        return dest
    model = load_hf_model(source)
    tokenizer = load_tokenizer(source)
    if kind == "q4":
        quantize_model(model, 4)
    elif kind == "relearn":
        from forensics.compute.finetune import encode_answers, nll, run_steps

        torch.manual_seed(seed)
        batch = encode_answers(tokenizer, list(retain_facts))
        order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(seed))
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(True)
        size = config.relearn_batch
        run_steps(
            model,
            params,
            lambda step: nll(model, batch.take(order[step * size : (step + 1) * size])),
            steps=-(-len(order) // size),
            lr=config.relearn_lr,
            betas=(0.9, 0.999),
        )
    else:
        raise ValueError(f"unknown perturbation {kind!r}")
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, dest)
    return dest


# --------------------------------------------------------------------------- the bench


def _zoo_for_seed(root: Path, seed: int, config: BenchConfig, progress: bool) -> Path:
    from forensics.zoo import build_zoo

    manifest = root / "zoo.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        world = info.get("world", "attributes")
        if (
            len(config.seeds) == 1
            and info.get("seed") == seed
            and info.get("size") == config.size
            and world == config.world
        ):
            return root
        raise ForensicsInputError(
            f"{root} holds one zoo (world {world}, seed {info.get('seed')}, size "
            f"{info.get('size')}); point --zoo at a folder for per-seed zoos (seed<N>/ inside it)"
        )
    folder = root / f"seed{seed}"
    if config.size == "base":
        if (folder / "zoo.json").is_file():
            return folder
        raise ForensicsInputError(
            f"no real-base zoo of seed {seed} in {root}; build it first with "
            f"`forensics zoo build --base CHECKPOINT --seed {seed} --out {folder}`"
        )
    build_zoo(folder, size=config.size, seed=seed, progress=progress, world=config.world)
    return folder


def bench_job(job: tuple, work: Path, config: BenchConfig, progress: bool) -> dict[str, Any]:
    """One audit of the bench: ``job`` = (seed, zoo folder, model name, perturbation or None).
    A perturbed model is written first (:func:`perturb_model`); audits of one original share
    ``work/cache/seed<s>/<original>``. Returns the audit's ``results.json`` (a finished one is
    read back)."""
    from forensics.inputs.data import load_facts

    seed, zoo, name, kind = job
    original = zoo / "models" / _original_of(name)
    model_dir, tag = zoo / "models" / name, audit_tag(name, kind)
    if kind is not None:
        retain, _ = load_facts(zoo / "data" / "retain.jsonl")
        if _chat(zoo):
            from forensics.inputs.chat import templated
            from forensics.inputs.loading import load_tokenizer

            retain = templated(retain, load_tokenizer(zoo / "models" / name))
        model_dir = perturb_model(
            zoo / "models" / name, work / "models" / f"seed{seed}" / tag, kind, retain, config, seed
        )
    if progress:
        print(f"== seed {seed}: {tag} vs {original.name}", file=sys.stderr, flush=True)
    cache = work / "cache" / f"seed{seed}" / original.name
    data = audit_data(zoo, work, seed, config)
    out = work / "audits" / f"seed{seed}" / tag
    return _audit_json(data, original, model_dir, out, cache, seed, config, progress, chat_template=_chat(zoo))


def audit_tag(name: str, kind: str | None) -> str:
    """The name a bench audit is kept under: the model's, with ``~<perturbation>`` for a perturbed copy."""
    return name if kind is None else f"{name}~{kind}"


def _chat(zoo: Path) -> bool:
    """Whether the zoo's models were trained on prompts in their chat template (a real-base zoo's
    ``zoo.json`` says so), so that the audits render them the same way."""
    return bool(json.loads((zoo / "zoo.json").read_text()).get("chat_template", False))


#: Fact fields the "keyless" view removes (TOFU's forget10.json has none of them).
KEYLESS_DROPS = ("key", "paraphrased_answer", "perturbed_answers")


def audit_data(zoo: Path, work: Path, seed: int, config: BenchConfig) -> Path:
    """The folder of ``forget.jsonl`` / ``retain.jsonl`` / ``holdout.jsonl`` the audits of one
    seed read: the zoo's own ``data`` for the "full" view; for "keyless", a copy in
    ``work/data/seed<s>`` without :data:`KEYLESS_DROPS` and with the holdout set cut to its first
    ``config.keyless_holdout_subjects`` subjects in file order (written once, deterministic)."""
    source = zoo / "data"
    if config.data_view == "full":
        return source
    target = work / "data" / f"seed{seed}"
    if (target / "holdout.jsonl").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("forget", "retain", "holdout"):
        rows = [json.loads(line) for line in (source / f"{name}.jsonl").read_text().splitlines() if line.strip()]
        rows = [{k: v for k, v in row.items() if k not in KEYLESS_DROPS} for row in rows]
        if name == "holdout":
            kept = list(dict.fromkeys(row.get("subject") for row in rows))[: config.keyless_holdout_subjects]
            rows = [row for row in rows if row.get("subject") in kept]
        tmp = target / f".{name}.{os.getpid()}.tmp"  # Ray tasks of one seed may race here
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        tmp.replace(target / f"{name}.jsonl")
    return target


def _check_names(config: BenchConfig) -> None:
    """Refuse unknown zoo models and lines before any zoo is built."""
    from forensics.core.registry import discover_lines
    from forensics.zoo.base import BASE_MODELS
    from forensics.zoo.jobs import MODEL_ORDER

    known = tuple(BASE_MODELS) if config.size == "base" else MODEL_ORDER
    unknown = sorted(set(config.models or ()) - set(known))
    if unknown:
        raise ForensicsInputError(f"unknown zoo model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    lines = discover_lines()[0]
    unknown = sorted(set(config.lines or ()) - set(lines))
    if unknown:
        raise ForensicsInputError(f"unknown evidence line(s) {', '.join(unknown)}; known: {', '.join(lines)}")


def _original_of(name: str) -> str:
    return "llama_original" if name.startswith("llama_") else "original"


def _audit_json(
    data: Path,
    original: Path,
    unlearned: Path,
    out: Path,
    cache: Path,
    seed: int,
    config: BenchConfig,
    progress: bool,
    chat_template: bool = False,
) -> dict[str, Any]:
    """Audit one model (or read back a finished audit from an interrupted bench); with
    ``chat_template``, prompts in the original's chat template."""
    from forensics.core.pipeline import audit

    done = out / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    if out.exists():
        shutil.rmtree(out)  # audits are written atomically; anything else here is debris
    audit(
        original=original,
        unlearned=unlearned,
        forget=data / "forget.jsonl",
        retain=data / "retain.jsonl",
        holdout=data / "holdout.jsonl",
        out=out,
        device=config.device,
        dtype=config.dtype,
        seed=seed,
        profile=config.profile,
        progress=progress,
        cache_dir=cache,
        pdf=False,
        lines=list(config.lines) if config.lines else None,
        all_lines=True,
        chat_template=chat_template,
        settings=config.settings,
        command=f"forensics bench  # {unlearned.name} vs {original.name}, seed {seed}",
    )
    return json.loads(done.read_text())


def run_bench(
    zoo_root: str | Path,
    out: str | Path,
    config: BenchConfig | None = None,
    progress: bool = True,
    executor: ExecutorConfig | None = None,
) -> dict[str, Any]:
    """Run the bench (see the module docstring); returns what ``bench.json`` holds.

    ``executor``: where the audits run (:mod:`forensics.metaeval.executor`; default: one after
    the other in this process); the results do not depend on it.

    Raises :class:`ForensicsInputError` for an unknown profile, zoo size or zoo model, no
    seeds, an output folder that exists and is not empty, or a ``zoo_root`` that holds a
    single zoo of another seed or size.
    """
    from forensics.compute.atomic import atomic_output_dir, check_output_dir
    from forensics.core.profiles import PROFILES
    from forensics.reports.bench import render_html

    config = config or BenchConfig()
    started = time.time()
    if config.profile not in PROFILES:
        raise ForensicsInputError(f"unknown profile {config.profile!r}; choose one of {', '.join(PROFILES)}")
    if config.size not in ("tiny", "small", "base"):
        raise ForensicsInputError(f"unknown zoo size {config.size!r}; choose tiny, small or base")
    if config.world not in ("attributes", "bio"):
        raise ForensicsInputError(f"unknown zoo world {config.world!r}; choose attributes or bio")
    if config.data_view not in ("full", "keyless"):
        raise ForensicsInputError(f"unknown data view {config.data_view!r}; choose full or keyless")
    if not config.seeds:
        raise ForensicsInputError("no seeds given")
    _check_names(config)
    out = check_output_dir(out)
    zoo_root = Path(zoo_root)
    work = out.parent / f".{out.name}.work"
    rows: list[dict[str, Any]] = []
    perturbed: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    jobs: list[tuple] = []  # (seed, zoo, model name, perturbation or None, label), in report order
    for seed in config.seeds:
        zoo = _zoo_for_seed(zoo_root, seed, config, progress)
        labels = json.loads((zoo / "labels.json").read_text())
        names = [n for n, info in labels.items() if info.get("ground_truth") in TRUTHS + (UNDETERMINED,)]
        if config.models:
            unknown = sorted(set(config.models) - set(names))
            if unknown:
                raise ForensicsInputError(f"unknown zoo model(s) {', '.join(unknown)}; choose from {', '.join(names)}")
            names = [n for n in names if n in config.models]
        for name in names:
            jobs.append((seed, zoo, name, None, labels[name]))
            if config.perturb and labels[name]["ground_truth"] == "DELETED":
                jobs += [(seed, zoo, name, kind, labels[name]) for kind in PERTURBATIONS]
    from forensics.metaeval.executor import run_jobs

    check_resume(work, config)  # after every zoo is found: a refused input leaves no record behind
    done = run_jobs(bench_job, [(job[:4], work, config, progress) for job in jobs], executor)
    # deletion bounds on suppressed models against the oracle's recovery; only on the zoo's own data,
    # where the gate's measure (O's signal) is the oracle's (the keyless view drops the key it reads)
    cases: list[dict[str, Any]] = []
    gate = gate_of(discover_lines()[0])
    for (seed, _, name, kind, label), res in zip(jobs, done):
        results[f"seed{seed}/{audit_tag(name, kind)}"] = res
        if kind is None and label["ground_truth"] == "SUPPRESSED" and config.data_view == "full":
            cases += bound_cases(seed, name, label.get("oracle"), res, gate)
        if kind is None:
            rows.append(
                {
                    "seed": seed,
                    "model": name,
                    "truth": label["ground_truth"],
                    "hard_negative": bool(label.get("hard_negative")),
                    "verdict": res["verdict"]["label"],
                    "confidence": res["verdict"]["confidence"],
                    "scores": scores_of(res),
                }
            )
        else:
            perturbed.append(
                {
                    "seed": seed,
                    "model": name,
                    "perturbation": kind,
                    "hard_negative": rows[-1]["hard_negative"],
                    "verdict": res["verdict"]["label"],
                    "confidence": res["verdict"]["confidence"],
                    "scores": scores_of(res),
                    "before": rows[-1]["scores"],
                }
            )
    scored = scored_audits(rows, perturbed)
    bench = {
        "schema": "unlearning-forensics/bench",
        "schema_version": 1,
        "config": {
            "seeds": list(config.seeds),
            "size": config.size,
            "world": config.world,
            "profile": config.profile,
            "models": list(config.models) if config.models else None,
            "lines": list(config.lines) if config.lines else None,
            "perturb": config.perturb,
            "relearn_lr": config.relearn_lr,
            "data_view": config.data_view,
            "settings": config.settings,
            "zoo": str(zoo_root),
        },
        "confusion": {
            "pooled": confusion(rows),
            "per_seed": {str(s): confusion([r for r in rows if r["seed"] == s]) for s in config.seeds},
        },
        "undetermined": [{k: v for k, v in r.items() if k != "scores"} for r in rows if r["truth"] == UNDETERMINED],
        "perturbed_confusion": confusion([{"truth": "DELETED", "verdict": p["verdict"]} for p in perturbed]),
        "reliability": reliability(scored),
        "label_accuracy": label_accuracy(scored),
        "lines": meta_evaluation(rows, perturbed),
        "lines_without_hard_negatives": meta_evaluation(
            [r for r in rows if not r["hard_negative"]], [p for p in perturbed if not p["hard_negative"]]
        ),
        "hard_negatives": hard_negative_summary(rows),
        "bound_honesty": bound_honesty(cases),
        "models": rows,
        "perturbed": [{k: v for k, v in p.items() if k != "before"} for p in perturbed],
        "published": {k: {"faithfulness": f, "robustness": r} for k, (f, r) in PUBLISHED.items()},
        "seconds": round(time.time() - started, 1),
    }
    with atomic_output_dir(out) as tmp:
        (tmp / "bench.json").write_text(json.dumps(bench, indent=2, sort_keys=False))
        (tmp / "bench.html").write_text(render_html(bench, __doc__ or ""), encoding="utf-8")
        for key, res in results.items():
            target = tmp / "audits" / f"{key}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(res, indent=1))
    ran = {work / "audits" / f"seed{seed}" / audit_tag(name, kind) for seed, _, name, kind, _ in jobs}
    finish_work(work, ran)
    return bench


def finish_work(work: Path, ran: set[Path]) -> None:
    """Delete a finished bench's work folder, unless it holds finished audits (``work/audits/seed<s>/<tag>``)
    other than ``ran``: a subset bench (``--models``, ``--seeds``) resumed from an unfinished larger
    bench's folder leaves that bench's audits for its own re-run. Hidden entries (an interrupted
    audit's temporary folder) do not count."""
    others = [p for p in (work / "audits").glob("seed*/*") if p not in ran and not p.name.startswith(".")]
    if not others:
        shutil.rmtree(work, ignore_errors=True)
