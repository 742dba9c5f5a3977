"""POST /v1/omh: per-item answers like /v1/measurements, the patient_id parameter, limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.auth import hash_key
from ingest.deps import get_gateway
from ingest.settings import IngestSettings
from pghd import wire
from pghd.contracts import Measurement, TimePrecision
from pghd.service.producer import KafkaUnavailable
from tests.clock import ANCHOR
from tests.unit.ingest.conftest import API_KEY, SOURCE, RecordingGateway
from tests.unit.ingest.omh_documents import data_point, sample_with

URL = "/v1/omh"
PROBLEM = "application/problem+json"


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def app(gateway: RecordingGateway) -> FastAPI:
    settings = IngestSettings(
        api_keys={SOURCE: hash_key(API_KEY)},
        kafka_bootstrap="127.0.0.1:1",
        max_batch=3,
        retry_after_s=7,
        consent="off",
    )
    app = create_app(settings)
    app.dependency_overrides[get_gateway] = lambda: gateway
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    yield TestClient(app, headers={"X-API-Key": API_KEY})


def recent(name: str) -> dict[str, Any]:
    when = (ANCHOR - timedelta(hours=1)).isoformat()
    return data_point(name, sample_with(name, effective_time_frame={"date_time": when}))


def test_post_answers_per_data_point_like_measurements(
    client: TestClient, gateway: RecordingGateway
) -> None:
    bad = data_point(
        "heart-rate", sample_with("heart-rate", heart_rate={"value": 50, "unit": "Hz"})
    )
    response = client.post(URL, json=[recent("body-temperature"), bad, recent("blood-pressure")])

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["items"][1]["status"] == "rejected"
    assert body["items"][1]["errors"][0]["pointer"] == "/1/body/heart_rate/unit"
    stored = [wire.decode(Measurement, v) for _, v in gateway.records]
    assert [(m.metric.value, m.unit) for m in stored] == [
        ("body_temperature", "Cel"),
        ("blood_pressure", "mm[Hg]"),
    ]
    assert [k for k, _ in gateway.records] == [b"user1432", b"user1432"]


def test_patient_id_parameter_applies_to_points_without_user_id(
    client: TestClient, gateway: RecordingGateway
) -> None:
    point = recent("oxygen-saturation")
    del point["header"]["user_id"]
    response = client.post(URL, json=point, params={"patient_id": "patient-42"})
    assert response.status_code == 202, response.text
    assert gateway.records[0][0] == b"patient-42"
    refused = client.post(URL, json=point)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["errors"][0]["pointer"] == "/header/user_id"


def test_bad_patient_id_parameter_is_422(client: TestClient) -> None:
    response = client.post(URL, json=recent("heart-rate"), params={"patient_id": "no spaces"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_kafka_down_is_503_and_too_many_points_413(
    client: TestClient, gateway: RecordingGateway
) -> None:
    assert client.post(URL, json=[recent("heart-rate")] * 4).status_code == 413
    gateway.failure = KafkaUnavailable("down")
    response = client.post(URL, json=recent("heart-rate"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"


def test_openapi_documents_the_omh_body(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/v1/omh"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"single", "batch"}
    assert any(p["name"] == "patient_id" for p in operation["parameters"])


def test_the_documented_examples_are_accepted(app: FastAPI, client: TestClient) -> None:
    operation = app.openapi()["paths"]["/v1/omh"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    single = client.post(URL, json=examples["single"]["value"])
    batch = client.post(URL, json=examples["batch"]["value"], params={"patient_id": "patient-001"})
    assert (single.status_code, batch.status_code) == (202, 202), (single.text, batch.text)


def test_a_date_and_part_of_day_is_stored_with_its_precision(
    client: TestClient, gateway: RecordingGateway
) -> None:
    day = (ANCHOR - timedelta(days=1)).date()
    frame = {"time_interval": {"date": day.isoformat(), "part_of_day": "morning"}}
    point = data_point("body-weight", sample_with("body-weight", effective_time_frame=frame))
    response = client.post(URL, json=point)
    assert response.status_code == 202, response.text
    [stored] = [wire.decode(Measurement, v) for _, v in gateway.records]
    assert stored.effective_time == datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    assert stored.effective_precision is TimePrecision.MORNING
