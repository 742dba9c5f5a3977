"""Properties of ``ReadingIn`` + ``canonicalize`` over generated readings (hypothesis).

Whatever is posted: an accepted reading has the metric's canonical unit, values inside the
possible range (systolic above diastolic), an aware UTC time between the floor and ten
minutes ahead, and survives the wire; a refused one is refused with problems that name a
field, each about a bound that reading really breaks. Readings built inside every bound
are accepted.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pghd import wire
from pghd.catalogue import CATALOGUE, Metric, UnitError, channel_spec, convert
from pghd.contracts import Measurement
from pghd.readings import (
    EARLIEST_EFFECTIVE_TIME,
    MAX_FUTURE,
    ReadingIn,
    ReadingRejected,
    canonicalize,
)

FIELDS = set(ReadingIn.model_fields)
RECEIVED = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
ANY_TIME = st.datetimes(timezones=st.one_of(OFFSETS, st.just(UTC), st.timezones()))
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=300),
    st.integers(min_value=-(10**6), max_value=10**6),
)
UNITS = st.one_of(
    st.sampled_from(sorted({u for spec in CATALOGUE.values() for u in spec.accepted_units})),
    st.text(max_size=40),
)
PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def raw_readings(draw: st.DrawFn) -> dict[str, Any]:
    """Anything a client might post: often plausible, often wrong somewhere."""
    metric = draw(st.sampled_from(list(Metric)))
    spec = CATALOGUE[metric]
    shaped = draw(st.integers(0, 3)) > 0  # mostly the right fields for the metric
    raw: dict[str, Any] = {
        "patient_id": draw(st.one_of(st.just("patient-1"), st.text(max_size=10))),
        "metric": metric.value if shaped else draw(st.one_of(st.just(metric), st.text())),
        "unit": draw(st.sampled_from(spec.accepted_units)) if shaped else draw(UNITS),
        "effective_time": draw(
            st.one_of(ANY_TIME, ANY_TIME.map(lambda t: t.isoformat()), st.datetimes())
        ),
    }
    names = [c.name for c in spec.channels] if spec.is_composite else ["value"]
    if not shaped:
        names = [n for n in ("value", "systolic", "diastolic") if draw(st.booleans())]
    for name in names:
        raw[name] = draw(NUMBERS)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.text(min_size=1, max_size=8))] = draw(NUMBERS)
    return raw


@st.composite
def valid_readings(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """A reading inside every bound, in any accepted unit, and when it is received."""
    received = draw(RECEIVED)
    metric = draw(st.sampled_from(list(Metric)))
    spec = CATALOGUE[metric]
    unit = draw(st.sampled_from(spec.accepted_units))
    raw: dict[str, Any] = {"patient_id": "p-1", "metric": metric.value, "unit": unit}
    values = {}
    for channel in spec.channels:
        low, high = channel.possible
        values[channel.name] = draw(st.floats(min_value=low, max_value=high))
    if spec.is_composite:
        assume(values["systolic"] > values["diastolic"] + 1e-3)
    for name, canonical in values.items():
        field = "value" if not spec.is_composite else name
        raw[field] = _from_canonical(metric, canonical, unit)
        converted = convert(metric, raw[field], unit)
        low, high = channel_spec(metric, name).possible
        assume(low <= converted <= high)  # float round trips may step just outside
    when = draw(
        st.datetimes(
            min_value=EARLIEST_EFFECTIVE_TIME.replace(tzinfo=None),
            max_value=(received + MAX_FUTURE).replace(tzinfo=None),
            timezones=st.just(UTC),
        )
    )
    offset = draw(OFFSETS)
    raw["effective_time"] = when.astimezone(offset).isoformat()
    return raw, received


def _from_canonical(metric: Metric, canonical: float, unit: str) -> float:
    """The value in ``unit`` that converts to ``canonical`` (conversions are affine)."""
    at0, at1 = convert(metric, 0.0, unit), convert(metric, 1.0, unit)
    return (canonical - at0) / (at1 - at0)


def _check_accepted(m: Measurement, reading: ReadingIn, received: datetime) -> None:
    spec = CATALOGUE[m.metric]
    assert m.unit == spec.unit
    values = m.components if spec.is_composite else {m.metric.value: m.value}
    assert values is not None
    for name, value in values.items():
        assert value is not None and math.isfinite(value)
        low, high = channel_spec(m.metric, name).possible
        assert low <= value <= high, (name, value)
    if spec.is_composite:
        assert m.components is not None
        assert m.components["systolic"] > m.components["diastolic"]
    assert m.effective_time.utcoffset() == timedelta(0)
    assert m.effective_time == reading.effective_time
    assert EARLIEST_EFFECTIVE_TIME <= m.effective_time <= received + MAX_FUTURE
    assert wire.decode(Measurement, wire.encode(m)) == m


def _check_refused(problems: ReadingRejected, reading: ReadingIn, received: datetime) -> None:
    spec = CATALOGUE[reading.metric]
    assert problems.problems
    for problem in problems.problems:
        assert problem.message
        if problem.field == "unit":
            assert reading.unit not in spec.accepted_units
        elif problem.field == "effective_time":
            t = reading.effective_time
            assert t < EARLIEST_EFFECTIVE_TIME or t > received + MAX_FUTURE
        elif problem.field == "diastolic" and "systolic" in problem.message:
            assert reading.systolic is not None and reading.diastolic is not None
            systolic = convert(reading.metric, reading.systolic, reading.unit)
            diastolic = convert(reading.metric, reading.diastolic, reading.unit)
            assert round(systolic, 4) <= round(diastolic, 4)
        else:
            assert problem.field in {"value", "systolic", "diastolic"}
            raw = getattr(reading, problem.field)
            canonical = convert(reading.metric, raw, reading.unit)
            channel = spec.channels[0] if problem.field == "value" else None
            low, high = (channel or channel_spec(reading.metric, problem.field)).possible
            assert not low <= canonical <= high
            assert f"{low:g} to {high:g} {spec.unit}" in problem.message


@PROFILE
@given(raw=raw_readings(), received=RECEIVED)
def test_any_posted_reading_is_canonical_or_refused_naming_a_field(
    raw: dict[str, Any], received: datetime
) -> None:
    try:
        reading = ReadingIn.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            named = bool(error["loc"]) or any(f in error["msg"] for f in FIELDS)
            assert named, error
        return
    try:
        measurement = canonicalize(reading, vendor="acme", received_at=received)
    except ReadingRejected as exc:
        _check_refused(exc, reading, received)
        return
    _check_accepted(measurement, reading, received)


@PROFILE
@given(case=valid_readings())
def test_readings_inside_every_bound_are_accepted(case: tuple[dict[str, Any], datetime]) -> None:
    raw, received = case
    reading = ReadingIn.model_validate(raw)
    measurement = canonicalize(reading, vendor="acme", received_at=received)
    _check_accepted(measurement, reading, received)


@PROFILE
@given(
    case=valid_readings(),
    when=st.one_of(
        st.datetimes(max_value=datetime(1999, 12, 31), timezones=st.just(UTC)),
        st.timedeltas(min_value=timedelta(minutes=10, microseconds=1), max_value=timedelta(1e5)),
    ),
)
def test_times_outside_the_bounds_are_refused_on_effective_time(
    case: tuple[dict[str, Any], datetime], when: datetime | timedelta
) -> None:
    raw, received = case
    if isinstance(when, timedelta):
        assume(received + when < datetime(9999, 1, 1, tzinfo=UTC))
        when = received + when
    reading = ReadingIn.model_validate({**raw, "effective_time": when.isoformat()})
    try:
        canonicalize(reading, vendor="acme", received_at=received)
    except ReadingRejected as exc:
        assert [p.field for p in exc.problems] == ["effective_time"]
        assert ("2000-01-01" in exc.problems[0].message) == (when < EARLIEST_EFFECTIVE_TIME)
    else:
        raise AssertionError(f"{when} accepted")


@PROFILE
@given(case=valid_readings(), factor=st.floats(min_value=1.001, max_value=1e6))
def test_values_outside_the_possible_range_are_refused_naming_it(
    case: tuple[dict[str, Any], datetime], factor: float
) -> None:
    raw, received = case
    metric = Metric(raw["metric"])
    spec = CATALOGUE[metric]
    field = "systolic" if spec.is_composite else "value"
    _, high = channel_spec(metric, field if spec.is_composite else metric.value).possible
    over = _from_canonical(metric, high * factor + 1, raw["unit"])
    reading = ReadingIn.model_validate({**raw, field: over})
    try:
        canonicalize(reading, vendor="acme", received_at=received)
    except UnitError:  # pragma: no cover - units are drawn from the accepted ones
        raise
    except ReadingRejected as exc:
        assert field in [p.field for p in exc.problems]
        _check_refused(exc, reading, received)
    else:
        raise AssertionError(f"{over} {raw['unit']} accepted for {metric}")


def test_every_possible_range_is_sensible() -> None:
    """Finite, not negative, and wide enough for every reading NEWS2 scores 0 (normal)."""
    for spec in CATALOGUE.values():
        for channel in spec.channels:
            low, high = channel.possible
            assert 0 <= low < high < math.inf, channel.name
            for band in channel.news2:
                if band.score == 0:  # an open-ended band (to inf) ends at the range
                    assert low <= band.low < high, channel.name
                    assert band.high <= high or band.high == math.inf, channel.name
