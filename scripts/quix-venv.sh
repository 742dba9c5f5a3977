#!/usr/bin/env bash
# The benchmark's peer (bench/peer_quix.py) runs Quix Streams 3.28.1, which pins an older
# pydantic than pghd; so it gets a virtualenv of its own under .local/quix-venv, with pghd's
# judging code importable from the source tree (PYTHONPATH) and only what that code imports.
# Idempotent: does nothing once the stamp matches this script.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.local/quix-venv"
stamp="$venv/.pghd-installed"
sum="$(sha256sum "$0" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
  exit 0
fi
echo "==> installing the benchmark peer (Quix Streams 3.28.1) into .local/quix-venv"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "quixstreams==3.28.1" "influxdb-client==$(
  "$here/.local/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("influxdb-client"))'
)"
echo "$sum" > "$stamp"
