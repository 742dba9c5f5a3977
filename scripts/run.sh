#!/usr/bin/env bash
# make run: the main job. Everything is installed by `make install` before this runs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .local/venv/bin/pghd run --patients "${1:-20}" --days "${2:-3}"
