"""Helpers of the fuzz run (``test_api_fuzz.py``): near-valid readings and an independent oracle.

``NEAR_VALID`` draws readings (or batches) hugging every bound a reading must respect:
accepted and refused units, values at and just past each channel's possible range, times
at the 2000-01-01 floor, around the ten-minute future limit and at the ends of what
``datetime`` holds. Times near now are drawn as offsets from the clock, so a replayed
example draws the same data.

The expected answer for each item comes from :func:`expected_verdict`, written here from the
published rules (README "Limits on values", the catalogue's table of metrics, canonical units,
accepted units and possible ranges, copied into :data:`TABLE`) with simple code of its own,
not from ``pghd.readings.canonicalize``, the code under test. It decides only what it
understands (plain JSON types, RFC 3339 times); anything else is left undecided (``None``)
and not judged. ``tests/unit/test_fuzz_oracle.py`` keeps :data:`TABLE`'s metrics and
units in step with the catalogue's (names only: the numbers here are the published ones).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition

from pghd import topics
from pghd.contracts import Measurement
from pghd.envelope import decode_readings
from pghd.erasure import is_marker

__all__ = [
    "NEAR_VALID",
    "TABLE",
    "end_offsets",
    "expected_verdict",
    "landed",
    "near_the_future_limit",
    "problems_of",
]

FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
"""Readings before this are refused (README: clock faults, not readings)."""
AHEAD = timedelta(minutes=10)
"""Readings more than this ahead of the server's clock are refused."""
RETENTION = timedelta(days=90)
"""Readings older than the raw retention (``PGHD_RAW_RETENTION``, default 90d) are refused."""
EDGE = timedelta(seconds=5)
"""Items this close to the future limit are not judged: the server's clock read differs."""
NEAR_BOUND = 1e-9
"""A converted value this close (relatively) to a bound is not judged (float rounding)."""


@dataclass(frozen=True)
class Metric:
    """One row of the published catalogue table."""

    unit: str
    ranges: dict[str, tuple[float, float]]  # channel ("value" for scalars) -> possible range
    units: dict[str, Callable[[float], float]]  # accepted unit -> conversion to ``unit``


def _same(x: float) -> float:
    return x


def _times(factor: float) -> Callable[[float], float]:
    return lambda x: x * factor


def _fahrenheit(x: float) -> float:
    return (x - 32) * 5 / 9


def _kelvin(x: float) -> float:
    return x - 273.15


_BPM = {"/min": _same, "{beats}/min": _same, "bpm": _same, "beats/min": _same}

TABLE: dict[str, Metric] = {
    "heart_rate": Metric("/min", {"value": (20, 300)}, _BPM),
    "resting_heart_rate": Metric("/min", {"value": (20, 250)}, _BPM),
    "hrv_sdnn": Metric("ms", {"value": (1, 500)}, {"ms": _same, "s": _times(1000)}),
    "spo2": Metric("%", {"value": (50, 100)}, {"%": _same, "1": _times(100)}),
    "respiratory_rate": Metric(
        "/min",
        {"value": (2, 80)},
        {"/min": _same, "{breaths}/min": _same, "breaths/min": _same},
    ),
    "body_temperature": Metric(
        "Cel",
        {"value": (25, 45)},
        {
            "Cel": _same,
            "°C": _same,
            "degC": _same,
            "[degF]": _fahrenheit,
            "degF": _fahrenheit,
            "°F": _fahrenheit,
            "K": _kelvin,
        },
    ),
    "blood_pressure": Metric(
        "mm[Hg]",
        {"systolic": (40, 300), "diastolic": (20, 200)},
        {"mm[Hg]": _same, "mmHg": _same, "kPa": _times(7.50062)},
    ),
    "blood_glucose": Metric(
        "mg/dL",
        {"value": (10, 1000)},
        {"mg/dL": _same, "mg/dl": _same, "mmol/L": _times(18.016)},
    ),
    "steps": Metric(
        "{steps}",
        {"value": (0, 100_000)},
        {"{steps}": _same, "steps": _same, "{count}": _same, "1": _same},
    ),
    "weight": Metric(
        "kg",
        {"value": (0.5, 650)},
        {"kg": _same, "[lb_av]": _times(0.45359237), "lb": _times(0.45359237), "g": _times(0.001)},
    ),
    "sleep_duration": Metric(
        "h", {"value": (0, 24)}, {"h": _same, "min": _times(1 / 60), "s": _times(1 / 3600)}
    ),
}
"""Metric -> canonical unit, possible range of each channel, accepted units and how each
converts (README: °F→°C, mmol/L→mg/dL glucose (18.016), lb→kg, kPa→mmHg (7.50062), ...)."""

_FIELDS = {
    "event_id",
    "patient_id",
    "metric",
    "value",
    "systolic",
    "diastolic",
    "unit",
    "effective_time",
    "device_id",
    "app",
    "context",
    "effective_end",
}
_INTERVAL_METRICS = {"steps", "sleep_duration"}
"""Metrics counted over an interval: the only ones that take an ``effective_end``."""
_LONGEST_INTERVAL = timedelta(hours=26)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|([+-])(\d{2}):(\d{2}))"
)
_CONTEXTS = {"rest", "sleep", "activity"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_time(text: str) -> tuple[datetime, timedelta] | None:
    """An RFC 3339 time as (local wall time, UTC offset); None if it is not one this oracle
    reads (another format, a leap second, an offset of a day or more)."""
    match = _RFC3339.fullmatch(text)
    if match is None or match[6] == "60" or (match[10] is not None and int(match[10]) >= 24):
        return None
    offset = timedelta(0)
    if match[8] != "Z":
        offset = timedelta(hours=int(match[10]), minutes=int(match[11]))
        offset = -offset if match[9] == "-" else offset
    try:
        wall = datetime.fromisoformat(text[: match.start(8)])
    except ValueError:  # February 30th, hour 25, ...
        return datetime.min, offset
    return wall, offset


def _time_allowed(wall: datetime, offset: timedelta, *, now: datetime) -> bool | None:
    """Whether a reading at ``wall`` (UTC ``offset``) is no older than the floor and the
    retention and at most ``AHEAD`` after ``now``; None within ``EDGE`` of the moving
    bounds (the server read its clock at another instant)."""
    now = now.astimezone(UTC).replace(tzinfo=None)
    earliest, latest = max(FLOOR.replace(tzinfo=None), now - RETENTION), now + AHEAD
    try:
        utc = wall - offset
    except OverflowError:  # outside what datetime holds in UTC: year 1 or 9999
        return False
    if abs(utc - latest) < EDGE or abs(utc - (now - RETENTION)) < EDGE:
        return None
    return earliest <= utc <= latest


def _in_range(value: float, low: float, high: float, *, exact: bool) -> bool | None:
    if not math.isfinite(value):
        return False
    if not exact and min(abs(value - low), abs(value - high)) <= NEAR_BOUND * max(1.0, abs(value)):
        return None
    return low <= value <= high


def expected_verdict(item: Any, *, now: datetime) -> bool | None:
    """Whether ingest must accept one posted item at ``now`` (consent aside), by the
    published rules; None when this oracle cannot tell."""
    if not isinstance(item, dict):
        return False
    if not set(item) <= _FIELDS:
        return False  # unknown fields are refused
    for key in ("patient_id", "metric", "unit", "effective_time"):
        if item.get(key) is None:
            return False
    for key in ("patient_id", "metric", "unit", "effective_time"):
        if not isinstance(item[key], str):
            return None  # how a non-string is read (or refused) is not this oracle's business
    for key, limit in (("device_id", 128), ("app", 128)):
        if item.get(key) is not None and (not isinstance(item[key], str) or len(item[key]) > limit):
            return None
    context = item.get("context")
    if context is not None and not (isinstance(context, str) and context in _CONTEXTS):
        return False if isinstance(context, str) else None
    event_id = item.get("event_id")
    if event_id is not None and not (isinstance(event_id, str) and _ID.fullmatch(event_id)):
        return False if isinstance(event_id, str) else None
    if not _ID.fullmatch(item["patient_id"]):
        return False
    metric = TABLE.get(item["metric"])
    if metric is None:
        return False
    unit = item["unit"]
    if not 1 <= len(unit) <= 32:
        return False
    wanted = set(metric.ranges)  # {"value"} or {"systolic", "diastolic"}
    present = {k for k in ("value", "systolic", "diastolic") if item.get(k) is not None}
    if present != wanted:
        return False  # a value missing, or one that does not belong to the metric
    if not all(_number(item[k]) for k in present):
        return None
    parsed = parse_time(item["effective_time"])
    if parsed is None:
        return None
    verdicts: list[bool | None] = []
    convert = metric.units.get(unit)
    if convert is None:
        verdicts.append(False)
    else:
        canonical: dict[str, float] = {}
        for channel, (low, high) in metric.ranges.items():
            try:
                canonical[channel] = convert(float(item[channel]))
            except OverflowError:
                canonical[channel] = math.inf
            verdicts.append(_in_range(canonical[channel], low, high, exact=convert is _same))
        if "systolic" in canonical and all(v is True for v in verdicts):
            verdicts.append(canonical["systolic"] > canonical["diastolic"])
    wall, offset = parsed
    verdicts.append(False if wall == datetime.min else _time_allowed(wall, offset, now=now))
    if item.get("effective_end") is not None:
        verdicts.append(_end_allowed(item, start=parsed, now=now))
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _end_allowed(
    item: dict[str, Any], *, start: tuple[datetime, timedelta], now: datetime
) -> bool | None:
    """Whether an item's ``effective_end`` is acceptable: only on interval metrics, after the
    start, at most 26 h after it, not in the future; a night's sleep fits in its interval."""
    if item["metric"] not in _INTERVAL_METRICS:
        return False
    if not isinstance(item["effective_end"], str):
        return None
    parsed = parse_time(item["effective_end"])
    if parsed is None:
        return None
    if parsed[0] == datetime.min or start[0] == datetime.min:
        return False
    try:
        begin, end = start[0] - start[1], parsed[0] - parsed[1]
    except OverflowError:
        return False
    if end <= begin or end - begin > _LONGEST_INTERVAL:
        return False
    latest = now.astimezone(UTC).replace(tzinfo=None) + AHEAD
    if abs(end - latest) < EDGE:
        return None
    if end > latest:
        return False
    if item["metric"] == "sleep_duration":
        hours = TABLE["sleep_duration"].units.get(item["unit"])
        if hours is not None and _number(item.get("value")):
            slept = hours(float(item["value"]))
            span = (end - begin).total_seconds() / 3600
            if abs(slept - span) < 2 / 60:
                return None
            return slept <= span
    return True


def near_the_future_limit(item: Any, *, now: datetime) -> bool:
    """Whether ``item``'s time is within ``EDGE`` of the future limit at ``now``."""
    if not isinstance(item, dict) or not isinstance(item.get("effective_time"), str):
        return False
    parsed = parse_time(item["effective_time"])
    if parsed is None or parsed[0] == datetime.min:
        return False
    return _time_allowed(*parsed, now=now) is None


EXTREME_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:30:00+23:59",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999Z",
]


@st.composite
def edge_value(draw: st.DrawFn, low: float, high: float) -> float:
    span = high - low
    return draw(
        st.one_of(
            st.sampled_from([low, high, low - 1e-3, high + 1e-3, low - span, high * 10]),
            st.floats(min_value=low, max_value=high),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    )


@st.composite
def edge_time(draw: st.DrawFn) -> str:
    """A time near a bound. Times near now are drawn as offsets from the clock, so the
    draws are the same whenever they are replayed."""
    if draw(st.integers(0, 9)) == 0:  # the ends of what datetime holds, off UTC
        return draw(st.sampled_from(EXTREME_TIMES))
    absolute = st.one_of(
        st.sampled_from([FLOOR, FLOOR - timedelta(microseconds=1), datetime(1970, 1, 1)]),
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    ).map(lambda t: t.replace(tzinfo=UTC))
    ahead = st.one_of(
        st.sampled_from([AHEAD - timedelta(minutes=1), AHEAD + timedelta(minutes=1)]),
        st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(0)),
        st.sampled_from([-RETENTION + timedelta(minutes=1), -RETENTION - timedelta(minutes=1)]),
    ).map(lambda delta: datetime.now(UTC) + delta)
    when = draw(st.one_of(absolute, ahead))
    minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
    return when.astimezone(timezone(timedelta(minutes=minutes))).isoformat()


@st.composite
def valid_reading(draw: st.DrawFn) -> dict[str, Any]:
    """A reading well inside every bound (in the canonical unit, of the last 30 days), so
    that every run has readings to accept too."""
    name = draw(st.sampled_from(sorted(TABLE)))
    metric = TABLE[name]
    when = datetime.now(UTC) - draw(st.timedeltas(timedelta(minutes=1), timedelta(days=30)))
    reading: dict[str, Any] = {
        "patient_id": draw(st.sampled_from(["fuzz-1", "fuzz-2", "fuzz:3@x"])),
        "metric": name,
        "unit": metric.unit,
        "effective_time": when.isoformat(),
    }
    for channel, (low, high) in metric.ranges.items():
        third = (high - low) / 3
        # systolic in the upper third, diastolic in the lower: systolic above diastolic
        lo, hi = (low + 2 * third, high) if channel == "systolic" else (low, low + third)
        reading[channel] = draw(st.floats(min_value=lo, max_value=hi).map(lambda v: round(v, 1)))
    if name == "blood_pressure":
        reading["diastolic"] = min(reading["diastolic"], reading["systolic"] - 1)
    return reading


@st.composite
def near_valid_reading(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:
        return draw(valid_reading())
    name = draw(st.sampled_from(sorted(TABLE)))
    metric = TABLE[name]
    unit = draw(st.one_of(st.sampled_from(sorted(metric.units)), st.sampled_from(["", "x", "%"])))
    reading: dict[str, Any] = {
        "patient_id": draw(st.sampled_from(["fuzz-1", "fuzz-2", "fuzz:3@x"])),
        "metric": name,
        "unit": unit,
        "effective_time": draw(edge_time()),
    }
    for channel, (low, high) in metric.ranges.items():
        reading[channel] = draw(edge_value(low, high))
    if draw(st.booleans()):
        reading["device_id"] = draw(st.text(max_size=20))
    return reading


NEAR_VALID = st.one_of(near_valid_reading(), st.lists(near_valid_reading(), min_size=1, max_size=8))


def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """Where each partition of ``pghd.measurements.v1`` ends now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topics.MEASUREMENTS, p)
            for p in sorted(consumer.partitions_for_topic(topics.MEASUREMENTS) or [])
        ]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


def landed(bootstrap: str, start_offsets: dict[TopicPartition, int]) -> list[Measurement]:
    """The measurements produced to ``pghd.measurements.v1`` since ``start_offsets``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    try:
        parts = list(start_offsets)
        end = consumer.end_offsets(parts)
        consumer.assign(parts)
        for part, offset in start_offsets.items():
            consumer.seek(part, offset)
        found: list[Measurement] = []
        while any(consumer.position(p) < end[p] for p in parts):
            for message in consumer:
                if not is_marker(message.value):  # an erasure the fuzz asked for
                    found.extend(decode_readings(message.value))
                if all(consumer.position(p) >= end[p] for p in parts):
                    break
        return found
    finally:
        consumer.close()


def problems_of(m: Measurement) -> list[str]:
    """What makes a produced measurement one that should not have been accepted (empty:
    valid), by the published table: canonical unit, possible range, systolic above
    diastolic, a UTC time between the floor and ten minutes after it was received."""
    metric = TABLE[m.metric.value]
    problems = []
    if m.unit != metric.unit:
        problems.append(f"unit {m.unit} is not {metric.unit}")
    values = dict(m.components or {}) if len(metric.ranges) > 1 else {"value": m.value}
    if set(values) != set(metric.ranges):
        problems.append(f"channels {sorted(values)} are not {sorted(metric.ranges)}")
    for name, value in values.items():
        low, high = metric.ranges.get(name, (math.nan, math.nan))
        if value is None or not math.isfinite(value) or not low <= value <= high:
            problems.append(f"{name} {value} outside {low}..{high}")
    if len(metric.ranges) > 1 and not values.get("systolic", 0) > values.get("diastolic", 0):
        problems.append("systolic not above diastolic")
    if m.effective_time.utcoffset() != timedelta(0):
        problems.append("effective_time not UTC")
    if not max(FLOOR, m.received_at - RETENTION) <= m.effective_time <= m.received_at + AHEAD:
        problems.append(f"effective_time {m.effective_time} outside the time bounds")
    return problems
