#!/usr/bin/env bash
# Set up the virtualenv (if needed) and run the linters and the whole test suite.
# Usage: scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[all]'
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== ruff check"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest (slow tests included)"; .venv/bin/python -m pytest -m "slow or not slow" "$@"
