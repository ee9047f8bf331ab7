#!/usr/bin/env bash
# One command for a new user: set up the machine (scripts/setup.sh), then run `geoloc demo`, which
# starts the embedded database and runs the whole Stockholm pipeline. Arguments go to `geoloc demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/geoloc demo "$@"
