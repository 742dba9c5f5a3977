"""Terra and Junction payloads (shaped as their docs show) to canonical measurements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.adapters import junction, terra
from ingest.adapters.vendor_samples import Extraction, PayloadError
from ingest.intake import ItemOutcome, triage
from pghd.catalogue import Metric
from pghd.contracts import Measurement
from tests.webhook_payloads import (
    junction_event,
    junction_sample,
    terra_body,
    terra_daily,
    terra_sleep,
)

START = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
RECEIVED = START + timedelta(days=1)


class Links:
    """A registry linking vendor accounts to patients; consent for everything linked."""

    def __init__(self, links: dict[tuple[str, str], str]) -> None:
        self.links = links

    def patient_for(self, *, source: str, account: str) -> str | None:
        return self.links.get((source, account))

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        return None

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        linked = any(s == source and p == patient_id for (s, _), p in self.links.items())
        return None if linked else f"{source} is not linked to {patient_id}"


def run(extraction: Extraction, source: str, account: str) -> list[ItemOutcome]:
    registry = Links({(source, account): "patient-007"})
    return triage(extraction.candidates, source=source, received_at=RECEIVED, registry=registry)


def accepted(outcomes: list[ItemOutcome]) -> list[Measurement]:
    bad = [o.errors for o in outcomes if o.measurement is None]
    assert not bad, bad
    return [o.measurement for o in outcomes if o.measurement is not None]


def by_metric(measurements: list[Measurement]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in measurements:
        out.setdefault(m.metric.value, []).append(m.components or m.value)
    return out


# Terra -----------------------------------------------------------------------------------


def test_terra_body_event_maps_every_supported_kind() -> None:
    extraction = terra.extract(terra_body("terra-user-1", START))
    assert (extraction.event, extraction.account) == ("body", "terra-user-1")
    measurements = accepted(run(extraction, "terra", "terra-user-1"))
    assert by_metric(measurements) == {
        "heart_rate": [72, 75],
        "hrv_sdnn": [48.5],
        "spo2": [97],
        "body_temperature": [36.8],
        "blood_glucose": [104],
        "resting_heart_rate": [58],
        "weight": [81.2],
        "blood_pressure": [{"systolic": 128, "diastolic": 84}],
    }
    assert all(m.patient_id == "patient-007" for m in measurements)
    assert all(m.source.vendor == "terra" and m.source.app == "WITHINGS" for m in measurements)
    hr = [m for m in measurements if m.metric is Metric.HEART_RATE]
    assert [m.effective_time for m in hr] == [
        START + timedelta(minutes=1),
        START + timedelta(minutes=2),
    ]
    resting = next(m for m in measurements if m.metric is Metric.RESTING_HEART_RATE)
    assert resting.effective_time == START and resting.context is not None


def test_terra_body_counts_what_pghd_does_not_store() -> None:
    extraction = terra.extract(terra_body("terra-user-1", START))
    assert extraction.ignored == {
        "body.heart_data.heart_rate_data.detailed.hrv_samples_rmssd": 1,
        "body.temperature_data.skin_temperature_samples": 1,
        "body.saturation_samples:type-muscle": 1,
    }


def test_terra_event_ids_are_stable_and_distinct() -> None:
    first = terra.extract(terra_body("terra-user-1", START))
    again = terra.extract(terra_body("terra-user-1", START))
    ids = [c.reading["event_id"] for c in first.candidates if c.reading]
    assert ids == [c.reading["event_id"] for c in again.candidates if c.reading]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("terra-") for i in ids)
    other_user = terra.extract(terra_body("terra-user-2", START))
    assert not set(ids) & {c.reading["event_id"] for c in other_user.candidates if c.reading}


def test_terra_daily_event_takes_the_day_total_of_steps_not_the_samples() -> None:
    extraction = terra.extract(terra_daily("terra-user-1", START))
    measurements = accepted(run(extraction, "terra", "terra-user-1"))
    assert by_metric(measurements) == {
        "heart_rate": [66],
        "spo2": [96],
        "resting_heart_rate": [61],
        "steps": [8421],
    }
    steps = next(m for m in measurements if m.metric is Metric.STEPS)
    assert steps.effective_time == START
    assert steps.effective_end is None  # when the push arrived is not known: nor is the end
    assert extraction.ignored["daily.distance_data.detailed.step_samples"] == 2
    assert extraction.ignored["daily.stress_data.samples"] == 1


@pytest.mark.parametrize(
    ("received", "end"),
    [
        (RECEIVED, START + timedelta(days=1)),  # the day is over: it ends at its end_time
        (START + timedelta(hours=9), START + timedelta(hours=9)),  # running: so far
    ],
)
def test_terra_daily_steps_cover_the_day_up_to_when_the_push_arrived(
    received: datetime, end: datetime
) -> None:
    extraction = terra.extract(terra_daily("terra-user-1", START), received_at=received)
    registry = Links({("terra", "terra-user-1"): "patient-007"})
    outcomes = triage(
        extraction.candidates, source="terra", received_at=received, registry=registry
    )
    steps = next(m for m in accepted(outcomes) if m.metric is Metric.STEPS)
    assert (steps.effective_time, steps.effective_end, steps.value) == (START, end, 8421)
    resting = next(m for m in accepted(outcomes) if m.metric is Metric.RESTING_HEART_RATE)
    assert resting.effective_end is None  # a level, not a count: an instant
    again = terra.extract(terra_daily("terra-user-1", START))
    assert [c.reading["event_id"] for c in extraction.candidates if c.reading] == [
        c.reading["event_id"] for c in again.candidates if c.reading
    ]  # ids do not depend on the end


def test_terra_sleep_event_marks_context_and_takes_time_asleep() -> None:
    extraction = terra.extract(terra_sleep("terra-user-1", START))
    measurements = accepted(run(extraction, "terra", "terra-user-1"))
    assert by_metric(measurements) == {
        "heart_rate": [54],
        "respiratory_rate": [14],
        "spo2": [95],
        "sleep_duration": [7.0],
    }
    assert {m.context.value for m in measurements if m.context} == {"sleep"}
    duration = next(m for m in measurements if m.metric is Metric.SLEEP_DURATION)
    assert duration.effective_time == START  # the session's start, not its end
    assert duration.effective_end == START + timedelta(minutes=480)
    assert all(m.effective_end is None for m in measurements if m is not duration)


def test_terra_sleep_longer_than_its_session_is_refused_at_the_end() -> None:
    event = terra_sleep("terra-user-1", START)
    event["data"][0]["sleep_durations_data"]["asleep"]["duration_asleep_state_seconds"] = 32400
    outcomes = run(terra.extract(event), "terra", "terra-user-1")  # 9 h asleep in 8 h
    [refused] = [o for o in outcomes if o.measurement is None]
    assert refused.reason == "time"
    assert refused.errors[0]["field"] == "effective_end"


def test_terra_activity_event_marks_activity_context() -> None:
    event = {
        "type": "activity",
        "user": {"user_id": "u-9", "provider": "POLAR"},
        "version": "2022-03-16",
        "data": [
            {
                "metadata": {"start_time": START.isoformat(), "end_time": START.isoformat()},
                "heart_rate_data": {
                    "detailed": {"hr_samples": [{"timestamp": START.isoformat(), "bpm": 141}]}
                },
            }
        ],
    }
    (m,) = accepted(run(terra.extract(event), "terra", "u-9"))
    assert (m.metric, m.value, m.context.value if m.context else None) == (
        Metric.HEART_RATE,
        141,
        "activity",
    )


def test_terra_events_without_health_data_are_ignored() -> None:
    auth = {"type": "auth", "status": "success", "user": {"user_id": "u-1"}, "version": "x"}
    extraction = terra.extract(auth)
    assert extraction.candidates == [] and extraction.ignored == {"event:auth": 1}


def test_terra_sample_without_offset_or_value_is_refused_with_pointer() -> None:
    event = terra_body("u-1", START)
    detailed = event["data"][0]["heart_data"]["heart_rate_data"]["detailed"]
    detailed["hr_samples"] = [
        {"timestamp": "2026-11-24T06:01:00", "bpm": 70},
        {"timestamp": START.isoformat()},
    ]
    outcomes = run(terra.extract(event), "terra", "u-1")
    bad = [o for o in outcomes if o.measurement is None]
    assert len(bad) == 2
    assert "timezone" in bad[0].errors[0]["detail"]
    pointer = "/data/0/heart_data/heart_rate_data/detailed/hr_samples/1/bpm"
    assert bad[1].errors == [{"pointer": pointer, "field": None, "detail": "is not a number"}]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "JSON object"),
        ({"type": "body", "data": []}, "user.user_id"),
        ({"type": "body", "user": {"user_id": "u"}}, '"data" array'),
    ],
)
def test_terra_wrong_shapes(document: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        terra.extract(document)


# Junction --------------------------------------------------------------------------------


def junction_run(event: dict[str, Any]) -> tuple[Extraction, list[Measurement]]:
    extraction = junction.extract(event)
    return extraction, accepted(run(extraction, "junction", "jn-user-1"))


@pytest.mark.parametrize(
    ("resource", "unit", "value", "metric", "stored"),
    [
        ("heartrate", "bpm", 72, Metric.HEART_RATE, 72),
        ("blood_oxygen", "%", 97, Metric.SPO2, 97),
        ("glucose", "mmol/L", 5.5, Metric.BLOOD_GLUCOSE, 99.088),
        ("glucose", "mg/dL", 101, Metric.BLOOD_GLUCOSE, 101),
        ("body_temperature", "°C", 37.2, Metric.BODY_TEMPERATURE, 37.2),
        ("weight", "kg", 70.5, Metric.WEIGHT, 70.5),
        ("respiratory_rate", "bpm", 15, Metric.RESPIRATORY_RATE, 15),
    ],
)
def test_junction_timeseries_resources(
    resource: str, unit: str, value: float, metric: Metric, stored: float
) -> None:
    sample = junction_sample(START, value, unit)
    extraction, (m,) = junction_run(junction_event(resource, "jn-user-1", [sample]))
    assert extraction.account == "jn-user-1"
    assert (m.metric, m.value, m.effective_time) == (metric, pytest.approx(stored), START)
    assert m.source.app == "fitbit"
    assert m.event_id.startswith("junction-")


def test_junction_blood_pressure_and_interval_steps() -> None:
    bp = {"timestamp": START.isoformat(), "systolic": 131, "diastolic": 86, "unit": "mmHg"}
    _, (m,) = junction_run(junction_event("blood_pressure", "jn-user-1", [bp]))
    assert m.components == {"systolic": 131, "diastolic": 86}
    steps = junction_sample(
        START, 512, "count", start=START.isoformat(), end=(START + timedelta(hours=1)).isoformat()
    )
    _, (s,) = junction_run(junction_event("steps", "jn-user-1", [steps]))
    assert (s.metric, s.value, s.unit, s.effective_time) == (Metric.STEPS, 512, "{steps}", START)
    assert s.effective_end == START + timedelta(hours=1)


def test_junction_step_end_not_after_start_is_no_span_and_floating_time_shifts_both() -> None:
    instant = junction_sample(START, 40, "count", start=START.isoformat(), end=START.isoformat())
    _, (s,) = junction_run(junction_event("steps", "jn-user-1", [instant]))
    assert (s.effective_time, s.effective_end) == (START, None)
    # The floating-time providers send glucose, not steps, today; should one send an
    # interval, its end is on the same device clock as its start.
    local = junction_sample(  # device clock 06:00-06:15, written +00:00, device at UTC-5
        START,
        300,
        "count",
        start=START.isoformat(),
        end=(START + timedelta(minutes=15)).isoformat(),
        timezone_offset=-5 * 3600,
    )
    event = junction_event("steps", "jn-user-1", [local], provider="freestyle_libre")
    _, (f,) = junction_run(event)
    shifted = START + timedelta(hours=5)
    assert (f.effective_time, f.effective_end) == (shifted, shifted + timedelta(minutes=15))


def test_junction_event_ids_stable_per_sample_and_change_with_a_revised_value() -> None:
    def ids(value: float, action: str = "created") -> list[str]:
        event = junction_event(
            "heartrate", "jn-user-1", [junction_sample(START, value, "bpm")], action=action
        )
        return [c.reading["event_id"] for c in junction.extract(event).candidates if c.reading]

    assert ids(72) == ids(72) == ids(72, "updated")
    assert ids(72) != ids(73)


def test_junction_floating_time_providers_are_shifted_by_their_offset() -> None:
    local = junction_sample(START, 6.1, "mmol/L")  # device clock 06:00, written +00:00
    local["timezone_offset"] = -5 * 3600  # the device is at UTC-5
    event = junction_event("glucose", "jn-user-1", [local], provider="freestyle_libre")
    _, (m,) = junction_run(event)
    assert m.effective_time == START + timedelta(hours=5)
    del local["timezone_offset"]
    outcomes = run(junction.extract(event), "junction", "jn-user-1")
    assert outcomes[0].measurement is None
    assert "floating" in outcomes[0].errors[0]["detail"]


def test_junction_kinds_pghd_does_not_store_are_counted() -> None:
    hrv = junction_event("hrv", "jn-user-1", [junction_sample(START, 44, "rmssd")] * 3)
    extraction = junction.extract(hrv)
    assert extraction.candidates == [] and extraction.ignored == {"hrv": 3}
    note = {"event_type": "historical.data.heartrate.created", "data": {"user_id": "u"}}
    assert junction.extract(note).ignored == {"event:historical.data.heartrate.created": 1}
    connection = {"event_type": "provider.connection.created", "user_id": "u", "data": {}}
    assert junction.extract(connection).ignored == {"event:provider.connection.created": 1}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("x", "JSON object"),
        ({"event_type": "daily.data.heartrate.created", "data": {"data": []}}, "user_id"),
        ({"event_type": "daily.data.heartrate.created", "user_id": "u", "data": {}}, "data.data"),
    ],
)
def test_junction_wrong_shapes(document: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        junction.extract(document)
