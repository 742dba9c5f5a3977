"""Durable, batched writes of judged points to InfluxDB.

:meth:`InfluxSink.write` returns only once InfluxDB accepted every point, retrying with
capped exponential backoff for as long as it takes: the agent acks a batch (and so lets
its offsets commit) only after this returns, so a write is never skipped. Re-writing the
same points is harmless: InfluxDB keeps one value per series, field and timestamp.

Uses only ``/api/v2/write``, which InfluxDB 2.x and 1.8 (bucket ``db/rp``, token
``user:password``) both serve.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from processors.judge import InfluxPoint

__all__ = ["MAX_POINTS_PER_REQUEST", "InfluxSink", "to_point"]

logger = logging.getLogger(__name__)

MAX_POINTS_PER_REQUEST = 5000


def to_point(point: InfluxPoint) -> Point:
    """The influxdb-client ``Point`` of ``point`` (nanosecond precision)."""
    out: Point = Point(point.measurement)  # type: ignore[no-untyped-call]
    out.time(point.time, WritePrecision.NS)  # type: ignore[no-untyped-call]
    for key, tag in point.tags.items():
        out.tag(key, tag)  # type: ignore[no-untyped-call]
    for key, value in point.fields.items():
        out.field(key, value)  # type: ignore[no-untyped-call]
    return out


class InfluxSink:
    """Writes points to one bucket; the HTTP client is created on first use, in the loop."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        bucket: str,
        timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._url = url
        self._token = token
        self._org = org
        self._bucket = bucket
        self._timeout_ms = int(timeout_s * 1000)
        self._max_backoff_s = max_backoff_s
        self._client: InfluxDBClientAsync | None = None

    def _get_client(self) -> InfluxDBClientAsync:
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self._url, token=self._token, org=self._org, timeout=self._timeout_ms
            )
        return self._client

    async def write_once(self, points: Sequence[InfluxPoint]) -> None:
        """Write ``points`` in one or more requests; raises on the first failure."""
        api = self._get_client().write_api()
        for start in range(0, len(points), MAX_POINTS_PER_REQUEST):
            chunk = [to_point(p) for p in points[start : start + MAX_POINTS_PER_REQUEST]]
            await api.write(bucket=self._bucket, org=self._org, record=chunk)

    async def write(
        self,
        points: Sequence[InfluxPoint],
        *,
        sleep: Callable[[float], object] | None = None,
    ) -> int:
        """Write ``points``, retrying until InfluxDB accepts them; returns the attempts made.

        ``sleep`` replaces :func:`asyncio.sleep` between attempts (tests).
        """
        if not points:
            return 0
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.write_once(points)
            except Exception as exc:
                delay = min(self._max_backoff_s, 0.2 * 2 ** min(attempt, 10))
                delay *= random.uniform(0.8, 1.2)
                level = logging.WARNING if attempt < 5 else logging.ERROR
                logger.log(
                    level,
                    "InfluxDB write of %d points failed (attempt %d, retry in %.1fs): %s",
                    len(points),
                    attempt,
                    delay,
                    _describe(exc),
                )
                pause = (sleep or asyncio.sleep)(delay)
                if asyncio.iscoroutine(pause):
                    await pause
                continue
            if attempt > 1:
                logger.info("InfluxDB write succeeded after %d attempts", attempt)
            return attempt

    async def close(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()  # type: ignore[no-untyped-call]


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"
