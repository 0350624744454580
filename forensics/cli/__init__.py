"""The ``forensics`` command line: one module per sub-command (``forensics/cli/<name>.py``,
each with ``add_parser(sub)`` and ``run(args)``); ``docs/usage.md`` holds the synopsis, generated
from this parser (``python scripts/gen_docs.py``) and checked against it by a test.

Bad input of any kind ends with one line, ``error: <reason>``, on stderr and exit code 2;
never a traceback, never a half-written output folder.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from forensics.cli.common import Parser
from forensics.core.errors import ForensicsInputError
from forensics.core.registry import LineRegistrationError

#: The sub-commands, in ``--help`` order; each is the module ``forensics.cli.<name>``.
COMMANDS = ("zoo", "data", "check", "memprobe", "audit", "lines", "demo", "bench", "series", "keygen", "verify")


def _module(name: str):
    return importlib.import_module(f"forensics.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The ``forensics`` argument parser with every sub-command."""
    parser = Parser(prog="forensics", description="Forensic audit of machine unlearning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        _module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 2 for bad input, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return _module(args.command).run(args)
    except (ForensicsInputError, LineRegistrationError) as err:  # bad input, or a plug-in declared wrongly
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    except OSError as err:  # a path the system refuses (a file where a folder is needed, no permission ...)
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
