"""What an export is made of: a patient's stored readings and findings, read back from rows.

The store writes one ``vitals`` point per channel of a reading (blood pressure: two, its
systolic and diastolic channels, at the same time with the same event id) and one
``anomalies`` point per finding (:mod:`processors.points`). :func:`readings_of` folds the
pivoted rows of ``vitals`` (one row per point: tags and fields side by side, as Flux's
``pivot`` gives them) back into readings, :func:`finding_of` reads one ``anomalies`` row.
Both are pure, so the formats (:mod:`pghd.export.fhir`, :mod:`pghd.export.omh`) and the
InfluxDB reader (:mod:`pghd.export.influx`) are tested apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pghd.catalogue import CATALOGUE, ChannelSpec, Metric
from pghd.contracts import TimePrecision, channel_key

__all__ = [
    "END_FIELD",
    "NEWS2_CHANNEL",
    "PRECISION_FIELD",
    "UNKNOWN_DEVICE",
    "StoredFinding",
    "StoredReading",
    "aread_readings",
    "channel_of",
    "finding_of",
    "format_time",
    "parse_time",
    "readings_of",
]

#: The ``vitals`` field holding an interval reading's end (RFC 3339, UTC).
END_FIELD = "effective_end"
#: The ``vitals`` field holding how much of the calendar a reading's time names, when its
#: sender gave less than an instant (``day``, ``morning``, ...: :class:`TimePrecision`).
PRECISION_FIELD = "effective_precision"
#: ``device`` tag of a reading whose source named no device.
UNKNOWN_DEVICE = "unknown"
#: The channel of a partial NEWS2 aggregate finding (``processors/detectors/news2_aggregate``).
NEWS2_CHANNEL = "news2"
_NEWS2_UNIT = "{score}"


def format_time(moment: datetime) -> str:
    """``moment`` as RFC 3339 in UTC (``2026-11-25T08:00:00Z``, microseconds when it has
    them); a naive ``moment`` is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    """A row's time (a datetime, or RFC 3339 text) as an aware UTC datetime; None if absent."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return parse_time(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as stored: every channel of it, in the metric's canonical unit.

    ``values`` maps the catalogue's channel names (``systolic``, ``diastolic``; a scalar
    metric's single channel is named like the metric) to their values. ``end`` is the
    interval's end for steps and sleep whose sender gave it; ``device`` is None when the
    source named none; ``precision`` is the calendar span ``time`` starts when the sender
    gave a date, a month, a year or a part of a day rather than an instant.
    """

    patient_id: str
    metric: Metric
    time: datetime
    unit: str
    values: Mapping[str, float]
    source: str
    event_id: str
    device: str | None = None
    end: datetime | None = None
    precision: TimePrecision | None = None

    @property
    def value(self) -> float:
        """The value of a scalar metric (the first channel's of a composite one)."""
        return self.values[CATALOGUE[self.metric].channels[0].name]


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """One finding (an ``anomalies`` point): a detector's verdict on a channel at a time."""

    patient_id: str
    anomaly_id: str
    time: datetime
    metric: Metric
    channel: str
    detector: str
    severity: str
    score: float
    value: float
    unit: str
    explanation: str
    episode_id: str | None = None
    phase: str | None = None


def channel_of(metric: Metric, channel: str) -> ChannelSpec | None:
    """The catalogue channel a stored channel key names (``blood_pressure.systolic`` or
    ``heart_rate``), or None (``news2``, a nightly channel of another metric)."""
    return next(
        (c for c in CATALOGUE[metric].channels if channel_key(metric, c.name) == channel), None
    )


def _precision(value: Any) -> TimePrecision | None:
    try:
        return TimePrecision(str(value)) if value else None
    except ValueError:
        return None  # a precision this version does not know: read as an instant


def _metric(value: Any) -> Metric | None:
    try:
        return Metric(str(value))
    except ValueError:
        return None


@dataclass(slots=True)
class _Pending:
    key: tuple[Any, ...]
    row: Mapping[str, Any]
    values: dict[str, float] = field(default_factory=dict)


class _Folder:
    """Folds consecutive rows of one reading (same time, source, device, metric, event id)."""

    def __init__(self) -> None:
        self.pending: _Pending | None = None

    def push(self, row: Mapping[str, Any]) -> StoredReading | None:
        """Take ``row``; return the reading it closed, if any."""
        metric = _metric(row.get("metric"))
        time = parse_time(row.get("_time"))
        raw = row.get("value")
        if metric is None or time is None or not isinstance(raw, int | float):
            return None  # not a reading this version knows: left out
        spec = channel_of(metric, str(row.get("channel", "")))
        if spec is None:
            return None
        key = (time, row.get("source"), row.get("device"), metric, row.get("event_id"))
        done = None
        if self.pending is not None and self.pending.key != key:
            done = self.flush()
        if self.pending is None:
            self.pending = _Pending(key=key, row=row)
        self.pending.values[spec.name] = float(raw)
        return done

    def flush(self) -> StoredReading | None:
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        time, source, device, metric, event_id = pending.key
        wanted = {c.name for c in CATALOGUE[metric].channels}
        if set(pending.values) != wanted:
            return None  # half a blood pressure (a channel refused by the store): no reading
        row = pending.row
        return StoredReading(
            patient_id=str(row.get("patient_id", "")),
            metric=metric,
            time=time,
            unit=str(row.get("unit") or CATALOGUE[metric].unit),
            values=pending.values,
            source=str(source or ""),
            event_id=str(event_id or ""),
            device=None if device in (None, "", UNKNOWN_DEVICE) else str(device),
            end=parse_time(row.get(END_FIELD)),
            precision=_precision(row.get(PRECISION_FIELD)),
        )


def readings_of(rows: Iterable[Mapping[str, Any]]) -> Iterator[StoredReading]:
    """Readings of pivoted ``vitals`` rows sorted by time, source, device, metric, event id.

    The channels of one reading are adjacent in that order and are folded into one
    reading; a composite reading missing a channel, and rows of unknown metrics or
    channels, are left out.
    """
    folder = _Folder()
    for row in rows:
        done = folder.push(row)
        if done is not None:
            yield done
    last = folder.flush()
    if last is not None:
        yield last


async def aread_readings(rows: AsyncIterable[Mapping[str, Any]]) -> AsyncIterator[StoredReading]:
    """:func:`readings_of` over rows that arrive asynchronously (a streamed query)."""
    folder = _Folder()
    async for row in rows:
        done = folder.push(row)
        if done is not None:
            yield done
    last = folder.flush()
    if last is not None:
        yield last


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _optional(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None


def finding_of(row: Mapping[str, Any]) -> StoredFinding | None:
    """The finding of one pivoted ``anomalies`` row; None when it is not one this version
    knows (an unknown metric, no time or no id)."""
    metric = _metric(row.get("metric"))
    time = parse_time(row.get("_time"))
    anomaly_id = row.get("anomaly_id")
    if metric is None or time is None or not isinstance(anomaly_id, str) or not anomaly_id:
        return None
    channel = str(row.get("channel") or metric.value)
    # The anomalies point has no unit: its value is in the metric's canonical unit, a NEWS2
    # aggregate's is its score.
    unit = _NEWS2_UNIT if channel == NEWS2_CHANNEL else CATALOGUE[metric].unit
    return StoredFinding(
        patient_id=str(row.get("patient_id", "")),
        anomaly_id=anomaly_id,
        time=time,
        metric=metric,
        channel=channel,
        detector=str(row.get("detector") or ""),
        severity=str(row.get("severity") or ""),
        score=_number(row.get("score")),
        value=_number(row.get("value")),
        unit=unit,
        explanation=str(row.get("explanation") or ""),
        episode_id=_optional(row.get("episode_id")),
        phase=_optional(row.get("phase")),
    )
