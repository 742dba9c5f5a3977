"""Running an HTTP service: logging set up once, then uvicorn until interrupted.

``python -m ingest.main`` and ``python -m alerts.api.main`` both come here. While a broker
is unreachable aiokafka logs the same connection error thousands of times a second; the
services report an outage in their own words, so :class:`RepeatFilter` lets one record per
message template through every few seconds.
"""

from __future__ import annotations

import logging
import time

import uvicorn
from fastapi import FastAPI

from pghd.log_privacy import access_log_config

__all__ = ["RepeatFilter", "serve"]


class RepeatFilter(logging.Filter):
    """Let one record per (logger, level, message template) through every ``interval_s``,
    for the loggers under ``prefix`` (the others all pass)."""

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


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    log_level: str,
    aiokafka_level: int = logging.NOTSET,
) -> None:
    """Serve ``app`` with uvicorn until interrupted, logging at ``log_level`` (aiokafka's own
    records from ``aiokafka_level`` on, and their repeats thinned out)."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(aiokafka_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=access_log_config(),
        proxy_headers=False,
    )
