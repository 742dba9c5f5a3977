"""``/v1/alerts``: listing with filters, one alert, acknowledge and resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts.api.app import create_app
from alerts.api.deps import get_read_model
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.access import hash_token
from pghd.alert_commands import CommandKind
from pghd.alerting import AlertState, NotificationOutcome, NotificationRecord
from pghd.service.producer import KafkaUnavailable
from tests.unit.alerts.api.conftest import (
    AUTH,
    NOW,
    TOKEN,
    USER,
    RecordingProducer,
    build,
    make_alert,
)


def _ids(client: TestClient, query: str = "") -> list[str]:
    response = client.get(f"/v1/alerts{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["items"])
    return [item["patient_id"] for item in body["items"]]


def test_lists_most_recently_updated_first(client: TestClient) -> None:
    assert _ids(client) == ["patient-002", "patient-001", "patient-003"]


@pytest.mark.parametrize(
    ("query", "patients"),
    [
        ("?state=open", ["patient-002", "patient-001"]),
        ("?state=resolved", ["patient-003"]),
        ("?patient_id=patient-001", ["patient-001"]),
        ("?severity=critical", ["patient-002"]),
        ("?state=open&severity=warning", ["patient-001"]),
        ("?limit=1", ["patient-002"]),
        ("?patient_id=nobody", []),
    ],
)
def test_filters(client: TestClient, query: str, patients: list[str]) -> None:
    assert _ids(client, query) == patients


def test_bad_filter_is_a_problem(client: TestClient) -> None:
    response = client.get("/v1/alerts?state=sleeping", headers=AUTH)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["pointer"] == "/query/state"


def test_team_filter_needs_routing(client: TestClient) -> None:
    response = client.get("/v1/alerts?team=cardio", headers=AUTH)
    assert response.status_code == 400
    assert "routing" in response.json()["detail"]


def test_team_filter_uses_the_routing_team_map(
    tmp_path: Path, producer: RecordingProducer, model: ReadModel
) -> None:
    routing = tmp_path / "routing.json"
    routing.write_text(
        json.dumps(
            {
                "channels": {"ward": "json://127.0.0.1:1/hook"},
                "patient_teams": {"patient-001": "cardio", "patient-002": "pulmo"},
                "default_team": "general",
                "routes": [{"name": "all", "escalation": [{"after_s": 0, "channels": ["ward"]}]}],
            }
        )
    )
    settings = CareApiSettings(tokens={USER: hash_token(TOKEN)}, routing_file=routing)
    client = TestClient(build(settings, producer, model))
    assert _ids(client, "?team=cardio") == ["patient-001"]
    assert _ids(client, "?team=general") == ["patient-003"]
    items = client.get("/v1/alerts", headers=AUTH).json()["items"]
    assert {i["patient_id"]: i["team"] for i in items}["patient-002"] == "pulmo"


def test_show_has_anomalies_summary_and_notifications(model: ReadModel) -> None:
    record = NotificationRecord(
        channel="ward", route="all", attempt=1, at=NOW, outcome=NotificationOutcome.DELIVERED
    )
    alert = make_alert(patient_id="patient-009", notifications=[record])
    model.alerts.put(alert)
    client = TestClient(
        build(CareApiSettings(tokens={USER: hash_token(TOKEN)}), RecordingProducer(), model)
    )
    for ref in (alert.alert_id, alert.fingerprint):
        response = client.get(f"/v1/alerts/{ref}", headers=AUTH)
        assert response.status_code == 200
        body = response.json()
        assert body["alert_id"] == alert.alert_id
        assert body["anomaly_ids"] == ["an-1", "an-2"]
        assert body["summary"] == alert.summary
        assert body["notifications"][0]["outcome"] == "delivered"


def test_unknown_alert_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/alerts/al-nope", headers=AUTH)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:pghd:problem:alert-not-found"
    response = client.post("/v1/alerts/al-nope/acknowledge", headers=AUTH)
    assert response.status_code == 404


def test_unknown_alert_before_catching_up_is_503(client: TestClient, model: ReadModel) -> None:
    model.ready = False
    response = client.get("/v1/alerts/al-nope", headers=AUTH)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert client.get("/readyz").status_code == 503
    assert client.get("/v1/alerts", headers=AUTH).json()["ready"] is False


def test_acknowledge_produces_the_command(
    client: TestClient, producer: RecordingProducer, model: ReadModel
) -> None:
    alert = model.alerts.query(patient_id="patient-001")[0]
    response = client.post(
        f"/v1/alerts/{alert.alert_id}/acknowledge", headers=AUTH, json={"comment": "on my way"}
    )
    assert response.status_code == 202, response.text
    [command] = producer.sent
    assert response.json() == {
        "status": "accepted",
        "command_id": command.command_id,
        "kind": "acknowledge",
        "alert_id": alert.alert_id,
        "silence_id": None,
    }
    assert command.kind is CommandKind.ACKNOWLEDGE
    assert (command.alert_id, command.patient_id, command.by) == (
        alert.alert_id,
        "patient-001",
        USER,
    )
    assert command.reason == "on my way"


def test_acknowledge_without_body(client: TestClient, producer: RecordingProducer) -> None:
    alert_id = client.get("/v1/alerts?patient_id=patient-002", headers=AUTH).json()["items"][0][
        "alert_id"
    ]
    assert client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=AUTH).status_code == 202
    assert producer.sent[0].patient_id == "patient-002"


def test_resolve_produces_the_command_with_its_reason(
    client: TestClient, producer: RecordingProducer, model: ReadModel
) -> None:
    alert = model.alerts.query(patient_id="patient-002")[0]
    url = f"/v1/alerts/{alert.alert_id}/resolve"
    missing = client.post(url, headers=AUTH, json={})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "reason"
    response = client.post(url, headers=AUTH, json={"reason": "sensor was loose"})
    assert response.status_code == 202
    [command] = producer.sent
    assert command.kind is CommandKind.RESOLVE
    assert (command.alert_id, command.reason, command.by) == (
        alert.alert_id,
        "sensor was loose",
        USER,
    )


def test_resolved_alert_cannot_be_acted_on(
    client: TestClient, producer: RecordingProducer, model: ReadModel
) -> None:
    [alert] = model.alerts.query(state=AlertState.RESOLVED)
    response = client.post(f"/v1/alerts/{alert.alert_id}/acknowledge", headers=AUTH)
    assert response.status_code == 409
    assert producer.sent == []


def test_503_with_retry_after_when_kafka_is_down(
    client: TestClient, producer: RecordingProducer, model: ReadModel
) -> None:
    producer.failure = KafkaUnavailable("not connected to Kafka")
    alert = model.alerts.query(patient_id="patient-001")[0]
    response = client.post(f"/v1/alerts/{alert.alert_id}/acknowledge", headers=AUTH)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.headers["content-type"] == "application/problem+json"
    assert "not connected" in response.json()["detail"]
    metrics = client.get("/metrics").text
    assert 'alert_commands_total{kind="acknowledge",outcome="unavailable"} 1.0' in metrics


def test_503_when_no_producer_runs(settings: CareApiSettings, model: ReadModel) -> None:
    app = create_app(settings)
    app.dependency_overrides[get_read_model] = lambda: model
    alert = model.alerts.query(patient_id="patient-001")[0]
    response = TestClient(app).post(f"/v1/alerts/{alert.alert_id}/acknowledge", headers=AUTH)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"


def test_openapi_documents_the_resources(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/alerts", "/v1/alerts/{alert_id}/resolve", "/v1/silences/{silence_id}"} <= set(
        spec["paths"]
    )
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
