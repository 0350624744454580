"""Where the audits of a bench or a series run: one after the other in this process (``local``,
the default), or as Ray tasks (``ray``), on a local cluster started here or on an existing one.

Each job is a function of its arguments (an audit of one checkpoint with one seed): it reads the
checkpoints and data, writes only its own output folder (atomically) and the cache folder it is
given, whose writes are atomic too (activations, SAEs, line results). So jobs need no shared
memory: tasks of one original share its activations, SAE and line results through that cache
folder, and a task whose worker dies is retried (``max_retries``) and resumes from it. Results
come back in the order of the jobs, whatever order the tasks finish in.

A Ray task needs the package importable on every node (install it there, with the same
versions); the data and checkpoints must be at the same paths (a shared file system).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from forensics.core.errors import ForensicsInputError

EXECUTORS = ("local", "ray")


@dataclass
class ExecutorConfig:
    """How jobs run."""

    #: "local" (in this process, in order) or "ray" (one Ray task per job).
    executor: str = "local"
    #: Ray cluster to join ("auto", "ray://host:10001", ...); None: start a local one.
    address: str | None = None
    #: CPUs of a local Ray cluster (None: Ray's default, every core).
    num_cpus: int | None = None
    #: CPUs per task (each task's torch uses this many threads).
    cpus_per_task: int = 1
    #: GPUs per task (set it with --device cuda).
    gpus_per_task: float = 0.0
    #: Times Ray retries a task whose worker died.
    max_retries: int = 2


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple], config: ExecutorConfig | None = None) -> list[Any]:
    """``[fn(*job) for job in jobs]``, locally or as Ray tasks (see the module docstring).
    ``fn`` must be a module-level function (Ray ships it by reference). Raises
    :class:`ForensicsInputError` for an unknown executor or when Ray is not installed."""
    config = config or ExecutorConfig()
    if config.executor not in EXECUTORS:
        raise ForensicsInputError(f"unknown executor {config.executor!r}; choose local or ray")
    if config.executor == "local":
        return [fn(*job) for job in jobs]
    try:
        import ray
    except ImportError:
        raise ForensicsInputError("--executor ray needs the ray package (pip install 'ray>=2.40')") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never report usage
    started_here = not ray.is_initialized()
    if started_here:
        if config.address:
            ray.init(address=config.address, log_to_driver=True)
        else:
            ray.init(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=True)
    try:
        remote = ray.remote(
            num_cpus=config.cpus_per_task, num_gpus=config.gpus_per_task, max_retries=config.max_retries
        )(_call_with_threads)
        return ray.get([remote.remote(fn, config.cpus_per_task, *job) for job in jobs])
    finally:
        if started_here:
            ray.shutdown()


def _call_with_threads(fn: Callable[..., Any], threads: int, *job: Any) -> Any:
    """``fn(*job)`` with torch limited to the task's CPUs (a Ray task's body)."""
    import torch

    torch.set_num_threads(max(1, threads))
    return fn(*job)
