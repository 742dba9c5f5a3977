"""The Flux of an Observation search's queries. Pure: text in, text out.

Values are written into the query as escaped literals (:func:`~pghd.export.influx.flux_string`;
bind parameters are a 2.x feature and pghd reads 1.8 too), times as RFC 3339 literals.

- :func:`seek_query`: when the patient's next reading (of the metrics) is, from a time on:
  ``first()`` per series, which InfluxDB 2.x pushes down to storage (one point per series
  read, not the range), so nothing but pushable filters come before it;
- :func:`window_query`: the pivoted rows of a window ``[start, stop)``, sorted in the
  search's order, after a reading (the cursor) when given, at most ``limit`` of them;
- :func:`findings_query`: the ``anomalies`` rows of a page's time span.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pghd.catalogue import Metric
from pghd.export.influx import READING_ORDER, flux_columns, flux_string
from pghd.export.records import format_time
from pghd.fhir_read.cursor import ReadingKey

__all__ = ["after_predicate", "findings_query", "seek_query", "series_predicate", "window_query"]

_KEY_COLUMNS = ("source", "device", "metric", "event_id")


def series_predicate(
    measurement: str, patient_id: str, metrics: Iterable[Metric] | None = None
) -> str:
    """``r`` is a point of ``measurement`` of the patient (and of one of ``metrics``)."""
    predicate = (
        f"r._measurement == {flux_string(measurement)}"
        f" and r.patient_id == {flux_string(patient_id)}"
    )
    if metrics is not None:
        names = sorted(m.value for m in metrics)
        predicate += " and (" + " or ".join(f"r.metric == {flux_string(n)}" for n in names) + ")"
    return predicate


def after_predicate(key: ReadingKey) -> str:
    """``r`` comes after the reading ``key`` in the search's order (time, source, device,
    metric, event id)."""
    values = [key.source, key.device, key.metric, key.event_id]
    tail = ""
    for column, value in reversed(list(zip(_KEY_COLUMNS, values, strict=True))):
        literal = flux_string(value)
        greater = f"r.{column} > {literal}"
        tail = greater if not tail else f"{greater} or (r.{column} == {literal} and ({tail}))"
    moment = format_time(key.time)
    return f"r._time > {moment} or (r._time == {moment} and ({tail}))"


def _range(bucket: str, start: datetime, stop: datetime) -> str:
    """The bucket's points from ``start`` to ``stop``: InfluxDB 2.x's ``range`` excludes
    ``stop``, 1.8's Flux includes points stamped ``stop`` exactly."""
    return (
        f"from(bucket: {flux_string(bucket)})"
        f" |> range(start: {format_time(start)}, stop: {format_time(stop)})"
    )


def _from(bucket: str, start: datetime, stop: datetime) -> str:
    """The bucket's points in ``[start, stop)`` on both versions: the filter drops the
    points 1.8 gives at ``stop``, which the next window (or a ``date=lt`` bound) must not
    see. Only for queries that read the window anyway: InfluxDB does not push a filter on
    ``_time`` down to storage, nor anything after it (see :func:`seek_query`)."""
    return _range(bucket, start, stop) + f" |> filter(fn: (r) => r._time < {format_time(stop)})"


def seek_query(
    bucket: str,
    patient_id: str,
    metrics: Iterable[Metric] | None,
    start: datetime,
    stop: datetime,
) -> str:
    """The time of each series' first reading from ``start`` on, up to ``stop``.

    Only ``range``, a filter on tags and field, and ``first()``: InfluxDB 2.x pushes that
    down to storage, which reads one point per series. A filter on ``_time`` (as
    :func:`_from` adds) would stop the push-down and make each seek read every point from
    ``start`` to ``stop``. So on 1.8 a series may answer a point stamped ``stop`` exactly
    (its first, when it has none before): the caller drops times at or after ``stop``.
    """
    series = series_predicate("vitals", patient_id, metrics)
    return (
        _range(bucket, start, stop) + f' |> filter(fn: (r) => {series} and r._field == "value")'
        ' |> first() |> keep(columns: ["_time"])'
    )


def window_query(
    bucket: str,
    patient_id: str,
    metrics: Iterable[Metric] | None,
    start: datetime,
    stop: datetime,
    *,
    after: ReadingKey | None,
    limit: int,
) -> str:
    """The pivoted ``vitals`` rows of ``[start, stop)`` after ``after``, in the search's
    order (then channel), the first ``limit``."""
    flux = (
        _from(bucket, start, stop)
        + f" |> filter(fn: (r) => {series_predicate('vitals', patient_id, metrics)})"
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    if after is not None:
        flux += f" |> filter(fn: (r) => {after_predicate(after)})"
    return flux + (
        f" |> group() |> sort(columns: {flux_columns(READING_ORDER)}) |> limit(n: {int(limit)})"
    )


def findings_query(
    bucket: str,
    patient_id: str,
    metrics: Iterable[Metric] | None,
    start: datetime,
    stop: datetime,
) -> str:
    """The pivoted ``anomalies`` rows of ``[start, stop)`` (a page's span), by time."""
    return (
        _from(bucket, start, stop)
        + f" |> filter(fn: (r) => {series_predicate('anomalies', patient_id, metrics)})"
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        ' |> group() |> sort(columns: ["_time", "anomaly_id"])'
    )
