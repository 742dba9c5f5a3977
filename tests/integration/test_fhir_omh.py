"""FHIR R4 and Open mHealth over HTTP → ingest → Kafka → processors → InfluxDB, on real servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from deploy.local.harness import API_KEY, Pipeline, new_patient, running_pipeline
from deploy.local.influxdb import InfluxServer
from tests.clock import ANCHOR
from tests.integration.sync import settled_vitals
from tests.unit.ingest.fhir_documents import (
    blood_pressure,
    body_temperature_f,
    bundle,
    heart_rate,
    sat_o2,
)

FHIR = "application/fhir+json"


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("fhir-omh")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, services=("ingest", "processors")
    ) as running:
        yield running


def post(pipeline: Pipeline, path: str, document: Any, **params: str) -> httpx.Response:
    return httpx.post(
        f"{pipeline.ingest_url}{path}",
        content=orjson.dumps(document),
        params=params,
        headers={"X-API-Key": API_KEY, "Content-Type": FHIR},
        timeout=30,
    )


def by_channel(rows: list[dict[str, Any]]) -> dict[str, tuple[float, str]]:
    return {row["channel"]: (row["value"], row["unit"]) for row in rows}


def test_fhir_batch_lands_in_influxdb_in_canonical_units(pipeline: Pipeline) -> None:
    patient = new_patient("fhir")
    pipeline.enroll(patient, ["body_temperature", "blood_pressure", "spo2", "heart_rate"])
    when = (ANCHOR - timedelta(hours=1)).isoformat()
    document = bundle(
        "batch",
        body_temperature_f(98.6, patient=patient, when=when),
        blood_pressure(128, 84, patient=patient, when=when),
        sat_o2(97, patient=patient, when=when),
        heart_rate(70, patient=patient, when=when, status="preliminary"),
        heart_rate(71, patient=new_patient("not-enrolled"), when=when),
    )
    response = post(pipeline, "/v1/fhir", document)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created"] * 3 + ["400 Bad Request", "403 Forbidden"]
    rows = settled_vitals(pipeline, patient)  # a sentinel stored after everything posted
    assert len(rows) == 4, rows
    assert by_channel(rows) == {
        "body_temperature": (pytest.approx(37.0), "Cel"),
        "blood_pressure.systolic": (128, "mm[Hg]"),
        "blood_pressure.diastolic": (84, "mm[Hg]"),
        "spo2": (97, "%"),
    }
    assert all(row["source"] == "acme" for row in rows)


def test_fhir_transaction_with_a_bad_entry_stores_nothing(pipeline: Pipeline) -> None:
    patient = new_patient("fhir")
    pipeline.enroll(patient, ["heart_rate", "body_temperature"])
    when = ANCHOR - timedelta(minutes=30)
    document = bundle(
        "transaction",
        heart_rate(66, patient=patient, when=when.isoformat(), id_="tx-1"),
        body_temperature_f(
            98.6, patient=patient, when=when.isoformat(), valueQuantity={"value": 98.6}
        ),
    )
    response = post(pipeline, "/v1/fhir", document)
    assert response.status_code == 422, response.text
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[1].resource.valueQuantity.code"]

    # A later good Observation is processed after the refused one would have been.
    marker = heart_rate(67, patient=patient, when=(when + timedelta(minutes=5)).isoformat())
    assert post(pipeline, "/v1/fhir", marker).status_code == 201
    rows = pipeline.wait_vitals(patient, 1)
    assert [(r["channel"], r["value"]) for r in rows] == [("heart_rate", 67)]


def test_omh_data_points_land_in_influxdb(pipeline: Pipeline) -> None:
    patient = new_patient("omh")
    pipeline.enroll(patient, ["body_temperature", "steps"])
    start = ANCHOR - timedelta(hours=2)
    points = [
        {
            "header": {
                "id": f"{patient}-temp",
                "creation_date_time": start.isoformat(),
                "schema_id": {"namespace": "omh", "name": "body-temperature", "version": "4.0"},
                "user_id": patient,
            },
            "body": {
                "body_temperature": {"value": 98.6, "unit": "F"},
                "effective_time_frame": {"date_time": start.isoformat()},
            },
        },
        {
            "header": {
                "id": f"{patient}-steps",
                "creation_date_time": start.isoformat(),
                "schema_id": {"namespace": "omh", "name": "step-count", "version": "3.0"},
            },
            "body": {
                "step_count": {"value": 10600, "unit": "steps"},
                "effective_time_frame": {
                    "time_interval": {
                        "start_date_time": (start + timedelta(minutes=1)).isoformat(),
                        "end_date_time": (start + timedelta(hours=1)).isoformat(),
                    }
                },
            },
        },
    ]
    response = post(pipeline, "/v1/omh", points, patient_id=patient)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2

    rows = pipeline.wait_vitals(patient, 2)
    assert by_channel(rows) == {
        "body_temperature": (pytest.approx(37.0), "Cel"),
        "steps": (10600, "{steps}"),
    }
    assert {row["event_id"] for row in rows} == {f"{patient}-temp", f"{patient}-steps"}
