"""End to end on real servers: HTTP → ingest → Kafka → Faust → InfluxDB, anomalies, alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from deploy.local.harness import (
    Pipeline,
    heart_rate_series,
    new_patient,
    reading,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from pghd import topics
from tests.clock import ANCHOR
from tests.integration.sync import caught_up, settled_vitals

WARMUP = 10
NORMAL = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71]


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("pipeline")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, warmup=WARMUP
    ) as running:
        yield running


def test_readings_are_stored_in_canonical_units(pipeline: Pipeline) -> None:
    patient = new_patient()
    when = ANCHOR - timedelta(hours=1)
    response = pipeline.post(
        [
            reading(patient, 101.3, when, metric="body_temperature", unit="[degF]"),
            reading(patient, 5.5, when, metric="blood_glucose", unit="mmol/L"),
            {
                "patient_id": patient,
                "metric": "blood_pressure",
                "systolic": 128,
                "diastolic": 84,
                "unit": "mmHg",
                "effective_time": when.isoformat(),
            },
        ]
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3

    rows = settled_vitals(pipeline, patient)
    assert len(rows) == 4, rows
    by_channel = {row["channel"]: row for row in rows}
    assert by_channel["body_temperature"]["value"] == pytest.approx(38.5)
    assert by_channel["body_temperature"]["unit"] == "Cel"
    assert by_channel["blood_glucose"]["value"] == pytest.approx(99.088)
    assert by_channel["blood_glucose"]["unit"] == "mg/dL"
    assert by_channel["blood_pressure.systolic"]["value"] == 128
    assert by_channel["blood_pressure.diastolic"]["value"] == 84
    assert {row["metric"] for row in rows} == {
        "body_temperature",
        "blood_glucose",
        "blood_pressure",
    }
    assert all(row["source"] == "acme" for row in rows)


def test_reading_far_above_warmed_up_baseline_yields_exactly_one_anomaly(
    pipeline: Pipeline,
) -> None:
    patient = new_patient()
    # A lone spike of a watch's heart rate is a motion artefact: the second in a row counts.
    series = heart_rate_series(
        patient, [*NORMAL, 165, 166, 71], start=ANCHOR + timedelta(minutes=10)
    )
    assert pipeline.post(series).status_code == 202
    pipeline.wait_vitals(patient, len(series))
    # Every reading judged (the group committed to the end): no anomaly is still to come.
    caught_up(pipeline.kafka_bootstrap, pipeline.env["PGHD_PROCESSORS_APP_ID"])

    anomalies = pipeline.anomalies(patient, expect=1, settle=0.5)
    assert len(anomalies) == 1, anomalies
    (anomaly,) = anomalies
    assert anomaly.metric == "heart_rate"
    assert anomaly.value == 166
    assert anomaly.severity in {"warning", "critical"}
    assert anomaly.baseline is not None
    assert anomaly.baseline.mean == pytest.approx(70.5, abs=2)
    assert anomaly.event_ids == [series_event_id(pipeline, patient, 166)]
    assert "166" in anomaly.explanation
    assert anomaly.phase == "onset" and anomaly.episode_id and anomaly.context == "rest"

    # The alerts service delivered it to the notification URL (a real HTTP receiver).
    wait_for(
        lambda: pipeline.sink.messages_about(anomaly.anomaly_id) or None,
        timeout=30,
        what="the anomaly's notification",
        diagnostics=pipeline.diagnostics,
    )
    alerts_group = pipeline.env["PGHD_ALERTS_APP_ID"]
    caught_up(pipeline.kafka_bootstrap, alerts_group, (topics.ANOMALIES, topics.ALERT_COMMANDS))
    messages = pipeline.sink.messages_about(anomaly.anomaly_id)
    assert len(messages) == 1
    assert patient in messages[0]["title"]


def series_event_id(pipeline: Pipeline, patient: str, value: float) -> str:
    rows = [r for r in pipeline.vitals(patient) if r["value"] == value]
    assert len(rows) == 1
    return str(rows[0]["event_id"])


def test_mixed_batch_reports_bad_items_and_stores_good_ones(pipeline: Pipeline) -> None:
    patient = new_patient()
    when = ANCHOR - timedelta(minutes=30)
    response = pipeline.post(
        [
            reading(patient, 61, when),
            reading(patient, 999, when + timedelta(minutes=1)),  # outside the possible range
            reading(patient, 97, when, metric="spo2", unit="%"),
            reading(patient, 37, when, metric="body_temperature", unit="kelvin"),
            {"patient_id": patient, "metric": "heart_rate", "unit": "/min"},  # no value, no time
        ]
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    rejected = {item["index"]: item for item in body["items"] if item["status"] == "rejected"}
    assert set(rejected) == {1, 3, 4}
    assert rejected[1]["errors"][0]["pointer"] == "/1/value"
    assert "possible range" in rejected[1]["errors"][0]["detail"]
    assert rejected[3]["errors"][0]["pointer"] == "/3/unit"
    assert {e["pointer"] for e in rejected[4]["errors"]} >= {"/4/effective_time"}

    rows = settled_vitals(pipeline, patient)
    assert sorted((r["channel"], r["value"]) for r in rows) == [("heart_rate", 61), ("spo2", 97)]


def test_same_event_id_posted_twice_is_stored_once(pipeline: Pipeline) -> None:
    patient = new_patient()
    first = reading(patient, 66, ANCHOR - timedelta(minutes=20), event_id="ev-dup-1")
    # A client retry that re-sends the event with a re-stamped time must not count twice.
    retry = {**first, "effective_time": (ANCHOR - timedelta(minutes=19)).isoformat()}
    assert pipeline.post(first).status_code == 202
    assert pipeline.post(retry).status_code == 202
    marker = reading(patient, 67, ANCHOR - timedelta(minutes=5))
    assert pipeline.post(marker).status_code == 202

    rows = settled_vitals(pipeline, patient)  # a sentinel processed after all three
    assert sorted(r["value"] for r in rows) == [66, 67]
    assert [r["event_id"] for r in rows].count("ev-dup-1") == 1


def test_unknown_api_key_is_refused_and_nothing_is_stored(pipeline: Pipeline) -> None:
    patient = new_patient()
    response = pipeline.post(reading(patient, 70, ANCHOR), api_key="wrong")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert settled_vitals(pipeline, patient) == []
