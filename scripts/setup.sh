#!/usr/bin/env bash
# Sets up everything geoloc needs on a Debian bookworm machine: system packages, the pgvector
# build (scripts/install-system.sh) and the Python environment in .venv with the `geoloc` command.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system.sh

PYTHON=${GEOLOC_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.geoloc-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[test,bench]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import geoloc, tensorflow, psycopg, pgvector" 
  echo "$want" > "$stamp"
fi
echo "setup: ready (.venv/bin/geoloc)" >&2
