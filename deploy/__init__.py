"""Deployment assets: topic spec, compose support files, local (no Docker) runners."""

from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
TOPIC_SPEC = DEPLOY_DIR / "topics.json"
