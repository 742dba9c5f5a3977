"""FHIR R4 times as the specification allows them: its own examples, every dateTime shape
(R4 datatypes: ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, or a time to the second with an
offset), the placement rule (a date is the start of its UTC day, kept as
``effective_precision``) and the refusals the specification makes, with its reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ingest.adapters.fhir import read_document
from ingest.adapters.locations import Located, relocate
from ingest.intake import AllowAll, ItemOutcome, triage
from pghd.contracts import TimePrecision
from tests.clock import ANCHOR
from tests.unit.ingest.fhir_documents import (
    bundle,
    glucose_mmol,
    heart_rate,
    observation,
    steps,
    weight_lb,
)
from tests.unit.ingest.fhir_spec_examples import EXAMPLES, VITAL_SIGNS, example

DAY = (ANCHOR - timedelta(days=1)).date()
"""The date the examples are moved to: its start (UTC) is 36 hours before ANCHOR."""
START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)


def items(document: Any) -> list[Located]:
    return list(read_document(document, source="acme", max_entries=10).items)


def judged(item: Located, *, received_at: datetime = ANCHOR) -> ItemOutcome:
    [outcome] = triage(
        [item.candidate], source="acme", received_at=received_at, registry=AllowAll()
    )
    return outcome


def taken(document: dict[str, Any], **kw: Any) -> ItemOutcome:
    [item] = items(document)
    outcome = judged(item, **kw)
    assert outcome.measurement is not None, relocate(outcome.errors, item)
    return outcome


def refusal(document: dict[str, Any]) -> list[tuple[str, str]]:
    [item] = items(document)
    assert item.candidate.reading is None, item.candidate.reading
    return [(e["pointer"], e["detail"]) for e in item.candidate.errors]


@pytest.mark.parametrize(
    ("name", "metric", "values", "when", "precision"),
    [
        ("heart-rate", "heart_rate", {"value": 44}, START, TimePrecision.DAY),
        ("body-temperature", "body_temperature", {"value": 36.5}, START, TimePrecision.DAY),
        (
            "blood-pressure",
            "blood_pressure",
            {"components": {"systolic": 107, "diastolic": 60}},
            START,
            TimePrecision.DAY,
        ),
        # 09:30:10+01:00 of the day: an instant
        ("satO2", "spo2", {"value": 95}, START + timedelta(hours=8, seconds=1810), None),
        ("respiratory-rate", "respiratory_rate", {"value": 26}, START, TimePrecision.DAY),
        ("body-weight", "weight", {"value": 83.9146}, START, TimePrecision.DAY),  # 185 [lb_av]
        ("glucose", "blood_glucose", {}, START + timedelta(hours=8, seconds=1810), None),
    ],
)
def test_the_specifications_examples_are_taken_as_published(
    name: str,
    metric: str,
    values: dict[str, Any],
    when: datetime,
    precision: TimePrecision | None,
) -> None:
    measurement = taken(example(name, patient="p-spec", day=DAY)).measurement
    assert measurement is not None
    assert (measurement.metric.value, measurement.patient_id) == (metric, "p-spec")
    assert measurement.model_dump(include=set(values)) == values
    assert (measurement.effective_time, measurement.effective_precision) == (when, precision)
    assert measurement.effective_end is None


def test_the_four_vital_signs_examples_are_taken_together_in_a_batch_bundle() -> None:
    documents = [example(name, patient="p-spec", day=DAY) for name in VITAL_SIGNS]
    found = items(bundle("batch", *documents))
    outcomes = triage(
        [i.candidate for i in found], source="acme", received_at=ANCHOR, registry=AllowAll()
    )
    assert [o.errors for o in outcomes] == [[]] * 4
    assert [o.measurement.metric.value for o in outcomes if o.measurement] == [
        "heart_rate",
        "body_temperature",
        "blood_pressure",
        "spo2",
    ]
    day_of = found[0].elements
    assert day_of["effective_precision"] == "Bundle.entry[0].resource.effectiveDateTime"


@pytest.mark.parametrize(
    ("when", "placed", "precision"),
    [
        (f"{DAY.year}", datetime(DAY.year, 1, 1, tzinfo=UTC), TimePrecision.YEAR),
        (f"{DAY:%Y-%m}", datetime(DAY.year, DAY.month, 1, tzinfo=UTC), TimePrecision.MONTH),
        (DAY.isoformat(), START, TimePrecision.DAY),
        (f"{DAY}T10:15:30.123+02:00", START + timedelta(hours=8, minutes=15, seconds=30.123), None),
        (f"{DAY}T10:15:30-00:00", START + timedelta(hours=10, minutes=15, seconds=30), None),
        # a leap second (the regex allows :60; readers "SHOULD accept" it): the next second
        (f"{DAY}T23:59:60Z", START + timedelta(days=1), None),
    ],
)
def test_every_shape_of_an_r4_date_time_is_placed_by_the_rule(
    when: str, placed: datetime, precision: TimePrecision | None
) -> None:
    item = items(glucose_mmol(when=when))[0]
    reading = item.candidate.reading
    assert reading is not None, item.candidate.errors
    assert reading["effective_time"] == placed
    assert reading.get("effective_precision") == (precision and precision.value)
    measurement = judged(item).measurement
    assert measurement is not None
    assert (measurement.effective_time, measurement.effective_precision) == (placed, precision)


@pytest.mark.parametrize("when", [f"{DAY.year}", f"{DAY:%Y-%m}"])
def test_a_vital_sign_known_only_to_the_month_is_refused_as_the_profile_does(when: str) -> None:
    [(pointer, detail)] = refusal(heart_rate(when=when))
    assert pointer == "Observation.effectiveDateTime"
    assert "vital signs profile (vs-1)" in detail and "precise to the day" in detail
    assert refusal(weight_lb(when=when))  # body weight is a vital sign too


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (f"{DAY}T08:00+01:00", "has no seconds: FHIR R4 requires them"),
        (f"{DAY}T08:00:00", "a time zone SHALL be populated"),
        (f"{DAY}T24:00:00Z", "the time 24:00 is not allowed"),
        (f"{DAY}Z", "a FHIR date alone SHALL have no time zone"),
        (f"{DAY.year}-02-30", "FHIR dates SHALL be valid dates"),
        (f"{DAY}T08:00:00+15:00", "within ±14:00"),
        (f"{DAY:%d/%m/%Y}", "is not a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD"),
    ],
)
def test_what_the_r4_date_time_refuses_is_refused_with_the_specifications_reason(
    when: str, reason: str
) -> None:
    [(pointer, detail)] = refusal(heart_rate(when=when))
    assert pointer == "Observation.effectiveDateTime"
    assert reason in detail and repr(when) in detail


def test_an_instant_must_have_its_seconds_and_offset() -> None:
    doc = heart_rate(when=None, effectiveInstant=DAY.isoformat())
    [(pointer, detail)] = refusal(doc)
    assert pointer == "Observation.effectiveInstant"
    assert "SHALL be given at least to the second" in detail


def test_a_period_from_a_date_starts_that_day_and_a_date_is_no_end() -> None:
    only_dates = steps(
        when=None, effectivePeriod={"start": DAY.isoformat(), "end": DAY.isoformat()}
    )
    item = items(only_dates)[0]
    reading = item.candidate.reading
    assert reading is not None
    assert (reading["effective_time"], reading["effective_precision"]) == (START, "day")
    assert "effective_end" not in reading
    assert item.elements["effective_precision"] == "Observation.effectivePeriod.start"
    until_six = steps(
        when=None, effectivePeriod={"start": DAY.isoformat(), "end": f"{DAY}T06:00:00Z"}
    )
    measurement = taken(until_six).measurement
    assert measurement is not None
    assert (measurement.effective_time, measurement.effective_end) == (
        START,
        START + timedelta(hours=6),
    )
    assert measurement.effective_precision is TimePrecision.DAY


@pytest.mark.parametrize(
    ("day", "taken_"),
    [
        (date(2026, 11, 25), True),  # today in UTC
        (date(2026, 11, 26), True),  # already today from UTC+13 (New Zealand in summer)
        (date(2026, 11, 27), False),  # begun nowhere yet
    ],
)
def test_a_day_is_in_the_future_only_when_it_has_begun_in_no_time_zone(
    day: date, taken_: bool
) -> None:
    received = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    item = items(weight_lb(when=day.isoformat()))[0]
    outcome = judged(item, received_at=received)
    assert outcome.accepted is taken_
    if not taken_:
        [err] = relocate(outcome.errors, item)
        assert outcome.reason == "time"
        assert err["pointer"] == "Observation.effectiveDateTime"
        assert "a day that has begun in no time zone yet" in err["detail"]


def test_a_time_with_its_seconds_and_offset_is_an_instant_as_before() -> None:
    when = ANCHOR - timedelta(hours=2)
    measurement = taken(heart_rate(when=when.isoformat())).measurement
    assert measurement is not None
    assert (measurement.effective_time, measurement.effective_precision) == (when, None)
    assert "effective_precision" not in measurement.model_dump(exclude_none=True)


def test_effective_timing_is_named_as_not_taken() -> None:
    doc = observation(
        {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        when=None,
        effectiveTiming={"event": [START.isoformat()]},
        valueQuantity={"value": 60, "unit": "/min"},
    )
    [(pointer, detail)] = refusal(doc)
    assert pointer == "Observation.effectiveTiming"
    assert "not taken" in detail


def test_every_example_file_is_listed() -> None:
    assert len(EXAMPLES) == len(set(EXAMPLES.values())) == 7
