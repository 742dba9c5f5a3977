"""Liveness, readiness, metrics, OpenAPI, and the app's lifespan with Kafka down."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.settings import IngestSettings
from tests.unit.ingest.conftest import API_KEY, RecordingGateway, reading

PROBLEM = "application/problem+json"


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_follows_the_gateway(client: TestClient, gateway: RecordingGateway) -> None:
    assert client.get("/readyz").status_code == 200
    gateway.is_ready = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["Retry-After"] == "7"


def test_readyz_needs_the_dead_letter_and_enrollment_producers_too(
    client: TestClient, gateway: RecordingGateway
) -> None:
    dlq, enrollments = RecordingGateway(), RecordingGateway()
    client.app.state.support_gateways = {"dlq": dlq, "enrollments": enrollments}  # type: ignore[attr-defined]
    assert client.get("/readyz").status_code == 200
    enrollments.is_ready = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "enrollments producer" in response.json()["detail"]


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in response.text
    assert "# TYPE readings_accepted_total counter" in response.text
    assert "# TYPE kafka_produce_seconds histogram" in response.text


def test_openapi_documents_the_body_and_its_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/measurements"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    refs = {s.get("$ref") or s["items"]["$ref"] for s in body["schema"]["anyOf"]}
    assert refs == {"#/components/schemas/ReadingIn"}
    assert body["examples"]["single"]["value"]["unit"] == "[degF]"
    schemas = spec["components"]["schemas"]
    assert {"ReadingIn", "Metric", "Problem", "IngestResult"} <= set(schemas)
    assert set(post["responses"]) >= {"202", "400", "401", "413", "422", "503"}
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert client.get("/docs").status_code == 200


def test_unknown_path_is_a_problem(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_app_starts_and_answers_503_while_kafka_is_down(settings: IngestSettings) -> None:
    """The real gateway, pointed at a closed loopback port: up, not ready, fast 503."""
    app = create_app(settings)
    with TestClient(app, headers={"X-API-Key": API_KEY}) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        started = time.monotonic()
        response = client.post("/v1/measurements", json=reading())
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert time.monotonic() - started < settings.produce_timeout_s + 1
