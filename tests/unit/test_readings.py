"""Posted readings become canonical measurements: units, ranges, ids, time."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import Measurement, TimePrecision, span_end
from pghd.readings import ReadingIn, ReadingRejected, canonicalize

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def reading(**overrides: object) -> ReadingIn:
    base: dict[str, object] = {
        "patient_id": "p-1",
        "metric": "heart_rate",
        "value": 72,
        "unit": "/min",
        "effective_time": "2026-11-25T11:00:00+01:00",
    }
    base.update(overrides)
    return ReadingIn.model_validate(base)


def test_canonical_measurement_is_utc_and_converted() -> None:
    m = canonicalize(
        reading(metric="body_temperature", value=101.3, unit="[degF]"),
        vendor="acme",
        received_at=NOW,
    )
    assert m.unit == "Cel"
    assert m.value == pytest.approx(38.5)
    assert m.effective_time == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert m.source.vendor == "acme"


def test_derived_event_id_is_stable_and_client_id_wins() -> None:
    a = canonicalize(reading(), vendor="acme", received_at=NOW)
    b = canonicalize(reading(), vendor="acme", received_at=NOW + timedelta(seconds=5))
    assert a.event_id == b.event_id
    assert canonicalize(reading(value=73), vendor="acme", received_at=NOW).event_id != a.event_id
    assert canonicalize(reading(event_id="e-1"), vendor="acme", received_at=NOW).event_id == "e-1"


def test_out_of_range_value_names_the_range() -> None:
    with pytest.raises(ReadingRejected) as exc:
        canonicalize(reading(value=400), vendor="acme", received_at=NOW)
    (problem,) = exc.value.problems
    assert problem.field == "value"
    assert "20 to 300 /min" in problem.message


def test_future_reading_refused() -> None:
    with pytest.raises(ReadingRejected, match="effective_time"):
        canonicalize(
            reading(effective_time=(NOW + timedelta(hours=1)).isoformat()),
            vendor="acme",
            received_at=NOW,
        )


def test_blood_pressure_is_one_reading_with_two_parts() -> None:
    m = canonicalize(
        reading(metric="blood_pressure", value=None, systolic=16, diastolic=10.6, unit="kPa"),
        vendor="acme",
        received_at=NOW,
    )
    assert m.components == {
        "systolic": pytest.approx(120.0099),
        "diastolic": pytest.approx(79.5066),
    }
    assert [k for k, _ in m.channels()] == ["blood_pressure.systolic", "blood_pressure.diastolic"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"effective_time": "2026-11-25T11:00:00"},  # naive time
        {"metric": "mood"},
        {"value": None},
        {"metric": "blood_pressure", "systolic": 120},
        {"patient_id": "bad id with spaces"},
        {"value": float("nan")},
        {"extra": 1},
    ],
)
def test_malformed_readings_fail_validation(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        reading(**overrides)


def test_wire_round_trip_keeps_schema_version() -> None:
    m = canonicalize(
        reading(metric="blood_glucose", value=4.2, unit="mmol/L"), vendor="a", received_at=NOW
    )
    payload = wire.encode(m)
    assert b'"schema_version":1' in payload
    assert wire.decode(Measurement, payload) == m
    assert m.metric is Metric.BLOOD_GLUCOSE


def test_measurement_refuses_non_canonical_unit() -> None:
    m = canonicalize(reading(), vendor="a", received_at=NOW)
    data = m.model_dump()
    data["unit"] = "bpm"
    with pytest.raises(ValidationError, match="canonical"):
        Measurement.model_validate(data)


def _steps(**overrides: object) -> ReadingIn:
    return reading(
        metric="steps",
        value=840,
        unit="{steps}",
        effective_time="2026-11-25T09:00:00Z",
        **overrides,
    )


def test_an_interval_keeps_its_end_and_the_start_stays_the_time() -> None:
    m = canonicalize(_steps(effective_end="2026-11-25T10:15:00+01:00"), vendor="a", received_at=NOW)
    assert m.effective_time == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert m.effective_end == datetime(2026, 11, 25, 9, 15, tzinfo=UTC)
    assert wire.decode(Measurement, wire.encode(m)) == m


def test_an_end_changes_the_derived_id_only_when_given() -> None:
    bare = canonicalize(_steps(), vendor="a", received_at=NOW)
    ended = canonicalize(_steps(effective_end="2026-11-25T09:15:00Z"), vendor="a", received_at=NOW)
    other = canonicalize(_steps(effective_end="2026-11-25T09:05:00Z"), vendor="a", received_at=NOW)
    assert len({bare.event_id, ended.event_id, other.event_id}) == 3
    assert '"effective_end"' not in wire.encode(bare).decode()  # instants' bytes unchanged


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"effective_end": "2026-11-25T09:00:00Z"}, "after effective_time"),
        ({"effective_end": "2026-11-26T11:01:00Z"}, "at most 26 hours"),
        ({"effective_end": "2026-11-25T12:11:00Z"}, "in the future"),
        (
            {
                "metric": "heart_rate",
                "unit": "/min",
                "value": 60,
                "effective_end": "2026-11-25T09:01:00Z",
            },
            "takes no effective_end",
        ),
        (
            {
                "metric": "sleep_duration",
                "unit": "h",
                "value": 7.5,
                "effective_time": "2026-11-25T01:00:00Z",
                "effective_end": "2026-11-25T08:00:00Z",
            },
            "less than the 7.5 h slept",
        ),
    ],
)
def test_a_bad_end_is_refused_naming_why(overrides: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"metric": "steps", "unit": "{steps}", "value": 10}
    with pytest.raises(ReadingRejected) as refused:
        canonicalize(
            reading(**{**base, "effective_time": "2026-11-25T09:00:00Z"} | overrides),
            vendor="a",
            received_at=NOW,
        )
    assert [p.field for p in refused.value.problems] == ["effective_end"]
    assert message in refused.value.problems[0].message


def _weighed(**overrides: object) -> ReadingIn:
    """A weight known to the day: the start of its UTC day, with its precision."""
    base: dict[str, object] = {
        "metric": "weight",
        "value": 80,
        "unit": "kg",
        "effective_time": "2026-11-25T00:00:00Z",
        "effective_precision": "day",
    }
    return reading(**base | overrides)


def test_a_time_known_to_the_day_keeps_its_precision_on_the_wire() -> None:
    m = canonicalize(_weighed(), vendor="a", received_at=NOW)
    assert (m.effective_time, m.effective_precision) == (
        datetime(2026, 11, 25, tzinfo=UTC),
        TimePrecision.DAY,
    )
    payload = wire.encode(m)
    assert b'"effective_precision":"day"' in payload
    assert wire.decode(Measurement, payload) == m
    instant = canonicalize(_weighed(effective_precision=None), vendor="a", received_at=NOW)
    assert instant.event_id != m.event_id
    assert b"effective_precision" not in wire.encode(instant)  # instants' bytes unchanged


@pytest.mark.parametrize(
    ("precision", "start", "end"),
    [
        ("year", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("month", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("month", "2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("day", "2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"),
        ("night", "2026-11-24T00:00:00Z", "2026-11-24T06:00:00Z"),
        ("morning", "2026-11-24T06:00:00Z", "2026-11-24T12:00:00Z"),
        ("afternoon", "2026-11-24T12:00:00Z", "2026-11-24T18:00:00Z"),
        ("evening", "2026-11-24T18:00:00Z", "2026-11-25T00:00:00Z"),
    ],
)
def test_each_precision_names_a_span_from_its_start(precision: str, start: str, end: str) -> None:
    m = canonicalize(
        _weighed(effective_time=start, effective_precision=precision), vendor="a", received_at=NOW
    )
    assert m.effective_precision is not None
    assert span_end(m.effective_time, m.effective_precision) == datetime.fromisoformat(end)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"effective_time": "2026-11-25T08:00:00Z"}, "effective_precision", "start a day"),
        (
            {"effective_time": "2026-11-25T00:00:00+01:00"},  # 23:00Z the day before
            "effective_precision",
            "start a day (00:00:00Z)",
        ),
        (
            {"effective_time": "2026-11-02T00:00:00Z", "effective_precision": "month"},
            "effective_precision",
            "its first day",
        ),
        (
            {"effective_time": "2026-11-25T07:00:00Z", "effective_precision": "morning"},
            "effective_precision",
            "the morning of a day (06:00:00Z)",
        ),
        ({"effective_time": "2026-11-27T00:00:00Z"}, "effective_time", "begun in no time zone"),
    ],
)
def test_a_time_that_is_not_its_spans_start_is_refused(
    overrides: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ReadingRejected) as refused:
        canonicalize(_weighed(**overrides), vendor="a", received_at=NOW)
    [problem] = refused.value.problems
    assert (problem.field, message in problem.message) == (field, True), problem.message
    data = canonicalize(_weighed(), vendor="a", received_at=NOW).model_dump()
    data["effective_time"] = datetime(2026, 11, 25, 8, tzinfo=UTC)
    with pytest.raises(ValidationError, match="must start a day"):
        Measurement.model_validate(data)


def test_a_day_that_has_begun_east_of_utc_is_not_in_the_future() -> None:
    tomorrow = _weighed(effective_time="2026-11-26T00:00:00Z")  # NOW is 2026-11-25T12:00Z
    assert canonicalize(tomorrow, vendor="a", received_at=NOW).effective_precision is not None
