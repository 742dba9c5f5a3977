"""``python -m alerts.main``: run one alerts worker until SIGTERM or SIGINT.

The equivalent of ``faust -A alerts.app worker``; the web server (health, stats) listens on
``PGHD_ALERTS_WEB_HOST:PGHD_ALERTS_WEB_PORT`` (127.0.0.1:6067 by default).
"""

from __future__ import annotations

import logging

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main() -> None:
    """Start a worker for :data:`alerts.app.app` and block until it stops."""
    import faust

    from alerts.app import app, settings
    from alerts.feedback.worker import topic_specs
    from deploy.local.topics import apply_topics, ensure_changelog_topics

    ensure_changelog_topics(
        app, bootstrap=settings.kafka_bootstrap, replication_factor=settings.replication_factor
    )
    apply_topics(  # the feedback events topic, under the app's prefix like its changelogs
        topic_specs(settings),
        bootstrap=settings.kafka_bootstrap,
        replication_factor=settings.replication_factor,
    )
    worker = faust.Worker(app, loglevel=settings.log_level.upper())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
