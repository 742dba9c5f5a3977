"""Run the care-team API: ``python -m alerts.api.main`` (host and port from the settings)."""

from __future__ import annotations

import logging

from alerts.api.app import create_app
from alerts.api.settings import CareApiSettings
from pghd.service.serve import serve

__all__ = ["main"]


def main() -> None:
    """Serve the care-team API with uvicorn until interrupted (aiokafka: errors only)."""
    settings = CareApiSettings()
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        aiokafka_level=logging.ERROR,
    )


if __name__ == "__main__":
    main()
