#!/usr/bin/env bash
# The test command: sets up .venv if needed, then lint (ruff), format check, type check
# (pyright, basic) and the whole test suite, one pytest-xdist worker per usable CPU (at most 8;
# tests/conftest.py gives each one torch thread). Arguments go to pytest (-m "not e2e": the fast
# tier; -n 0: one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check --quiet . || { echo "ruff check failed (see above)" >&2; exit 1; }
.venv/bin/ruff format --check --quiet . || { echo "ruff format: the files above need .venv/bin/ruff format" >&2; exit 1; }
log=$(mktemp)
if ! .venv/bin/pyright >"$log" 2>&1; then
  cat "$log" >&2
  echo "pyright failed" >&2
  exit 1
fi
echo "ruff, ruff format and pyright: clean ($(tail -n 1 "$log"))"
rm -f "$log"
workers=$(.venv/bin/python -c "import os; n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(); print(max(1, min(8, n or 1)))")
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadgroup "$@"
