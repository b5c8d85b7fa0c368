#!/usr/bin/env bash
# Set up the virtualenv (if needed), build the bundled demo catalogue and serve it.
# Usage: scripts/demo.sh [--host H] [--port P]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[image,voice]'
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/productsearch serve --demo "$@"
