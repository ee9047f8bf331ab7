#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the test suite against a real PostgreSQL +
# PostGIS + pgvector cluster that the tests start themselves. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
