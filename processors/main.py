"""``python -m processors.main``: run one processors worker until SIGTERM or SIGINT.

The equivalent of ``faust -A processors.app worker``; the web server (health, stats) listens
on ``PGHD_PROCESSORS_WEB_HOST:PGHD_PROCESSORS_WEB_PORT``. On a signal the worker stops
taking messages, finishes the batch in hand (so its output is durable before its offsets
commit), commits and exits with status 0.
"""

from __future__ import annotations

import logging

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main() -> None:
    """Start a worker for :data:`processors.app.app` and block until it stops."""
    import faust

    from deploy.local.topics import ensure_changelog_topics
    from processors.app import app, settings

    ensure_changelog_topics(
        app, bootstrap=settings.kafka_bootstrap, replication_factor=settings.replication_factor
    )
    worker = faust.Worker(app, loglevel=settings.log_level.upper())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
