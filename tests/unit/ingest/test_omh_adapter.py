"""Open mHealth data points to candidates: schemas, units, time frames, patient, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.adapters.locations import Located, relocate
from ingest.adapters.omh import data_point_candidate, data_points
from ingest.intake import AllowAll, ItemOutcome, triage
from pghd.contracts import TimePrecision
from tests.unit.ingest.omh_documents import (
    OTHER_SAMPLES,
    REFUSED_TIME_FRAMES,
    SAMPLES,
    TIME_FRAMES,
    data_point,
    sample_with,
)


def candidate(point: Any, patient_id: str | None = None) -> Located:
    return data_point_candidate(point, pointer="/0", patient_id=patient_id)


def triaged(item: Located) -> ItemOutcome:
    [outcome] = triage(
        [item.candidate], source="acme", received_at=datetime.now(UTC), registry=AllowAll()
    )
    return outcome


@pytest.mark.parametrize(
    ("name", "metric", "values", "unit", "when", "end"),
    [
        # heart rate is an instant metric: the sample's 24 h interval gives it no end
        ("heart-rate", "heart_rate", {"value": 50}, "/min", "2020-02-05T05:00:00Z", None),
        (
            "body-temperature",
            "body_temperature",
            {"value": 36.1111},
            "Cel",
            "2023-02-05T06:25Z",
            None,
        ),
        (
            "blood-pressure",
            "blood_pressure",
            {"components": {"systolic": 115, "diastolic": 60}},
            "mm[Hg]",
            "2020-02-05T15:25:00Z",
            None,
        ),
        ("oxygen-saturation", "spo2", {"value": 95}, "%", "2013-02-05T15:25:00Z", None),
        ("respiratory-rate", "respiratory_rate", {"value": 11}, "/min", "2020-02-05T15:25Z", None),
        (
            "step-count",
            "steps",
            {"value": 10600},
            "{steps}",
            "2016-02-05T06:25:00Z",
            "2016-02-05T07:25:00Z",
        ),
        ("blood-glucose", "blood_glucose", {"value": 95}, "mg/dL", "2013-02-05T07:25:00Z", None),
        (
            "sleep-duration",
            "sleep_duration",
            {"value": 7.5},
            "h",
            "2016-02-05T20:35:00Z",
            "2016-02-06T06:35:00Z",
        ),
        # start + duration: onset to final awakening, total_sleep_time asleep within it
        (
            "sleep-episode",
            "sleep_duration",
            {"value": 8.5},
            "h",
            "2016-02-05T21:35:00Z",
            "2016-02-06T06:35:00Z",
        ),
    ],
)
def test_schema_samples_become_canonical_measurements(
    name: str, metric: str, values: dict[str, Any], unit: str, when: str, end: str | None
) -> None:
    outcome = triaged(candidate(data_point(name)))
    measurement = outcome.measurement
    assert measurement is not None, outcome.errors
    assert (measurement.metric.value, measurement.unit) == (metric, unit)
    assert measurement.model_dump(include=set(values)) == values
    assert measurement.effective_time == datetime.fromisoformat(when)  # an interval's start
    assert measurement.effective_end == (None if end is None else datetime.fromisoformat(end))
    assert measurement.patient_id == "user1432"
    assert measurement.event_id == "123e4567-e89b-12d3-a456-426655440000"
    assert measurement.source.app == "RunKeeper"


def test_body_weight_in_kilograms_or_pounds() -> None:
    kg = triaged(candidate(data_point("body-weight"))).measurement
    assert kg is not None and (kg.metric.value, kg.value, kg.unit) == ("weight", 50, "kg")
    body = sample_with("body-weight", body_weight={"value": 150, "unit": "lb"})
    pounds = triaged(candidate(data_point("body-weight", body))).measurement
    assert pounds is not None and pounds.value == pytest.approx(68.0388555)


def test_at_rest_is_the_rest_context() -> None:
    reading = candidate(data_point("respiratory-rate")).candidate.reading
    assert reading is not None and reading["context"] == "rest"


@pytest.mark.parametrize(
    ("measure", "expected"),
    [({"value": 310.15, "unit": "K"}, 37.0), ({"value": 98.6, "unit": "F"}, 37.0)],
)
def test_temperature_units_of_omh_are_converted(measure: dict[str, Any], expected: float) -> None:
    body = {"body_temperature": measure, "effective_time_frame": {"date_time": "2023-02-05T07:25Z"}}
    measurement = triaged(candidate(data_point("body-temperature", body))).measurement
    assert measurement is not None and measurement.value == pytest.approx(expected)


def test_step_count_2_0_bare_number_and_sleep_in_seconds() -> None:
    frame = {
        "time_interval": {
            "start_date_time": "2016-02-05T06:25:00Z",
            "end_date_time": "2016-02-05T07:25:00Z",
        }
    }
    steps = triaged(
        candidate(data_point("step-count", {"step_count": 6000, "effective_time_frame": frame}))
    )
    assert steps.measurement is not None and steps.measurement.value == 6000
    night = SAMPLES["sleep-duration"][1]["effective_time_frame"]
    sleep = triaged(
        candidate(
            data_point(
                "sleep-duration",
                {"sleep_duration": {"value": 27000, "unit": "sec"}, "effective_time_frame": night},
            )
        )
    )
    assert sleep.measurement is not None and sleep.measurement.value == pytest.approx(7.5)


def test_an_interval_keeps_its_end_and_says_where_it_came_from() -> None:
    steps = candidate(data_point("step-count"))
    assert steps.candidate.reading is not None
    assert steps.candidate.reading["effective_end"] == datetime(2016, 2, 5, 7, 25, tzinfo=UTC)
    at = "/0/body/effective_time_frame/time_interval"
    assert steps.elements["effective_end"] == f"{at}/end_date_time"
    episode = candidate(data_point("sleep-episode"))  # start + duration
    assert episode.elements["effective_end"] == f"{at}/duration"
    assert episode.elements["value"] == "/0/body/total_sleep_time/value"


@pytest.mark.parametrize(
    "frame",
    [
        {"date_time": "2016-02-05T07:25:00Z"},  # an instant: no span
        {  # a period whose end is its start
            "time_interval": {
                "start_date_time": "2016-02-05T07:25:00Z",
                "duration": {"value": 0, "unit": "min"},
            }
        },
    ],
)
def test_a_step_count_without_a_span_stays_an_instant(frame: dict[str, Any]) -> None:
    body = {"step_count": {"value": 600, "unit": "steps"}, "effective_time_frame": frame}
    outcome = triaged(candidate(data_point("step-count", body)))
    assert outcome.measurement is not None, outcome.errors
    assert outcome.measurement.effective_time == datetime(2016, 2, 5, 7, 25, tzinfo=UTC)
    assert outcome.measurement.effective_end is None


@pytest.mark.parametrize(
    ("name", "sample", "start"),
    [
        ("step-count", "step-count/with-average", "2016-05-05T07:00:00Z"),  # a month long
        ("sleep-duration", "sleep-duration/with-descriptive-statistic", "2016-02-05T07:00:00Z"),
    ],
)
def test_an_interval_pghd_cannot_take_leaves_the_reading_at_its_start(
    name: str, sample: str, start: str
) -> None:
    outcome = triaged(candidate(data_point(name, OTHER_SAMPLES[sample])))
    assert outcome.measurement is not None, outcome.errors
    assert outcome.measurement.effective_time == datetime.fromisoformat(start)
    assert outcome.measurement.effective_end is None


def test_sleep_longer_than_its_interval_is_refused_at_the_end_element() -> None:
    frame = {
        "time_interval": {
            "start_date_time": "2016-02-05T20:35:00Z",
            "duration": {"value": 300, "unit": "min"},
        }
    }
    body = sample_with("sleep-duration", effective_time_frame=frame)  # 7.5 h in 5 h
    item = candidate(data_point("sleep-duration", body))
    outcome = triaged(item)
    [err] = relocate(outcome.errors, item)
    assert outcome.reason == "time"
    assert err["pointer"] == "/0/body/effective_time_frame/time_interval/duration"
    assert "less than the 7.5 h slept" in err["detail"]


def test_a_sleep_episode_needs_its_time_interval() -> None:
    item = candidate(data_point("sleep-episode", OTHER_SAMPLES["sleep-episode/with-timestamp"]))
    [err] = relocate(triaged(item).errors, item)
    assert err["pointer"] == "/0/body/effective_time_frame/date_time"
    assert "needs a time_interval" in err["detail"]


def test_interval_given_by_end_and_duration_starts_at_end_minus_duration() -> None:
    frame = {
        "time_interval": {
            "end_date_time": "2016-02-06T06:35:00Z",
            "duration": {"value": 10, "unit": "h"},
        }
    }
    body = {"sleep_duration": {"value": 7.5, "unit": "h"}, "effective_time_frame": frame}
    item = candidate(data_point("sleep-duration", body))
    assert item.candidate.reading is not None
    assert item.candidate.reading["effective_time"] == datetime(2016, 2, 5, 20, 35, tzinfo=UTC)
    assert item.candidate.reading["effective_end"] == datetime(2016, 2, 6, 6, 35, tzinfo=UTC)
    assert item.elements["effective_end"] == item.elements["effective_time"]  # end_date_time
    start = {
        "time_interval": {
            "start_date_time": "2016-02-05T20:35:00Z",
            "duration": {"value": 10, "unit": "h"},
        }
    }
    reading = candidate(
        data_point("sleep-duration", {**body, "effective_time_frame": start})
    ).candidate.reading
    assert reading is not None and reading["effective_time"] == datetime(
        2016, 2, 5, 20, 35, tzinfo=UTC
    )
    assert reading["effective_end"] == datetime(2016, 2, 6, 6, 35, tzinfo=UTC)


def test_patient_is_user_id_else_the_parameter_and_they_must_agree() -> None:
    assert (candidate(data_point("heart-rate"), "user1432").candidate.reading or {})[
        "patient_id"
    ] == "user1432"
    no_user = data_point("heart-rate", user=None)
    assert (candidate(no_user, "patient-9").candidate.reading or {})["patient_id"] == "patient-9"
    clash = candidate(data_point("heart-rate"), "patient-9").candidate
    assert clash.errors[0]["pointer"] == "/0/header/user_id"
    assert "contradicts" in clash.errors[0]["detail"]
    missing = candidate(no_user).candidate
    assert missing.errors[0]["pointer"] == "/0/header/user_id"
    assert "no patient" in missing.errors[0]["detail"]


def test_header_id_that_is_no_valid_event_id_is_hashed_stably() -> None:
    point = data_point("heart-rate", id="not a valid/id")
    first = candidate(point).candidate.reading
    again = candidate(point).candidate.reading
    assert first is not None and again is not None
    assert first["event_id"].startswith("omh-") and first["event_id"] == again["event_id"]


@pytest.mark.parametrize(
    ("point", "pointer", "text", "reason"),
    [
        (
            {
                **data_point("heart-rate"),
                "header": {
                    **data_point("heart-rate")["header"],
                    "schema_id": {
                        "namespace": "omh",
                        "name": "physical-activity",
                        "version": "1.0",
                    },
                },
            },
            "/0/header/schema_id",
            "is not taken",
            "unsupported",
        ),
        (
            data_point("heart-rate", sample_with("heart-rate", heart_rate={"value": 50})),
            "/0/body/heart_rate/unit",
            "unit is missing",
            "invalid",
        ),
        (
            data_point(
                "heart-rate",
                sample_with(
                    "heart-rate", effective_time_frame={"date_time": "2020-02-05T07:25:00"}
                ),
            ),
            "/0/body/effective_time_frame/date_time",
            "no timezone offset",
            "invalid",
        ),
        (
            data_point(
                "heart-rate", sample_with("heart-rate", heart_rate={"value": 50, "unit": "Hz"})
            ),
            "/0/body/heart_rate/unit",
            "'Hz' is not accepted for heart_rate",
            "unit",
        ),
        ({"header": {}}, "/0/body", "no body object", "invalid"),
        ([1], "/0", "must be an object", "invalid"),
    ],
)
def test_bad_data_points_point_at_the_element(
    point: Any, pointer: str, text: str, reason: str
) -> None:
    item = candidate(point)
    outcome = triaged(item)
    [err] = relocate(outcome.errors, item)
    assert err["pointer"] == pointer
    assert text in err["detail"]
    assert outcome.reason == reason


def test_body_must_be_a_data_point_or_a_non_empty_array() -> None:
    assert data_points({"header": {}}) == ([{"header": {}}], False)
    assert data_points([{}, {}]) == ([{}, {}], True)
    for bad in ([], "x", 3):
        with pytest.raises(ValueError):
            data_points(bad)


def framed(name: str, frame: Any) -> dict[str, Any]:
    return data_point(name, sample_with(name, effective_time_frame=frame))


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("sample", "start", "steps_end", "precision"),
    [
        ("time-frame/date-time", "2013-02-05T07:25:00.123Z", None, None),
        ("time-frame/time-interval", "2013-01-26T07:35:00Z", None, None),  # 10 d: no end kept
        ("time-interval/date-part-of-day", "2013-02-05T18:00:00Z", None, TimePrecision.EVENING),
        ("time-interval/duration-end-time", "2013-01-26T07:35:00Z", None, None),
        ("time-interval/start-time-duration", "2013-02-05T07:25:00Z", None, None),
        (
            "time-interval/start-time-earlier-than-end-time",
            "2013-02-05T07:25:00Z",
            "2013-02-05T07:35:00Z",
            None,
        ),
        ("time-interval/start-time-later-than-end-time", "2013-02-05T07:35:00Z", None, None),
        ("ieee/time-interval/end-time-duration", "2013-01-25T09:59:00Z", None, None),
        ("ieee/time-interval/start-time-duration", "2013-02-05T07:25:00Z", None, None),
        ("date-time/date-time-at-utc", "2013-02-05T07:25:00Z", None, None),
        ("date-time/date-time-with-milliseconds", "2013-02-05T07:25:00.123Z", None, None),
        ("date-time/date-time-with-timezone-offset", "2013-02-05T04:25:00Z", None, None),
        ("part-of-day/valid-string", "2013-02-05T06:00:00Z", None, TimePrecision.MORNING),
        (
            "duration-unit-value/positive-value",
            "2013-02-05T07:25:00Z",
            "2013-02-05T15:01:00Z",  # 7.6 h
            None,
        ),
        ("duration-unit-value/zero-value", "2013-02-05T07:25:00Z", None, None),
    ],
)
def test_every_time_frame_the_omh_test_data_passes_is_taken_and_placed(
    sample: str, start: str, steps_end: str | None, precision: TimePrecision | None
) -> None:
    frame = TIME_FRAMES[sample]
    for name, end in (("body-weight", None), ("step-count", steps_end)):
        outcome = triaged(candidate(framed(name, frame)))
        measurement = outcome.measurement
        assert measurement is not None, (name, outcome.errors)
        assert measurement.effective_time == at(start), name
        assert measurement.effective_end == at(end), name
        assert measurement.effective_precision == precision, name


@pytest.mark.parametrize(
    ("sample", "text"),
    [
        ("time-frame/empty-document", "needs date_time or time_interval"),
        (
            "time-frame/time-interval-and-date-time",
            "gives both date_time and time_interval: omh:time-frame is one of them",
        ),
        ("time-interval/duration-only", "is none of start + end, start + duration"),
        ("time-interval/empty-document", "is none of start + end, start + duration"),
        ("time-interval/end-time-only", "is none of start + end, start + duration"),
        ("time-interval/part-of-day-only", "is none of start + end, start + duration"),
        ("date-time/date-only", "is a date alone: omh:date-time is an RFC 3339 date-time"),
        ("date-time/date-time-without-timezone", "has no timezone offset"),
        ("date-time/empty-string", "is not an RFC 3339 date-time"),
        ("date-time/invalid-string", "is not an RFC 3339 date-time"),
        ("date-time/time-only", "is not an RFC 3339 date-time"),
        ("part-of-day/empty-string", "is none of omh:part-of-day's morning, afternoon, evening"),
        ("part-of-day/invalid-string", "is none of omh:part-of-day's"),
        ("part-of-day/uppercase-string", "'MORNING' is none of omh:part-of-day's"),
        ("duration-unit-value/empty-document", "duration must be {value, unit}"),
        ("duration-unit-value/invalid-unit", "duration unit 'foo' is not taken"),
        ("duration-unit-value/unit-only", "duration must be {value, unit}"),
        ("duration-unit-value/value-only", "duration unit None is not taken"),
    ],
)
def test_every_time_frame_the_omh_test_data_fails_is_refused_with_its_reason(
    sample: str, text: str
) -> None:
    item = candidate(framed("body-weight", REFUSED_TIME_FRAMES[sample]))
    outcome = triaged(item)
    [err] = relocate(outcome.errors, item)
    assert err["pointer"].startswith("/0/body/effective_time_frame")
    assert text in err["detail"]
    assert outcome.reason == "invalid"


def test_a_time_interval_of_two_shapes_at_once_is_refused_as_the_schema_does() -> None:
    frame = {
        "time_interval": {
            "start_date_time": "2016-02-05T06:25:00Z",
            "end_date_time": "2016-02-05T07:25:00Z",
            "duration": {"value": 1, "unit": "h"},
        }
    }
    [err] = candidate(framed("step-count", frame)).candidate.errors
    assert err["pointer"] == "/0/body/effective_time_frame/time_interval"
    assert "gives start_date_time + end_date_time and start_date_time + duration" in err["detail"]
    assert "exactly one of" in err["detail"] and "(oneOf)" in err["detail"]


def test_an_interval_with_a_start_only_is_taken_at_its_start() -> None:
    """test-data/omh/time-interval/1.0/shouldFail/start-time-only.json: the schema wants an
    end, but the start alone still says when; it is taken as an instant, as before."""
    frame = {"time_interval": {"start_date_time": "2013-02-05T07:25:00Z"}}
    outcome = triaged(candidate(framed("body-weight", frame)))
    assert outcome.measurement is not None, outcome.errors
    assert outcome.measurement.effective_time == datetime(2013, 2, 5, 7, 25, tzinfo=UTC)
    assert outcome.measurement.effective_end is None


@pytest.mark.parametrize(
    ("part", "hour"), [("night", 0), ("morning", 6), ("afternoon", 12), ("evening", 18)]
)
def test_a_date_and_part_of_day_is_the_start_of_that_quarter_of_the_utc_day(
    part: str, hour: int
) -> None:
    frame = {"time_interval": {"date": "2013-02-05", "part_of_day": part}}
    item = candidate(framed("body-weight", frame))
    reading = item.candidate.reading
    assert reading is not None
    assert reading["effective_time"] == datetime(2013, 2, 5, hour, tzinfo=UTC)
    assert reading["effective_precision"] == part
    where = "/0/body/effective_time_frame/time_interval"
    assert item.elements["effective_time"] == f"{where}/date"
    assert item.elements["effective_precision"] == f"{where}/part_of_day"


def test_a_night_of_sleep_given_as_a_date_and_part_of_day_is_an_episode() -> None:
    frame = {"time_interval": {"date": "2016-02-05", "part_of_day": "night"}}
    body = sample_with("sleep-episode", effective_time_frame=frame)
    outcome = triaged(candidate(data_point("sleep-episode", body)))
    measurement = outcome.measurement
    assert measurement is not None, outcome.errors
    assert (measurement.effective_time, measurement.effective_end) == (
        datetime(2016, 2, 5, tzinfo=UTC),
        None,
    )
    assert measurement.effective_precision is TimePrecision.NIGHT


def test_a_part_of_day_needs_a_real_date() -> None:
    frame = {"time_interval": {"date": "2013-02-30", "part_of_day": "morning"}}
    [err] = candidate(framed("body-weight", frame)).candidate.errors
    assert err["pointer"] == "/0/body/effective_time_frame/time_interval/date"
    assert "not an RFC 3339 full-date" in err["detail"]


@pytest.mark.parametrize(
    ("duration", "start"),
    [
        ({"value": 1, "unit": "Mo"}, datetime(2013, 1, 5, 21, 5, tzinfo=UTC)),  # 30.4375 d
        ({"value": 1, "unit": "yr"}, datetime(2012, 2, 6, 1, 35, tzinfo=UTC)),  # 365.25 d
        ({"value": 2, "unit": "wk"}, datetime(2013, 1, 22, 7, 35, tzinfo=UTC)),
    ],
)
def test_every_duration_unit_of_the_schema_is_taken(
    duration: dict[str, Any], start: datetime
) -> None:
    frame = {"time_interval": {"end_date_time": "2013-02-05T07:35:00Z", "duration": duration}}
    reading = candidate(framed("body-weight", frame)).candidate.reading
    assert reading is not None
    assert reading["effective_time"] == start


def test_a_leap_second_is_the_next_second() -> None:
    frame = {"date_time": "2016-12-31T23:59:60Z"}
    reading = candidate(framed("body-weight", frame)).candidate.reading
    assert reading is not None
    assert reading["effective_time"] == datetime(2017, 1, 1, tzinfo=UTC)
