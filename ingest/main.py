"""Run the ingest service: ``python -m ingest.main`` (host and port from the settings)."""

from __future__ import annotations

import logging
import time

import uvicorn

from ingest.app import create_app
from ingest.settings import IngestSettings
from pghd.log_privacy import access_log_config

__all__ = ["main"]


class RepeatFilter(logging.Filter):
    """Let one record per (logger, level, message template) through every ``interval_s``.

    While a broker is unreachable aiokafka logs the same connection error thousands of times
    a second; the gateway reports the outage in its own words, so repeats add nothing.
    """

    def __init__(self, *, prefix: str = "aiokafka", interval_s: float = 5.0) -> None:
        super().__init__()
        self._prefix = prefix
        self._interval_s = interval_s
        self._last: dict[tuple[str, int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self._interval_s:
            return False
        self._last[key] = now
        return True


def main() -> None:
    """Serve the ingest app with uvicorn until interrupted."""
    settings = IngestSettings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
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
