"""Run the ingest service: ``python -m ingest.main`` (host and port from the settings)."""

from __future__ import annotations

from ingest.app import create_app
from ingest.settings import IngestSettings
from pghd.service.serve import serve

__all__ = ["main"]


def main() -> None:
    """Serve the ingest app with uvicorn until interrupted."""
    settings = IngestSettings()
    serve(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )


if __name__ == "__main__":
    main()
