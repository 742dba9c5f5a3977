"""The InfluxDB side of the store stage: one ``/api/v2/write`` request per call.

Uses only ``/api/v2/write``, which InfluxDB 2.x and 1.8 (bucket ``db/rp``, token
``user:password``) both serve. Each request has its own timeout, so a hung server
(accepting connections but never answering) fails the attempt instead of stalling it.
"""

from __future__ import annotations

from collections.abc import Sequence

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

__all__ = ["InfluxLines"]


class InfluxLines:
    """Writes line-protocol lines to one bucket; the HTTP client is made on first use."""

    def __init__(self, *, url: str, token: str, org: str, bucket: str, timeout_s: float) -> None:
        self._url = url
        self._token = token
        self._org = org
        self._bucket = bucket
        self._timeout_ms = int(timeout_s * 1000)
        self._client: InfluxDBClientAsync | None = None

    async def write(self, lines: Sequence[str]) -> None:
        """Write ``lines`` (nanosecond timestamps) in one request; raise on any failure."""
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self._url, token=self._token, org=self._org, timeout=self._timeout_ms
            )
        api = self._client.write_api()
        await api.write(
            bucket=self._bucket,
            org=self._org,
            record=list(lines),
            write_precision=WritePrecision.NS,  # type: ignore[arg-type]
        )

    async def close(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()  # type: ignore[no-untyped-call]
