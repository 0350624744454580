#!/usr/bin/env bash
# Creates (or reuses) .venv with the pinned stack. Idempotent: re-runs only when
# pyproject.toml changed. torch goes in first so pip takes the local CPU wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
quiet_pip() {  # pip's own exit status counts; its noise about absent local indexes and the build
  # backend's Python warnings (setuptools' editable-install notice) are dropped
  PYTHONWARNINGS=ignore .venv/bin/pip install -q "$@" 2> >(grep -v -e "^WARNING: Location" >&2)
}
if [ ! -f "$stamp" ]; then
  rm -rf .venv
  "$PY" -m venv .venv
  quiet_pip --upgrade pip
  quiet_pip torch==2.13.0
  quiet_pip -e ".[test]"
  .venv/bin/python -c "import torch, transformer_lens, sae_lens, sklearn, matplotlib, nbclient, forensics" \
    || { echo "setup failed: the pinned stack did not install" >&2; exit 1; }
  touch "$stamp"
fi
