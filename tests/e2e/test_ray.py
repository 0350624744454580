"""A local Ray cluster of 2 CPUs runs bench audits as tasks and gives the same verdicts, line
scores and results.json as the serial run (a subset of the tiny-zoo bench, to fit CI's time)."""

from __future__ import annotations

import json

import pytest
import torch

from forensics.metaeval.bench import BenchConfig, run_bench
from forensics.metaeval.executor import ExecutorConfig

#: A deleted, a suppressed and a not-forgotten model, with lines that vote on each; the deleted
#: one brings its two perturbed copies (perturbation runs inside the task too).
CONFIG = BenchConfig(
    seeds=(0,),
    size="tiny",
    profile="quick",
    models=("retrain", "npo", "relearned"),
    lines=("behaviour", "tuned_lens", "membership_inference"),
)

# one local Ray cluster at a time: under pytest-xdist (scripts/test.sh) both tests run in one worker
pytestmark = pytest.mark.xdist_group("ray")


def _comparable(results: dict) -> dict:
    out = json.loads(json.dumps(results))
    out["run"].pop("started"), out["run"].pop("seconds")
    for entry in out["evidence"]:
        entry.pop("seconds"), entry.pop("cached")
    for record in out["inputs"].values():
        if record and "path" in record:
            record.pop("path")  # perturbed copies live in each bench's own work folder
    return out


@pytest.mark.slow
def test_ray_tasks_give_the_serial_results(tiny_zoo, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task does (one CPU per task)
    try:
        serial = run_bench(tiny_zoo, tmp_path / "serial", CONFIG, progress=False)
    finally:
        torch.set_num_threads(threads)
    parallel = run_bench(tiny_zoo, tmp_path / "ray", CONFIG, progress=False, executor=ExecutorConfig("ray", num_cpus=2))
    for key in ("confusion", "perturbed_confusion", "lines", "lines_without_hard_negatives"):
        assert parallel[key] == serial[key], key
    audits = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial" / "audits").rglob("*.json"))
    assert len(audits) == 5
    for rel in audits:
        a = json.loads((tmp_path / "serial" / rel).read_text())
        b = json.loads((tmp_path / "ray" / rel).read_text())
        assert _comparable(a) == _comparable(b), rel


def _dies_once(markers, original, checkpoint, forget, retain, holdout, reference, out, cache, config, progress):
    """A series task whose first attempt audits two of its lines and then loses its worker
    (the process exits, as when a node is lost); the retry runs the whole audit."""
    import dataclasses
    import os

    from forensics.metaeval.series import series_job

    marker = markers / checkpoint.name
    if not marker.exists():
        marker.touch()
        partial = dataclasses.replace(config, lines=config.lines[:2])
        series_job(
            original,
            checkpoint,
            forget,
            retain,
            holdout,
            reference,
            out.parent / f".killed-{checkpoint.name}",
            cache,
            partial,
            False,
        )
        os._exit(1)
    return series_job(original, checkpoint, forget, retain, holdout, reference, out, cache, config, progress)


@pytest.mark.slow
def test_a_killed_worker_resumes_from_the_cache(tiny_zoo, tmp_path, monkeypatch):
    """Each task's worker dies after two of the audit's three lines; Ray retries the task, and the
    retry reads those two lines from the shared cache and computes only the third. The series
    equals the serial run apart from timings and the cache flags."""
    import functools
    import sys

    from ray import cloudpickle  # Ray's own copy pickles the tasks

    import forensics.metaeval.series as series_module
    from forensics.metaeval.series import SeriesConfig, run_series

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # ship _dies_once to the workers
    checkpoints = [tiny_zoo / rel for rel in json.loads((tiny_zoo / "zoo.json").read_text())["series"]["checkpoints"]]
    checkpoints = checkpoints[-2:]  # forgotten in behaviour: every line runs
    d = tiny_zoo / "data"
    data = [d / "forget.jsonl", d / "retain.jsonl", d / "holdout.jsonl"]
    config = SeriesConfig(profile="quick", lines=("behaviour", "tuned_lens", "membership_inference"), fail_on=())
    serial = run_series(
        tiny_zoo / "models" / "original", checkpoints, *data, tmp_path / "serial", config, progress=False
    )
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr(series_module, "series_job", functools.partial(_dies_once, markers))
    resumed = run_series(
        tiny_zoo / "models" / "original",
        checkpoints,
        *data,
        tmp_path / "ray",
        config,
        progress=False,
        executor=ExecutorConfig("ray", num_cpus=2, max_retries=1),
    )
    assert sorted(p.name for p in markers.iterdir()) == sorted(c.name for c in checkpoints)  # every task died once
    assert resumed["checkpoints"] == serial["checkpoints"]
    for c in checkpoints:
        results = json.loads((tmp_path / "ray" / "checkpoints" / c.name / "results.json").read_text())
        cached = {e["line"]: e["cached"] for e in results["evidence"]}
        assert cached == {"behaviour": True, "tuned_lens": True, "membership_inference": False}, c.name
        serial_results = json.loads((tmp_path / "serial" / "checkpoints" / c.name / "results.json").read_text())
        assert _comparable(results) == _comparable(serial_results), c.name
