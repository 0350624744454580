"""Helpers the sub-commands share: device and chat-template arguments, the command line as
typed, and the printed summary of an audit."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

#: Where ``forensics demo`` keeps its zoo and its reports by default.
DEFAULT_ZOO = Path("zoo")
DEFAULT_DEMO_OUT = Path("demo_reports")


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str):  # noqa: D401 - argparse API
        """Print ``error: <message>`` and exit with status 2 (argparse's usage errors)."""
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def chat_args(parser: argparse.ArgumentParser) -> None:
    """``--chat-template``."""
    parser.add_argument(
        "--chat-template",
        action="store_true",
        help="render every fact prompt as a user turn in the original checkpoint's own chat "
        "template (for chat-tuned models; recorded in the report)",
    )


def device_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))


def placement_args(parser: argparse.ArgumentParser) -> None:
    """``--unlearned-device`` and ``--n-devices`` (where the models go when one device is not enough)."""
    parser.add_argument(
        "--unlearned-device", help="put the unlearned model on this device (e.g. cuda:1; default: --device)"
    )
    parser.add_argument(
        "--n-devices", type=int, default=1, help="spread each model over this many GPUs (TransformerLens n_devices)"
    )


def command_line() -> str:
    """The command as typed (quoted for a shell), recorded in the report."""
    return " ".join(shlex.quote(a) for a in ["forensics", *sys.argv[1:]])


def print_result(result, indent: str = "") -> None:
    """Print an audit's verdict, each line's vote and time, and the report files."""
    v = result.verdict
    print(f"{indent}verdict: {v.label} (confidence {v.confidence})")
    print(f"{indent}  {v.reason}")
    for e in result.evidence:
        seconds = result.timings.get(e.line, {}).get("seconds", 0.0)
        vote = e.vote or ("not run" if e.status == "not_run" else e.status if e.status != "ok" else "no vote")
        cached = " (cached)" if result.timings.get(e.line, {}).get("cached") else ""
        print(f"{indent}  {e.line:<22} {vote:<14} {seconds:7.1f} s{cached}")
    if result.out is not None:
        for name in ("report.html", "report.pdf", "results.json"):
            if (result.out / name).exists():
                print(f"{indent}  {result.out / name}")


def executor_args(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--address``, ``--num-cpus`` (:mod:`forensics.metaeval.executor`)."""
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="run the audits here, one after the other, or as Ray tasks",
    )
    parser.add_argument(
        "--address", help="Ray cluster to join (e.g. auto or ray://HOST:10001; default: start a local one)"
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray cluster (default: every core)")


def executor_config(args):
    """The :class:`forensics.metaeval.executor.ExecutorConfig` of the parsed arguments. With
    --device cuda a task gets the GPUs its audit uses: ``--n-devices`` per model, twice that
    when ``--unlearned-device`` differs from ``--device`` (Ray numbers a task's GPUs from 0)."""
    from forensics.metaeval.executor import ExecutorConfig

    device = str(getattr(args, "device", "cpu"))
    unlearned = getattr(args, "unlearned_device", None) or device
    per_model = getattr(args, "n_devices", 1)
    gpus = float(per_model * (1 if unlearned == device else 2)) if device.startswith("cuda") else 0.0
    return ExecutorConfig(executor=args.executor, address=args.address, num_cpus=args.num_cpus, gpus_per_task=gpus)
