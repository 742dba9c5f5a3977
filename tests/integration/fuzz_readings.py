"""Helpers of the fuzz run (``test_api_fuzz.py``): near-valid readings and validity checks.

``NEAR_VALID`` draws readings (or batches) hugging every bound ``pghd.readings`` enforces:
accepted and refused units, values at and just past each channel's possible range, times
at the 2000-01-01 floor, around the ten-minute future limit and at the ends of what
``datetime`` holds. Times near now are drawn as offsets from the clock, so a replayed
example draws the same data.
"""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from pghd import topics, wire
from pghd.catalogue import CATALOGUE, Metric, channel_spec
from pghd.contracts import Measurement
from pghd.readings import EARLIEST_EFFECTIVE_TIME, MAX_FUTURE, ReadingIn, ReadingRejected
from pghd.readings import canonicalize as pghd_canonicalize

__all__ = [
    "NEAR_VALID",
    "end_offsets",
    "landed",
    "near_the_future_limit",
    "pghd_verdict",
    "problems_of",
]

EDGE = timedelta(seconds=5)
"""Items this close to the future limit are not judged: the server's clock read differs."""


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
    floor = EARLIEST_EFFECTIVE_TIME
    absolute = st.one_of(
        st.sampled_from([floor, floor - timedelta(microseconds=1), datetime(1970, 1, 1)]),
        st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    ).map(lambda t: t.replace(tzinfo=UTC))
    ahead = st.one_of(
        st.sampled_from([MAX_FUTURE - timedelta(minutes=1), MAX_FUTURE + timedelta(minutes=1)]),
        st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(0)),
    ).map(lambda delta: datetime.now(UTC) + delta)
    when = draw(st.one_of(absolute, ahead))
    minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
    return when.astimezone(timezone(timedelta(minutes=minutes))).isoformat()


@st.composite
def near_valid_reading(draw: st.DrawFn) -> dict[str, Any]:
    metric = draw(st.sampled_from(list(Metric)))
    spec = CATALOGUE[metric]
    unit = draw(st.one_of(st.sampled_from(spec.accepted_units), st.sampled_from(["", "x", "%"])))
    reading: dict[str, Any] = {
        "patient_id": draw(st.sampled_from(["fuzz-1", "fuzz-2", "fuzz:3@x"])),
        "metric": metric.value,
        "unit": unit,
        "effective_time": draw(edge_time()),
    }
    for channel in spec.channels:
        name = channel.name if spec.is_composite else "value"
        reading[name] = draw(edge_value(*channel.possible))
    if draw(st.booleans()):
        reading["device_id"] = draw(st.text(max_size=20))
    return reading


NEAR_VALID = st.one_of(near_valid_reading(), st.lists(near_valid_reading(), min_size=1, max_size=8))


def pghd_verdict(item: Any) -> bool:
    """Whether ``pghd.readings`` accepts one posted item (now, consent aside)."""
    if not isinstance(item, dict):
        return False
    try:
        reading = ReadingIn.model_validate(item)
        pghd_canonicalize(reading, vendor="acme", received_at=datetime.now(UTC))
    except (ValidationError, ReadingRejected):
        return False
    return True


def near_the_future_limit(item: Any) -> bool:
    with contextlib.suppress(ValidationError, TypeError, ValueError, OverflowError):
        when = ReadingIn.model_validate(item).effective_time
        return abs(when - (datetime.now(UTC) + MAX_FUTURE)) < EDGE
    return False


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
                found.append(wire.decode(Measurement, message.value))
                if all(consumer.position(p) >= end[p] for p in parts):
                    break
        return found
    finally:
        consumer.close()


def problems_of(m: Measurement) -> list[str]:
    """What makes a produced measurement one pghd would not have accepted (empty: valid)."""
    spec = CATALOGUE[m.metric]
    problems = []
    if m.unit != spec.unit:
        problems.append(f"unit {m.unit} is not {spec.unit}")
    values = m.components if spec.is_composite else {m.metric.value: m.value}
    for name, value in (values or {}).items():
        low, high = channel_spec(m.metric, name).possible
        if value is None or not math.isfinite(value) or not low <= value <= high:
            problems.append(f"{name} {value} outside {low}..{high}")
    parts = m.components or {}
    if spec.is_composite and not parts.get("systolic", 0) > parts.get("diastolic", 0):
        problems.append("systolic not above diastolic")
    if m.effective_time.utcoffset() != timedelta(0):
        problems.append("effective_time not UTC")
    if not EARLIEST_EFFECTIVE_TIME <= m.effective_time <= m.received_at + MAX_FUTURE:
        problems.append(f"effective_time {m.effective_time} outside the time bounds")
    return problems
