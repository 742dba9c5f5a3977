"""Reading one patient's points for their summary and charts from InfluxDB.

As everywhere in pghd, only ``/api/v2/query`` with Flux is used (InfluxDB 2.x, and 1.8 with
``flux-enabled``: bucket ``<db>/<rp>``, token ``user:password``). Bind parameters are a 2.x
feature, so the patient id and every other value are written into the query as escaped
string literals (:mod:`pghd.export.influx`), and every query filters on the one patient id
it was given: nothing of anyone else can be read through it.

Each call is bounded: the client's HTTP timeout and, around all the queries of a summary or
chart, ``timeout_s``; InfluxDB down, refusing or slow is :class:`PatientViewUnavailable`.
A summary's or chart's queries run together in a task group: the first to fail cancels the
others, which would otherwise hold their connections until their own timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol, TypeVar

from pghd.export.influx import ExportStoreError, FluxReader, flux_string
from pghd.export.records import format_time
from pghd.patient_view.chart import ChartPlan
from pghd.patient_view.models import (
    DailyTotal,
    FindingPoint,
    StoredBaseline,
    StoredLatest,
    StoredNight,
    SummaryInputs,
)

__all__ = [
    "LOOKBACK",
    "NIGHTS_LOOKBACK",
    "ChartInputs",
    "InfluxPatientView",
    "PatientViewStore",
    "PatientViewUnavailable",
]

LOOKBACK = timedelta(days=90)
"""How far back a latest value, a baseline or an alert's findings are looked for (the raw
bucket's retention)."""
NIGHTS_LOOKBACK = timedelta(days=60)
AHEAD = timedelta(days=1)  # ingest takes readings up to 10 minutes ahead of its clock
_BASELINE_FIELDS = ("mean", "spread", "low", "high", "n")

T = TypeVar("T")

Series = dict[str, list[tuple[datetime, float]]]
ChartInputs = tuple[Series, list[StoredBaseline]]
"""A chart's points by channel, and the channels' baselines up to the chart's end."""


class PatientViewUnavailable(RuntimeError):
    """InfluxDB did not answer in time (down, refused, slow)."""


class PatientViewStore(Protocol):
    """Where the patient's view reads points (:class:`InfluxPatientView`, or a fake)."""

    async def summary_inputs(
        self, patient_id: str, *, now: datetime, findings: bool
    ) -> SummaryInputs: ...

    async def chart_inputs(self, patient_id: str, chosen: ChartPlan) -> ChartInputs: ...

    async def close(self) -> None: ...


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _when(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


class InfluxPatientView(FluxReader):
    """Reads one patient's points from one bucket (the client and streaming are
    :class:`~pghd.export.influx.FluxReader`'s)."""

    def __init__(
        self, *, url: str, token: str, org: str, bucket: str, timeout_s: float = 30.0
    ) -> None:
        super().__init__(url=url, token=token, org=org, timeout_s=timeout_s)
        self._bucket = bucket
        self._timeout_s = timeout_s

    async def _bounded(self, work: Awaitable[T]) -> T:
        """``work`` (queries in a task group) within ``timeout_s``; the first query's
        :class:`PatientViewUnavailable` out of the group as itself."""
        try:
            return await asyncio.wait_for(work, self._timeout_s)
        except PatientViewUnavailable:
            raise
        except TimeoutError as exc:
            raise PatientViewUnavailable(
                f"InfluxDB did not answer within {self._timeout_s:g} s"
            ) from exc
        except ExceptionGroup as group:
            unavailable = group.subgroup(PatientViewUnavailable)
            if unavailable is None:
                raise
            first = unavailable.exceptions[0]
            while isinstance(first, ExceptionGroup):
                first = first.exceptions[0]
            raise first from first.__cause__

    async def _rows(self, flux: str) -> list[Mapping[str, Any]]:
        try:
            return [values async for values in self._records(flux)]
        except ExportStoreError as exc:
            raise PatientViewUnavailable(str(exc)) from exc.__cause__

    def _from(self, start: datetime, stop: datetime, measurement: str, patient_id: str) -> str:
        return (
            f"from(bucket: {flux_string(self._bucket)})"
            f" |> range(start: {format_time(start)}, stop: {format_time(stop)})"
            f" |> filter(fn: (r) => r._measurement == {flux_string(measurement)}"
            f" and r.patient_id == {flux_string(patient_id)})"
        )

    # --- the summary ------------------------------------------------------------------------

    async def summary_inputs(
        self, patient_id: str, *, now: datetime, findings: bool
    ) -> SummaryInputs:
        """Everything :func:`pghd.patient_view.summary.summarize` needs about the patient;
        their findings (``anomalies`` points) only when ``findings`` (they have an alert
        open), over :data:`LOOKBACK`: a finding is stored at the time of its reading, which
        may be long before its alert opened."""
        return await self._bounded(self._summary_inputs(patient_id, now=now, findings=findings))

    async def _summary_inputs(
        self, patient_id: str, *, now: datetime, findings: bool
    ) -> SummaryInputs:
        async with asyncio.TaskGroup() as group:
            latest = group.create_task(self._latest(patient_id, now))
            baselines = group.create_task(
                self._baselines(patient_id, start=now - LOOKBACK, stop=now + AHEAD)
            )
            daily = group.create_task(self._daily(patient_id, now))
            nights = group.create_task(self._nights(patient_id, now))
            found = group.create_task(self._findings(patient_id, now)) if findings else None
        return SummaryInputs(
            latest=latest.result(),
            baselines=baselines.result(),
            daily=daily.result(),
            nights=nights.result(),
            findings=found.result() if found is not None else [],
        )

    async def _latest(self, patient_id: str, now: datetime) -> list[StoredLatest]:
        flux = (
            self._from(now - LOOKBACK, now + AHEAD, "vitals", patient_id)
            + ' |> filter(fn: (r) => r._field == "value") |> last()'
            ' |> keep(columns: ["_time", "_value", "metric", "channel", "unit"])'
        )
        found = []
        for row in await self._rows(flux):
            value, at = _float(row.get("_value")), _when(row.get("_time"))
            if value is None or at is None:
                continue
            metric, channel = str(row.get("metric", "")), str(row.get("channel", ""))
            found.append(StoredLatest(metric, channel, str(row.get("unit", "")), value, at))
        return found

    async def _baselines(
        self,
        patient_id: str,
        *,
        start: datetime,
        stop: datetime,
        channels: tuple[str, ...] = (),
    ) -> list[StoredBaseline]:
        fields = " or ".join(f"r._field == {flux_string(f)}" for f in _BASELINE_FIELDS)
        only = " or ".join(f"r.channel == {flux_string(c)}" for c in channels)
        flux = (
            self._from(start, stop, "baselines", patient_id)
            + f" |> filter(fn: (r) => {fields})"
            + (f" |> filter(fn: (r) => {only})" if only else "")
            + " |> last()"
            ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        )
        found = []
        for row in await self._rows(flux):
            numbers = [_float(row.get(f)) for f in _BASELINE_FIELDS]
            at = _when(row.get("_time"))
            if at is None or any(n is None for n in numbers):
                continue
            mean, spread, low, high, n = (float(x or 0.0) for x in numbers)
            found.append(
                StoredBaseline(
                    channel=str(row.get("channel", "")),
                    context=str(row.get("context", "")),
                    mean=mean,
                    spread=spread,
                    low=low,
                    high=high,
                    n=int(n),
                    at=at,
                )
            )
        return found

    async def _daily(self, patient_id: str, now: datetime) -> list[DailyTotal]:
        first = datetime.combine(now.astimezone(UTC).date() - timedelta(days=29), time(0), UTC)
        flux = (
            "data = "
            + self._from(first, now + AHEAD, "vitals", patient_id)
            + ' |> filter(fn: (r) => r._field == "value")'
            ' |> group(columns: ["metric", "channel"])\n'
            "sums = data"
            ' |> aggregateWindow(every: 1d, fn: sum, createEmpty: false, timeSrc: "_start")'
            ' |> set(key: "agg", value: "sum")\n'
            "counts = data"
            ' |> aggregateWindow(every: 1d, fn: count, createEmpty: false, timeSrc: "_start")'
            ' |> toFloat() |> set(key: "agg", value: "count")\n'
            "union(tables: [sums, counts])"
            ' |> keep(columns: ["_time", "_value", "metric", "channel", "agg"])'
        )
        days: dict[tuple[str, str, datetime], dict[str, float]] = {}
        for row in await self._rows(flux):
            value, at = _float(row.get("_value")), _when(row.get("_time"))
            if value is None or at is None:
                continue
            key = (str(row.get("metric", "")), str(row.get("channel", "")), at)
            days.setdefault(key, {})[str(row.get("agg", ""))] = value
        return [
            DailyTotal(metric, channel, at.date(), got.get("sum", 0.0), int(got.get("count", 0)))
            for (metric, channel, at), got in days.items()
        ]

    async def _nights(self, patient_id: str, now: datetime) -> list[StoredNight]:
        flux = (
            self._from(now - NIGHTS_LOOKBACK, now + AHEAD, "resting_heart_rate", patient_id)
            + ' |> filter(fn: (r) => r.kind == "nightly" and r._field == "value")'
            ' |> keep(columns: ["_time", "_value"])'
        )
        found = []
        for row in await self._rows(flux):
            value, at = _float(row.get("_value")), _when(row.get("_time"))
            if value is not None and at is not None:
                found.append(StoredNight(at=at, value=value))
        return found

    async def _findings(self, patient_id: str, now: datetime) -> list[FindingPoint]:
        flux = (
            self._from(now - LOOKBACK, now + AHEAD, "anomalies", patient_id)
            + ' |> filter(fn: (r) => r._field == "value" or r._field == "anomaly_id")'
            ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
            ' |> keep(columns: ["_time", "metric", "channel", "value", "anomaly_id", "phase"])'
        )
        found = []
        for row in await self._rows(flux):
            value, at = _float(row.get("value")), _when(row.get("_time"))
            if value is None or at is None:
                continue
            phase = row.get("phase")
            found.append(
                FindingPoint(
                    anomaly_id=str(row.get("anomaly_id", "")),
                    metric=str(row.get("metric", "")),
                    channel=str(row.get("channel", "")),
                    value=value,
                    at=at,
                    phase=str(phase) if phase else None,
                )
            )
        return found

    # --- a chart ----------------------------------------------------------------------------

    async def chart_inputs(self, patient_id: str, chosen: ChartPlan) -> ChartInputs:
        """The chart's points by channel, and the metric's baselines up to its end."""
        return await self._bounded(self._chart_inputs(patient_id, chosen))

    async def _chart_inputs(self, patient_id: str, chosen: ChartPlan) -> ChartInputs:
        async with asyncio.TaskGroup() as group:
            series = group.create_task(self._series(patient_id, chosen))
            baselines = group.create_task(
                self._baselines(
                    patient_id,
                    start=chosen.end - LOOKBACK,
                    stop=chosen.end,
                    channels=tuple(chosen.channels),
                )
            )
        return series.result(), baselines.result()

    async def _series(self, patient_id: str, chosen: ChartPlan) -> Series:
        flux = (
            self._from(chosen.start, chosen.end, "vitals", patient_id)
            + f" |> filter(fn: (r) => r.metric == {flux_string(chosen.metric.value)}"
            ' and r._field == "value")'
            ' |> group(columns: ["channel"])'
        )
        if chosen.every is None:
            flux += f' |> sort(columns: ["_time"]) |> limit(n: {chosen.limit + 1})'
        else:
            seconds = int(chosen.every.total_seconds())
            flux += (
                f" |> aggregateWindow(every: {seconds}s, fn: {chosen.aggregate},"
                ' createEmpty: false, timeSrc: "_start")'
            )
        flux += ' |> keep(columns: ["_time", "_value", "channel"])'
        found: Series = {}
        for row in await self._rows(flux):
            value, at = _float(row.get("_value")), _when(row.get("_time"))
            if value is not None and at is not None:
                found.setdefault(str(row.get("channel", "")), []).append((at, value))
        return found
