"""The patient export's formats: FHIR R4 (validated with fhir.resources) and Open mHealth.

Each format is checked on its own terms and by the round trip the issue asks for, here
without servers: a stored reading, exported, then read by ingest's own adapter and triage
and turned into the store's points again, is the same reading (metric, time, interval,
values, unit, device). tests/integration/test_export.py does the same on real servers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.observation import Observation

from ingest.adapters.fhir import observation_candidate, read_document
from ingest.adapters.omh import data_point_candidate
from ingest.intake import AllowAll, triage
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Measurement, TimePrecision
from pghd.export import fhir, omh
from pghd.export.document import ExportFormat, export_chunks, json_array_chunks
from pghd.export.influx import MAX_SPAN, MIN_SPAN, next_span
from pghd.export.records import (
    StoredFinding,
    StoredReading,
    finding_of,
    format_time,
    readings_of,
)
from processors.points import anomaly_point, vital_point
from tests.clock import ANCHOR

T = TypeVar("T")
NOW = ANCHOR + timedelta(hours=3)
WHEN = ANCHOR - timedelta(hours=5)
PATIENT = "p-export"


def stored(
    metric: Metric,
    values: Mapping[str, float],
    *,
    when: datetime = WHEN,
    end: datetime | None = None,
    device: str | None = "watch-1",
    event_id: str = "ev-1",
    precision: TimePrecision | None = None,
) -> StoredReading:
    return StoredReading(
        patient_id=PATIENT,
        metric=metric,
        time=when,
        unit=CATALOGUE[metric].unit,
        values=dict(values),
        source="acme",
        event_id=event_id,
        device=device,
        end=end,
        precision=precision,
    )


HEART = stored(Metric.HEART_RATE, {"heart_rate": 72.0})
PRESSURE = stored(Metric.BLOOD_PRESSURE, {"systolic": 128.0, "diastolic": 84.0}, device=None)
STEPS = stored(Metric.STEPS, {"steps": 1200.0}, end=WHEN + timedelta(hours=1), event_id="ev-s")
SLEEP = stored(
    Metric.SLEEP_DURATION, {"sleep_duration": 7.25}, end=WHEN + timedelta(hours=8), device=None
)
STEPS_NO_END = stored(Metric.STEPS, {"steps": 80.0}, event_id="ev-s2")
TEMPERATURE = stored(Metric.BODY_TEMPERATURE, {"body_temperature": 37.0 + 1 / 3})
EVERY_METRIC = [
    stored(metric, {c.name: c.possible[0] + 1.5 for c in CATALOGUE[metric].channels})
    for metric in Metric
]
FINDING = StoredFinding(
    patient_id=PATIENT,
    anomaly_id="a" * 32,
    time=WHEN,
    metric=Metric.HEART_RATE,
    channel="heart_rate",
    detector="deviation",
    severity="critical",
    score=6.5,
    value=165.0,
    unit="/min",
    explanation="Heart rate 165 /min at rest is far above this patient's usual 70 /min.",
    episode_id="ep-1",
    phase="onset",
)
NEWS2_FINDING = StoredFinding(
    patient_id=PATIENT,
    anomaly_id="b" * 32,
    time=WHEN,
    metric=Metric.SPO2,
    channel="news2",
    detector="news2_aggregate",
    severity="warning",
    score=5.0,
    value=5.0,
    unit="{score}",
    explanation="NEWS2 5 (partial).",
)


def measurement_of(candidate: Any, source: str = "elsewhere") -> Measurement:
    [outcome] = triage(
        [candidate], source=source, received_at=NOW, registry=AllowAll(), max_age=None
    )
    assert outcome.measurement is not None, outcome.errors
    return outcome.measurement


def stored_again(measurement: Measurement) -> StoredReading:
    """The reading as the store would give it back: its points, pivoted, folded."""
    rows = []
    for channel, value in measurement.channels():
        point = vital_point(measurement, channel=channel, value=value)
        rows.append({**point.tags, **point.fields, "_time": point.time})
    [again] = readings_of(rows)
    return again


def same_reading(a: StoredReading, b: StoredReading) -> None:
    assert (a.patient_id, a.metric, a.time, a.end, a.unit, a.precision) == (
        b.patient_id,
        b.metric,
        b.time,
        b.end,
        b.unit,
        b.precision,
    )
    assert a.values == pytest.approx(b.values)


# --- FHIR -------------------------------------------------------------------------------


def test_a_heart_rate_is_a_vital_signs_observation_with_loinc_and_ucum() -> None:
    resource = fhir.observation(HEART)
    Observation.model_validate(resource)
    assert resource["status"] == "final"
    assert resource["category"][0]["coding"][0]["code"] == "vital-signs"
    assert resource["code"]["coding"] == [{"system": "http://loinc.org", "code": "8867-4"}]
    assert resource["valueQuantity"] == {
        "value": 72.0,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert resource["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert resource["effectiveDateTime"] == format_time(WHEN)
    assert "effectivePeriod" not in resource
    assert resource["device"]["display"] == "watch-1"
    assert resource["identifier"] == [{"system": "urn:pghd:event:acme", "value": "ev-1"}]


def test_blood_pressure_is_the_panel_with_two_components() -> None:
    resource = fhir.observation(PRESSURE)
    Observation.model_validate(resource)
    assert resource["code"]["coding"][0]["code"] == "85354-9"
    assert "valueQuantity" not in resource and "device" not in resource
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in resource["component"]}
    assert components["8480-6"]["value"] == 128.0
    assert components["8462-4"]["value"] == 84.0
    assert {q["code"] for q in components.values()} == {"mm[Hg]"}


def test_blood_glucose_is_a_laboratory_observation_not_a_vital_sign() -> None:
    """The R4 vital-signs profile does not list glucose (2339-0)."""
    glucose = stored(Metric.BLOOD_GLUCOSE, {"blood_glucose": 99.0})
    resource = fhir.observation(glucose)
    Observation.model_validate(resource)
    assert resource["category"][0]["coding"][0]["code"] == "laboratory"


def test_an_interval_reading_keeps_its_period_and_is_an_activity() -> None:
    resource = fhir.observation(STEPS)
    Observation.model_validate(resource)
    assert resource["effectivePeriod"] == {
        "start": format_time(WHEN),
        "end": format_time(WHEN + timedelta(hours=1)),
    }
    assert "effectiveDateTime" not in resource
    assert resource["category"][0]["coding"][0]["code"] == "activity"
    assert fhir.observation(STEPS_NO_END)["effectiveDateTime"] == format_time(WHEN)


@pytest.mark.parametrize("reading", [*EVERY_METRIC, STEPS, SLEEP, STEPS_NO_END, TEMPERATURE])
def test_every_observation_is_taken_back_by_ingest_as_the_same_reading(
    reading: StoredReading,
) -> None:
    resource = fhir.observation(reading)
    Observation.model_validate(resource)
    located = observation_candidate(resource, base="Observation", source="elsewhere")
    again = stored_again(measurement_of(located.candidate))
    same_reading(again, reading)
    assert again.device == reading.device
    assert again.source == "elsewhere"  # whoever posts it back


def test_the_same_reading_gets_the_same_ids_and_distinct_readings_distinct_ones() -> None:
    assert fhir.observation(HEART)["id"] == fhir.observation(HEART)["id"]
    other = stored(Metric.HEART_RATE, {"heart_rate": 72.0}, device="watch-2")
    assert fhir.observation(other)["id"] != fhir.observation(HEART)["id"]
    entry = fhir.entry(fhir.observation(HEART))
    assert entry["fullUrl"].startswith("urn:uuid:")


def test_a_finding_is_a_detected_issue_with_its_severity_and_explanation() -> None:
    resource = fhir.detected_issue(FINDING)
    DetectedIssue.model_validate(resource)
    assert resource["severity"] == "high"
    assert resource["patient"] == {"reference": f"Patient/{PATIENT}"}
    assert resource["identifiedDateTime"] == format_time(WHEN)
    assert resource["detail"] == FINDING.explanation
    assert resource["code"]["coding"] == [{"system": "urn:pghd:detector", "code": "deviation"}]
    assert resource["evidence"][0]["code"][0]["coding"][0]["code"] == "8867-4"
    extensions = {e["url"].rsplit("-", 1)[-1]: e for e in resource["extension"]}
    assert extensions["value"]["valueQuantity"]["value"] == 165.0
    assert extensions["score"]["valueDecimal"] == 6.5
    assert extensions["episode"]["valueString"] == "ep-1"
    assert extensions["phase"]["valueCode"] == "onset"
    news2 = fhir.detected_issue(NEWS2_FINDING)
    DetectedIssue.model_validate(news2)
    assert news2["severity"] == "moderate"
    assert news2["evidence"][0]["code"][0] == {"text": "news2"}


async def _items(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


def document(
    format_: ExportFormat,
    readings: list[StoredReading],
    findings: list[StoredFinding],
    chunk_bytes: int = 64,
) -> tuple[Any, int]:
    async def collect() -> list[bytes]:
        chunks = export_chunks(
            format_,
            PATIENT,
            _items(readings),
            _items(findings),
            now=NOW,
            chunk_bytes=chunk_bytes,
        )
        return [chunk async for chunk in chunks]

    chunks = asyncio.run(collect())
    return orjson.loads(b"".join(chunks)), len(chunks)


def test_the_bundle_is_a_valid_collection_streamed_in_chunks() -> None:
    readings = [HEART, PRESSURE, STEPS, SLEEP]
    bundle, chunks = document(ExportFormat.FHIR, readings, [FINDING, NEWS2_FINDING])
    assert chunks > 1  # written as the items came, not at the end
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    assert bundle["timestamp"] == format_time(NOW)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Observation"] * 4 + ["DetectedIssue"] * 2
    assert len({e["fullUrl"] for e in bundle["entry"]}) == 6

    # Posted back, ingest takes every Observation and refuses the findings, entry by entry.
    posted = read_document(bundle, source="elsewhere", max_entries=100)
    outcomes = [item.candidate for item in posted.items]
    assert [c.reading is not None for c in outcomes] == [True] * 4 + [False] * 2
    assert {c.reason for c in outcomes[4:]} == {"unsupported"}


def test_an_empty_bundle_leaves_entry_out() -> None:
    bundle, _ = document(ExportFormat.FHIR, [], [])
    Bundle.model_validate(bundle)
    assert "entry" not in bundle and bundle["type"] == "collection"
    points, _ = document(ExportFormat.OMH, [], [])
    assert points == []


# --- Open mHealth ---------------------------------------------------------------------


def test_a_heart_rate_data_point_has_the_omh_header_and_body() -> None:
    point = omh.data_point(HEART, now=NOW)
    assert point["header"] == {
        "id": "ev-1",
        "creation_date_time": format_time(NOW),
        "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
        "user_id": PATIENT,
        "acquisition_provenance": {"source_name": "acme"},
    }
    assert point["body"] == {
        "heart_rate": {"value": 72.0, "unit": "beats/min"},
        "effective_time_frame": {"date_time": format_time(WHEN)},
    }
    bp = omh.data_point(PRESSURE, now=NOW)["body"]
    assert bp["systolic_blood_pressure"] == {"value": 128.0, "unit": "mmHg"}
    assert bp["diastolic_blood_pressure"] == {"value": 84.0, "unit": "mmHg"}
    steps = omh.data_point(STEPS, now=NOW)["body"]
    assert steps["effective_time_frame"] == {
        "time_interval": {
            "start_date_time": format_time(WHEN),
            "end_date_time": format_time(WHEN + timedelta(hours=1)),
        }
    }


TAKEN_BY_OMH_INGEST = [r for r in EVERY_METRIC if omh.SCHEMAS[r.metric].namespace == "omh"]


@pytest.mark.parametrize("reading", [*TAKEN_BY_OMH_INGEST, STEPS, SLEEP, STEPS_NO_END, TEMPERATURE])
def test_every_omh_data_point_is_taken_back_as_the_same_reading(reading: StoredReading) -> None:
    point = omh.data_point(reading, now=NOW)
    located = data_point_candidate(point, pointer="/0", patient_id=None)
    measurement = measurement_of(located.candidate)
    assert measurement.event_id == reading.event_id  # header.id is kept
    again = stored_again(measurement)
    same_reading(again, reading)


def test_metrics_without_an_omh_schema_ingest_takes_are_refused_not_misread() -> None:
    for metric in (Metric.RESTING_HEART_RATE, Metric.HRV_SDNN):
        reading = next(r for r in EVERY_METRIC if r.metric is metric)
        located = data_point_candidate(
            omh.data_point(reading, now=NOW), pointer="", patient_id=None
        )
        assert located.candidate.reading is None and located.candidate.reason == "unsupported"


def test_findings_are_pghd_data_points_that_ingest_refuses() -> None:
    points, _ = document(ExportFormat.OMH, [HEART], [FINDING])
    assert len(points) == 2
    finding = points[1]
    assert finding["header"]["schema_id"] == {
        "namespace": "pghd",
        "name": "finding",
        "version": "1.0",
    }
    assert finding["header"]["id"] == FINDING.anomaly_id
    assert finding["body"]["severity"] == "critical"
    assert finding["body"]["value"] == {"value": 165.0, "unit": "/min"}
    assert finding["body"]["effective_time_frame"] == {"date_time": format_time(WHEN)}
    refused = data_point_candidate(finding, pointer="/1", patient_id=None).candidate
    assert refused.reading is None and refused.reason == "unsupported"


# --- rows to readings and findings ------------------------------------------------------


def row(series: str, value: float, **extra: Any) -> dict[str, Any]:
    metric = series.split(".")[0]
    base = {
        "_time": WHEN,
        "patient_id": PATIENT,
        "metric": metric,
        "channel": series,
        "source": "acme",
        "device": "unknown",
        "unit": CATALOGUE[Metric(metric)].unit,
        "value": value,
        "event_id": "ev-1",
    }
    return {**base, **extra}


def test_rows_fold_into_readings_channels_together() -> None:
    rows = [
        row("blood_pressure.diastolic", 84),
        row("blood_pressure.systolic", 128),
        row("blood_pressure.systolic", 130, event_id="ev-2"),  # its diastolic was refused
        row("heart_rate", 70, device="watch-1"),
        row("steps", 300, effective_end=format_time(WHEN + timedelta(minutes=30))),
        row("heart_rate", 71, metric="no_such_metric"),
        row("heart_rate", 5, channel="news2"),  # not a channel of a reading
    ]
    readings = list(readings_of(rows))
    assert [(r.metric, dict(r.values)) for r in readings] == [
        (Metric.BLOOD_PRESSURE, {"diastolic": 84.0, "systolic": 128.0}),
        (Metric.HEART_RATE, {"heart_rate": 70.0}),
        (Metric.STEPS, {"steps": 300.0}),
    ]
    assert readings[0].device is None and readings[1].device == "watch-1"
    assert readings[2].end == WHEN + timedelta(minutes=30)


def test_the_store_keeps_an_interval_reading_s_end() -> None:
    measurement = Measurement(
        event_id="ev-s",
        patient_id=PATIENT,
        metric=Metric.STEPS,
        value=1200,
        unit="{steps}",
        effective_time=WHEN,
        effective_end=WHEN + timedelta(hours=1),
        received_at=NOW,
        source={"vendor": "acme"},
    )
    point = vital_point(measurement, channel="steps", value=1200)
    assert point.fields["effective_end"] == format_time(WHEN + timedelta(hours=1))
    again = stored_again(measurement)
    assert (again.time, again.end) == (WHEN, WHEN + timedelta(hours=1))


def test_an_anomalies_row_is_a_finding_in_the_metric_s_unit() -> None:
    from pghd.contracts import Anomaly

    anomaly = Anomaly(
        anomaly_id="c" * 32,
        patient_id=PATIENT,
        metric=Metric.BODY_TEMPERATURE,
        channel="body_temperature",
        detector="news2",
        severity="warning",
        score=2,
        value=39.2,
        unit="Cel",
        observed_at=WHEN,
        detected_at=NOW,
        explanation="Temperature 39.2 Cel.",
        event_ids=["ev-1"],
        episode_id="ep-9",
        phase="update",
    )
    point = anomaly_point(anomaly)
    found = finding_of({**point.tags, **point.fields, "_time": point.time})
    assert found == StoredFinding(
        patient_id=PATIENT,
        anomaly_id="c" * 32,
        time=WHEN,
        metric=Metric.BODY_TEMPERATURE,
        channel="body_temperature",
        detector="news2",
        severity="warning",
        score=2.0,
        value=39.2,
        unit="Cel",
        explanation="Temperature 39.2 Cel.",
        episode_id="ep-9",
        phase="update",
    )
    assert finding_of({"metric": "heart_rate"}) is None


def test_windows_grow_when_sparse_and_shrink_when_dense() -> None:
    day = timedelta(days=1)
    assert next_span(day, 0, target_rows=5000) == 4 * day
    assert next_span(day, 50_000, target_rows=5000) == day / 4
    assert next_span(day, 2500, target_rows=5000) == 2 * day
    assert next_span(MAX_SPAN, 0, target_rows=5000) == MAX_SPAN
    assert next_span(MIN_SPAN, 10**9, target_rows=5000) == MIN_SPAN


def test_json_array_chunks_writes_every_item_once() -> None:
    async def collect() -> bytes:
        chunks = json_array_chunks(_items(range(100)), chunk_bytes=16)
        return b"".join([c async for c in chunks])

    assert orjson.loads(asyncio.run(collect())) == list(range(100))
    assert not math.isnan(FINDING.score)


# --- readings given as a date, a month, a year or a part of a day ------------------------

MIDNIGHT = WHEN.replace(hour=0, minute=0, second=0, microsecond=0)
WEIGHED_ON_A_DAY = stored(
    Metric.WEIGHT, {"weight": 71.5}, when=MIDNIGHT, precision=TimePrecision.DAY, event_id="ev-w"
)
# a vital sign wants the day at least (vs-1); a laboratory result may name a month or a year
GLUCOSE_IN_A_MONTH = stored(
    Metric.BLOOD_GLUCOSE,
    {"blood_glucose": 99.0},
    when=MIDNIGHT.replace(day=1),
    precision=TimePrecision.MONTH,
    event_id="ev-m",
)
GLUCOSE_IN_A_YEAR = stored(
    Metric.BLOOD_GLUCOSE,
    {"blood_glucose": 101.0},
    when=MIDNIGHT.replace(month=1, day=1),
    precision=TimePrecision.YEAR,
    event_id="ev-y",
)
MORNING_PRESSURE = stored(
    Metric.BLOOD_PRESSURE,
    {"systolic": 121.0, "diastolic": 79.0},
    when=MIDNIGHT.replace(hour=6),
    precision=TimePrecision.MORNING,
    event_id="ev-bp",
)


def test_the_store_keeps_a_reading_s_precision_and_the_export_reads_it_back() -> None:
    measurement = Measurement(
        event_id="ev-w",
        patient_id=PATIENT,
        metric=Metric.WEIGHT,
        value=71.5,
        unit="kg",
        effective_time=MIDNIGHT,
        effective_precision=TimePrecision.DAY,
        received_at=NOW,
        source={"vendor": "acme"},
    )
    point = vital_point(measurement, channel="weight", value=71.5)
    assert point.fields["effective_precision"] == "day"
    assert stored_again(measurement).precision is TimePrecision.DAY
    instant = measurement.model_copy(update={"effective_precision": None})
    assert "effective_precision" not in vital_point(instant, channel="weight", value=71.5).fields
    unknown = row("weight", 71.5, effective_precision="fortnight")
    assert next(iter(readings_of([unknown]))).precision is None  # read as an instant


@pytest.mark.parametrize(
    ("reading", "effective"),
    [
        (WEIGHED_ON_A_DAY, MIDNIGHT.strftime("%Y-%m-%d")),
        (GLUCOSE_IN_A_MONTH, MIDNIGHT.strftime("%Y-%m")),
        (GLUCOSE_IN_A_YEAR, MIDNIGHT.strftime("%Y")),
    ],
)
def test_a_dated_reading_is_exported_as_the_partial_date_and_taken_back_alike(
    reading: StoredReading, effective: str
) -> None:
    resource = fhir.observation(reading)
    Observation.model_validate(resource)
    assert resource["effectiveDateTime"] == effective
    located = observation_candidate(resource, base="Observation", source="elsewhere")
    same_reading(stored_again(measurement_of(located.candidate)), reading)


def test_a_part_of_day_is_a_six_hour_period_in_fhir_and_a_part_of_day_in_omh() -> None:
    resource = fhir.observation(MORNING_PRESSURE)
    Observation.model_validate(resource)
    assert resource["effectivePeriod"] == {
        "start": format_time(MIDNIGHT.replace(hour=6)),
        "end": format_time(MIDNIGHT.replace(hour=12)),
    }
    point = omh.data_point(MORNING_PRESSURE, now=NOW)
    assert point["body"]["effective_time_frame"] == {
        "time_interval": {"date": MIDNIGHT.date().isoformat(), "part_of_day": "morning"}
    }
    located = data_point_candidate(point, pointer="/0", patient_id=None)
    same_reading(stored_again(measurement_of(located.candidate)), MORNING_PRESSURE)


def test_a_dated_reading_in_omh_is_the_interval_it_names_and_keeps_its_time() -> None:
    point = omh.data_point(WEIGHED_ON_A_DAY, now=NOW)
    assert point["body"]["effective_time_frame"] == {
        "time_interval": {
            "start_date_time": format_time(MIDNIGHT),
            "end_date_time": format_time(MIDNIGHT + timedelta(days=1)),
        }
    }
    located = data_point_candidate(point, pointer="/0", patient_id=None)
    again = stored_again(measurement_of(located.candidate))
    assert (again.time, again.precision, again.values) == (MIDNIGHT, None, {"weight": 71.5})
