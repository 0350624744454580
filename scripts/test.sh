#!/usr/bin/env bash
# The test command: sets up .venv if needed, then lint (ruff), format check, type check
# (pyright, basic) and the whole test suite. Arguments go to pytest (-m "not e2e": the fast tier).
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
exec .venv/bin/python -m pytest -q "$@"
