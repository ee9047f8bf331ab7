#!/usr/bin/env bash
# One command for a new user: set up the machine (scripts/setup.sh), then run `geoloc demo`, which
# starts the embedded database and runs the whole Stockholm pipeline. Arguments go to `geoloc demo`,
# except --serve: afterwards keep the web page running (`geoloc serve`) until Ctrl+C.
set -euo pipefail
cd "$(dirname "$0")/.."
serve=0
args=()
for arg in "$@"; do
    if [[ "$arg" == "--serve" ]]; then serve=1; else args+=("$arg"); fi
done
bash scripts/setup.sh
.venv/bin/geoloc demo "${args[@]+"${args[@]}"}"
if [[ "$serve" == 1 ]]; then
    exec .venv/bin/geoloc serve
fi
echo
echo "Drop your own photo on a map: start the web page with"
echo "    .venv/bin/geoloc serve        # then open http://127.0.0.1:8000/ (evaluation runs at /eval)"
echo "(or run scripts/demo.sh --serve to start it right after the demo)"
