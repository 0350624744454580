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
