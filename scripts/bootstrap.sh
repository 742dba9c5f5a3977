#!/usr/bin/env bash
# Create the project's virtualenv under .local/venv and install pghd with its
# dev tools. Idempotent: does nothing when pyproject.toml has not changed.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.local/venv"
stamp="$venv/.pghd-installed"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "pghd needs Python 3.11 (found: $("$py" --version 2>&1)). Install python3.11 and re-run." >&2
  exit 1
fi
sum="$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
  exit 0
fi
echo "==> installing Python dependencies into .local/venv"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e "$here[dev]"
echo "$sum" > "$stamp"
