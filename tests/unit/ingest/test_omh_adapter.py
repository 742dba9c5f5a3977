"""Open mHealth data points to candidates: schemas, units, time frames, patient, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.adapters.locations import Located, relocate
from ingest.adapters.omh import data_point_candidate, data_points
from ingest.intake import AllowAll, ItemOutcome, triage
from tests.unit.ingest.omh_documents import OTHER_SAMPLES, SAMPLES, data_point, sample_with


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
