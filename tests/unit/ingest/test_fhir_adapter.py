"""FHIR R4 Observations and Bundles to candidates: codes, units, subject, time, ids, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.adapters.fhir import FhirDocumentError, read_document
from ingest.adapters.locations import Located, relocate
from ingest.intake import AllowAll, triage
from pghd.contracts import ID_PATTERN
from tests.clock import ANCHOR
from tests.unit.ingest.fhir_documents import (
    blood_pressure,
    body_temperature_f,
    bundle,
    glucose_mmol,
    heart_rate,
    loinc,
    observation,
    over,
    sat_o2,
    sleep_duration,
    steps,
    weight_lb,
)


def read(document: Any, *, max_entries: int = 10) -> list[Located]:
    return list(read_document(document, source="acme", max_entries=max_entries).items)


def only(document: Any) -> Located:
    [item] = read(document)
    return item


def errors_of(item: Located) -> list[tuple[str, str]]:
    return [(e["pointer"], e["detail"]) for e in item.candidate.errors]


@pytest.mark.parametrize(
    ("document", "metric", "fields"),
    [
        (heart_rate(44), "heart_rate", {"value": 44.0, "unit": "/min"}),
        (body_temperature_f(98.6), "body_temperature", {"value": 98.6, "unit": "[degF]"}),
        (sat_o2(95), "spo2", {"value": 95.0, "unit": "%"}),
        (glucose_mmol(6.3), "blood_glucose", {"value": 6.3, "unit": "mmol/L"}),
        (weight_lb(185), "weight", {"value": 185.0, "unit": "[lb_av]"}),
        (blood_pressure(107, 60), "blood_pressure", {"systolic": 107.0, "diastolic": 60.0}),
    ],
)
def test_vital_signs_observations_become_readings(
    document: dict[str, Any], metric: str, fields: dict[str, Any]
) -> None:
    reading = only(document).candidate.reading
    assert reading is not None
    assert reading["metric"] == metric
    assert reading["patient_id"] == "example"
    assert reading["effective_time"] == datetime.fromisoformat(document["effectiveDateTime"])
    assert {k: reading[k] for k in fields} == fields


def test_every_vital_signs_code_of_the_brief_is_mapped() -> None:
    codes = {
        "8867-4": "heart_rate",
        "9279-1": "respiratory_rate",
        "2708-6": "spo2",
        "59408-5": "spo2",
        "8310-5": "body_temperature",
        "29463-7": "weight",
        "2339-0": "blood_glucose",
        "15074-8": "blood_glucose",
        "55423-8": "steps",
    }
    for code, metric in codes.items():
        doc = observation(
            {"coding": [{"system": "http://loinc.org", "code": code}]},
            valueQuantity={"value": 1, "unit": "x"},
        )
        reading = only(doc).candidate.reading
        assert reading is not None and reading["metric"] == metric, code


def test_unit_falls_back_to_unit_when_code_is_not_ucum() -> None:
    doc = heart_rate(70, valueQuantity={"value": 70, "unit": "bpm"})
    item = only(doc)
    assert item.candidate.reading is not None and item.candidate.reading["unit"] == "bpm"
    assert item.elements["unit"] == "Observation.valueQuantity.unit"


def test_effective_period_start_is_the_time() -> None:
    doc = blood_pressure()
    start = doc.pop("effectiveDateTime")
    doc["effectivePeriod"] = {"start": start, "end": start}
    item = only(doc)
    assert item.candidate.reading is not None
    assert item.candidate.reading["effective_time"] == datetime.fromisoformat(start)
    assert item.elements["effective_time"] == "Observation.effectivePeriod.start"
    assert "effective_end" not in item.candidate.reading  # an end that is the start: no span


def test_a_step_count_over_a_period_keeps_its_end() -> None:
    start, end = ANCHOR - timedelta(hours=3), ANCHOR - timedelta(hours=2)
    item = only(steps(1200, **over(start, end)))
    reading = item.candidate.reading
    assert reading is not None
    assert (reading["effective_time"], reading["effective_end"]) == (start, end)
    assert item.elements["effective_end"] == "Observation.effectivePeriod.end"
    [outcome] = triage([item.candidate], source="acme", received_at=ANCHOR, registry=AllowAll())
    assert outcome.measurement is not None, outcome.errors
    assert (outcome.measurement.effective_time, outcome.measurement.effective_end) == (start, end)
    assert (outcome.measurement.metric.value, outcome.measurement.value) == ("steps", 1200)


def test_a_night_of_sleep_is_stamped_at_its_start_with_its_end() -> None:
    start, end = ANCHOR - timedelta(hours=14), ANCHOR - timedelta(hours=6)
    doc = sleep_duration(7.25, **over(start, end))
    [outcome] = triage(
        [only(doc).candidate], source="acme", received_at=ANCHOR, registry=AllowAll()
    )
    assert outcome.measurement is not None, outcome.errors
    assert outcome.measurement.value == 7.25
    assert (outcome.measurement.effective_time, outcome.measurement.effective_end) == (start, end)


@pytest.mark.parametrize(
    ("document", "why"),
    [
        (steps(**over(ANCHOR, ANCHOR)), "an end that is its start: an instant"),
        (steps(**over(ANCHOR, ANCHOR - timedelta(minutes=5))), "an end before the start"),
        (steps(**over(ANCHOR, ANCHOR + timedelta(hours=30))), "longer than 26 hours"),
        (heart_rate(**over(ANCHOR, ANCHOR + timedelta(minutes=1))), "an instant metric"),
        (
            steps(when=None, effectivePeriod={"start": ANCHOR.isoformat(), "end": "2026-11-25"}),
            "an end that is a date, not an instant",
        ),
        (steps(when=None, effectivePeriod={"start": ANCHOR.isoformat()}), "no end"),
    ],
)
def test_a_period_end_pghd_does_not_take_leaves_the_reading_at_its_start(
    document: dict[str, Any], why: str
) -> None:
    item = only(document)
    reading = item.candidate.reading
    assert reading is not None, item.candidate.errors
    assert reading["effective_time"] == ANCHOR, why
    assert "effective_end" not in reading and "effective_end" not in item.elements, why


def test_a_period_ending_in_the_future_is_refused_at_its_end_element() -> None:
    item = only(steps(**over(ANCHOR - timedelta(hours=1), ANCHOR + timedelta(hours=1))))
    [outcome] = triage([item.candidate], source="acme", received_at=ANCHOR, registry=AllowAll())
    [err] = relocate(outcome.errors, item)
    assert outcome.reason == "time"
    assert err["pointer"] == "Observation.effectivePeriod.end"
    assert "in the future" in err["detail"]


def test_event_id_is_stable_fits_the_pattern_and_prefers_the_identifier() -> None:
    import re

    first, again = only(blood_pressure()), only(blood_pressure(systolic=99))
    assert first.candidate.reading is not None and again.candidate.reading is not None
    event = first.candidate.reading["event_id"]
    assert re.match(ID_PATTERN, event)
    assert event == again.candidate.reading["event_id"]  # same identifier, same event
    assert first.elements["event_id"] == "Observation.identifier[0]"

    by_id = only(heart_rate(id_="hr-1")).candidate.reading
    other_patient = only(heart_rate(id_="hr-1", patient="other")).candidate.reading
    assert by_id is not None and other_patient is not None
    assert by_id["event_id"] != other_patient["event_id"]  # an id is only the sender's own
    assert "event_id" not in (only(heart_rate(id_=None)).candidate.reading or {})


@pytest.mark.parametrize(
    ("document", "pointer", "text"),
    [
        (
            observation(
                {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
                valueQuantity={"value": 1, "unit": "x"},
            ),
            "Observation.code",
            "no LOINC code pghd takes",
        ),
        (heart_rate(valueQuantity={"value": 70}), "Observation.valueQuantity.code", "no unit"),
        (heart_rate(status="preliminary"), "Observation.status", "only final, amended"),
        (heart_rate(when="2026-11-25T08:00:00"), "Observation.effectiveDateTime", "timezone"),
        (heart_rate(when="2026-11-25T08:00+01:00"), "Observation.effectiveDateTime", "seconds"),
        (
            heart_rate(subject={"reference": "Group/102"}),
            "Observation.subject.reference",
            "not a Patient reference",
        ),
        (heart_rate(valueQuantity={"value": "fast"}), "Observation.valueQuantity.value", ""),
        (heart_rate(colour="red"), "Observation.colour", "unknown element"),
    ],
)
def test_bad_observations_name_the_element(
    document: dict[str, Any], pointer: str, text: str
) -> None:
    item = only(document)
    assert item.candidate.reading is None
    assert any(p == pointer and text in d for p, d in errors_of(item)), errors_of(item)


def test_missing_subject_is_required() -> None:
    doc = heart_rate()
    del doc["subject"]
    item = only(doc)
    assert errors_of(item) == [
        ("Observation.subject", "no subject: the patient must be given as Patient/{id}")
    ]
    assert item.candidate.errors[0]["code"] == "required"


def test_wrong_status_is_its_own_refusal_reason() -> None:
    assert only(heart_rate(status="entered-in-error")).candidate.reason == "status"
    assert only(observation(loinc(("0000-0", "?")))).candidate.reason == "unsupported"


def test_bundle_entries_are_located_by_fhirpath() -> None:
    items = read(bundle("batch", heart_rate(), heart_rate(status="registered"), sat_o2()))
    assert [i.candidate.pointer for i in items] == [
        "Bundle.entry[0].resource",
        "Bundle.entry[1].resource",
        "Bundle.entry[2].resource",
    ]
    assert errors_of(items[1])[0][0] == "Bundle.entry[1].resource.status"
    assert items[2].elements["unit"] == "Bundle.entry[2].resource.valueQuantity.code"


def test_unit_refused_by_triage_points_at_the_fhir_element() -> None:
    doc = heart_rate(
        valueQuantity={"value": 70, "system": "http://unitsofmeasure.org", "code": "Hz"}
    )
    item = read(bundle("collection", heart_rate(), doc))[1]
    [outcome] = triage(
        [item.candidate], source="acme", received_at=datetime.now(UTC), registry=AllowAll()
    )
    [err] = relocate(outcome.errors, item)
    assert outcome.reason == "unit"
    assert err["pointer"] == "Bundle.entry[1].resource.valueQuantity.code"
    assert "'Hz' is not accepted for heart_rate" in err["detail"]


def test_batch_entry_without_request_or_with_other_resource_is_refused() -> None:
    doc = bundle("transaction", heart_rate(), heart_rate(), {"resourceType": "Patient"})
    del doc["entry"][0]["request"]
    doc["entry"][1]["request"] = {"method": "DELETE", "url": "Observation/1"}
    items = read(doc)
    assert errors_of(items[0])[0][0] == "Bundle.entry[0].request"
    assert "only create Observations" in errors_of(items[1])[0][1]
    assert errors_of(items[2]) == [
        (
            "Bundle.entry[2].resource",
            "the resource is a 'Patient'; only Observation resources are taken",
        )
    ]


@pytest.mark.parametrize(
    ("document", "text"),
    [
        ({"resourceType": "Patient"}, "resourceType is 'Patient'"),
        ({**bundle("searchset", heart_rate())}, "Bundle.type is 'searchset'"),
        ({"resourceType": "Bundle", "type": "batch", "entry": []}, "no entries"),
        ([heart_rate()], "must be a FHIR resource"),
    ],
)
def test_documents_that_are_no_observation_or_taken_bundle_are_refused_whole(
    document: Any, text: str
) -> None:
    with pytest.raises(FhirDocumentError, match=text):
        read(document)


def test_more_entries_than_the_limit_is_too_large() -> None:
    with pytest.raises(FhirDocumentError) as caught:
        read(bundle("batch", *[heart_rate()] * 3), max_entries=2)
    assert caught.value.too_large
