"""Run the Quix Streams peer (:mod:`bench.peer_quix`) in its own virtualenv; its rate."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

__all__ = ["quix_peer_rate"]

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT / ".local" / "quix-venv" / "bin" / "python"


def quix_peer_rate(bootstrap: str, topic: str, *, count: int, warmup: int) -> float:
    """Readings/s the Quix Streams app judges ``count`` readings of ``topic`` at (its
    virtualenv is made by ``scripts/quix-venv.sh`` first, if needed)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "quix-venv.sh")], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            str(VENV_PY),
            "-m",
            "bench.peer_quix",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--count",
            str(count),
            "--warmup",
            str(warmup),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=ROOT,
    )
    last = done.stdout.strip().splitlines()[-1]
    return float(json.loads(last)["per_s"])
