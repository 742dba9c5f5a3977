"""Run the care-team API: ``python -m alerts.api.main`` (host and port from the settings)."""

from __future__ import annotations

import logging

import uvicorn

from alerts.api.app import create_app
from alerts.api.settings import CareApiSettings
from pghd.log_privacy import access_log_config

__all__ = ["main"]


def main() -> None:
    """Serve the care-team API with uvicorn until interrupted."""
    settings = CareApiSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=access_log_config(),
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
