"""Reading one patient's stored points back from InfluxDB, a window of time at a time.

Only ``/api/v2/query`` with Flux is used, which InfluxDB 2.x serves and 1.8 serves too
(with ``flux-enabled``; bucket ``<db>/<rp>``, token ``user:password``, org ignored), as
everywhere else in pghd. Bind parameters are a 2.x feature, so values are written into
the query as escaped string literals.

:meth:`InfluxExportReader.extent` finds the first and last time the patient has a point
(``vitals`` or ``anomalies``); :meth:`~InfluxExportReader.readings` and
:meth:`~InfluxExportReader.findings` then walk from the one to the other in windows, each
queried on its own and streamed record by record (``query_stream``), so neither this
process nor InfluxDB holds more than one window of a long history. A window's span adapts
to the density of the data: it grows when a window held few points and shrinks when it
held many, aiming at ``target_rows`` per query. Windows are ``[start, stop)``: a point is
read exactly once.

:class:`FluxReader` (the client, a query's records streamed, every failure an
:class:`ExportStoreError`) and the Flux literals (:func:`flux_string`) serve the care-team
API's FHIR search too (:mod:`pghd.fhir_read.influx`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from pghd.export.records import (
    StoredFinding,
    StoredReading,
    aread_readings,
    finding_of,
    format_time,
)

__all__ = [
    "EPOCH",
    "READING_ORDER",
    "ExportStore",
    "ExportStoreError",
    "Extent",
    "FluxReader",
    "InfluxExportReader",
    "describe_error",
    "flux_columns",
    "flux_string",
    "next_span",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
READING_ORDER = ("_time", "source", "device", "metric", "event_id", "channel")
_FINDING_ORDER = ("_time", "anomaly_id")
MIN_SPAN = timedelta(minutes=10)
MAX_SPAN = timedelta(days=366)


class ExportStoreError(RuntimeError):
    """InfluxDB did not answer a query of the export (down, refused, timed out)."""


@dataclass(frozen=True, slots=True)
class Extent:
    """The first and the last time a patient has a stored point."""

    first: datetime
    last: datetime


class ExportStore(Protocol):
    """Where an export reads a patient's points (:class:`InfluxExportReader`, or a fake)."""

    async def extent(self, patient_id: str, *, now: datetime | None = None) -> Extent | None: ...
    def readings(self, patient_id: str, extent: Extent) -> AsyncIterator[StoredReading]: ...
    def findings(self, patient_id: str, extent: Extent) -> AsyncIterator[StoredFinding]: ...
    async def close(self) -> None: ...


def next_span(span: timedelta, rows: int, *, target_rows: int) -> timedelta:
    """The span of the next window after one of ``span`` held ``rows`` points: scaled
    towards ``target_rows`` by at most 4x either way, within [10 min, 366 days]."""
    factor = 4.0 if rows == 0 else min(4.0, max(0.25, target_rows / rows))
    return min(MAX_SPAN, max(MIN_SPAN, span * factor))


def flux_string(value: str) -> str:
    """``value`` as a Flux string literal (quotes, backslashes and ``${`` escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def flux_columns(names: tuple[str, ...]) -> str:
    """``names`` as a Flux array of string literals."""
    return "[" + ", ".join(flux_string(n) for n in names) + "]"


class FluxReader:
    """Runs Flux queries on one InfluxDB (``/api/v2/query``) and streams their records;
    every failure is an :class:`ExportStoreError`. The HTTP client opens on the first
    query; :meth:`close` closes it."""

    def __init__(self, *, url: str, token: str, org: str, timeout_s: float = 30.0) -> None:
        self._url = url
        self._token = token
        self._org = org
        self._timeout_ms = int(timeout_s * 1000)
        self._client: InfluxDBClientAsync | None = None

    def _api(self) -> Any:
        if self._client is None:
            self._client = InfluxDBClientAsync(
                url=self._url, token=self._token, org=self._org, timeout=self._timeout_ms
            )
        return self._client.query_api()

    async def close(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()  # type: ignore[no-untyped-call]

    async def _records(self, flux: str) -> AsyncIterator[Mapping[str, Any]]:
        try:
            stream = await self._api().query_stream(flux, org=self._org)
            async for record in stream:
                yield record.values
        except Exception as exc:
            raise ExportStoreError(f"InfluxDB query failed: {describe_error(exc)}") from exc


class InfluxExportReader(FluxReader):
    """Reads a patient's ``vitals`` and ``anomalies`` points from one bucket."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        bucket: str,
        timeout_s: float = 30.0,
        target_rows: int = 5000,
        first_span: timedelta = timedelta(days=1),
    ) -> None:
        super().__init__(url=url, token=token, org=org, timeout_s=timeout_s)
        self._bucket = bucket
        self._target_rows = target_rows
        self._first_span = first_span

    def _patient(self, measurements: tuple[str, ...], patient_id: str) -> str:
        which = " or ".join(f"r._measurement == {flux_string(m)}" for m in measurements)
        return f"({which}) and r.patient_id == {flux_string(patient_id)}"

    async def extent(self, patient_id: str, *, now: datetime | None = None) -> Extent | None:
        """When the patient's stored points begin and end; None when there is none."""
        stop = (now or datetime.now(UTC)) + timedelta(days=1)  # ingest takes 10 min ahead
        times: dict[str, datetime] = {}
        for selector in ("first", "last"):
            flux = (
                f"from(bucket: {flux_string(self._bucket)})"
                f" |> range(start: {format_time(EPOCH)}, stop: {format_time(stop)})"
                f" |> filter(fn: (r) => {self._patient(('vitals', 'anomalies'), patient_id)})"
                ' |> filter(fn: (r) => r._field == "value")'
                f" |> {selector}()"
                ' |> keep(columns: ["_time"])'
            )
            found = [
                moment
                async for values in self._records(flux)
                if isinstance(moment := values.get("_time"), datetime)
            ]
            if not found:
                return None
            times[selector] = min(found) if selector == "first" else max(found)
        return Extent(first=times["first"].astimezone(UTC), last=times["last"].astimezone(UTC))

    async def _windows(
        self, measurement: str, patient_id: str, extent: Extent, order: tuple[str, ...]
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Pivoted rows of ``measurement`` for the patient, window by window, in ``order``."""
        stop = extent.last + timedelta(microseconds=1)
        start, span = extent.first, self._first_span
        while start < stop:
            end = min(start + span, stop)
            flux = (
                f"from(bucket: {flux_string(self._bucket)})"
                f" |> range(start: {format_time(start)}, stop: {format_time(end)})"
                # InfluxDB 1.8's range also gives the points stamped at its stop, which are
                # the next window's
                f" |> filter(fn: (r) => r._time < {format_time(end)})"
                f" |> filter(fn: (r) => {self._patient((measurement,), patient_id)})"
                ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                f" |> group() |> sort(columns: {flux_columns(order)})"
            )
            rows = 0
            async for values in self._records(flux):
                rows += 1
                yield values
            start, span = end, next_span(span, rows, target_rows=self._target_rows)

    def readings(self, patient_id: str, extent: Extent) -> AsyncIterator[StoredReading]:
        """The patient's readings within ``extent``, oldest first."""
        return aread_readings(self._windows("vitals", patient_id, extent, READING_ORDER))

    def findings(self, patient_id: str, extent: Extent) -> AsyncIterator[StoredFinding]:
        """The patient's findings within ``extent``, oldest first."""
        return self._findings(self._windows("anomalies", patient_id, extent, _FINDING_ORDER))

    @staticmethod
    async def _findings(
        rows: AsyncIterator[Mapping[str, Any]],
    ) -> AsyncIterator[StoredFinding]:
        async for values in rows:
            finding = finding_of(values)
            if finding is not None:
                yield finding


def describe_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None) or getattr(exc, "reason", None) or str(exc)
    text = " ".join(str(message).split())[:300] or type(exc).__name__
    return f"HTTP {status}: {text}" if isinstance(status, int) and status else text
