"""The care-team API's audit trail: an event for every request to a ``/v1/`` route, written
before the answer goes out, and read back by admins only.

The Kafka sink is replaced by a recording one here; tests/integration/test_care_access.py
reads the events back from the real topic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from alerts.api.audit_log import start_ms
from alerts.api.read_model import ReadModel
from alerts.api.routes import audit as audit_route
from alerts.api.settings import CareApiSettings
from pghd.access import hash_token
from pghd.audit import AuditAgent, AuditEvent, new_event, to_fhir
from tests.unit.alerts.api.conftest import RecordingProducer, build, make_alert
from tests.unit.audit_sink import RecordingAuditSink

OURS, THEIRS = "patient-ward-a", "patient-ward-b"


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-token"}


@pytest.fixture
def sink() -> RecordingAuditSink:
    return RecordingAuditSink()


@pytest.fixture
def client(tmp_path: Any, sink: RecordingAuditSink) -> Iterator[TestClient]:
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": {
                    "nurse-a": {
                        "role": "clinician",
                        "teams": ["ward-a"],
                        "token_sha256": [hash_token("nurse-a-token")],
                    },
                    "chief": {"role": "admin", "token_sha256": [hash_token("chief-token")]},
                }
            }
        )
    )
    model = ReadModel(ready=True)
    model.patient_teams = {OURS: frozenset({"ward-a"}), THEIRS: frozenset({"ward-b"})}
    model.load_alerts([make_alert(patient_id=p, alert_id=f"al-{p}") for p in (OURS, THEIRS)])
    settings = CareApiSettings(users_file=users, kafka_bootstrap="127.0.0.1:1", retry_after_s=7)
    yield TestClient(build(settings, RecordingProducer(), model, audit=sink))


def test_a_read_is_recorded_with_who_what_and_how_it_went(
    client: TestClient, sink: RecordingAuditSink
) -> None:
    response = client.get(
        f"/v1/alerts/al-{OURS}", headers={**bearer("nurse-a"), "X-Request-ID": "r-1"}
    )
    assert response.status_code == 200
    (event,) = sink.events
    assert (event.service, event.action, event.outcome, event.status) == (
        "care-api",
        "read",
        "success",
        200,
    )
    assert event.operation == "GET /v1/alerts/{alert_id}"
    assert event.resource == f"/v1/alerts/al-{OURS}"
    assert event.agent == AuditAgent(name="nurse-a", role="clinician", teams=["ward-a"])
    assert event.patients == [OURS]
    assert event.request_id == "r-1"


def test_a_refusal_is_recorded_too(client: TestClient, sink: RecordingAuditSink) -> None:
    assert client.get(f"/v1/alerts/al-{THEIRS}", headers=bearer("nurse-a")).status_code == 403
    assert client.get("/v1/alerts", headers=bearer("intruder")).status_code == 401
    denied, anonymous = sink.events
    assert (denied.outcome, denied.status, denied.patients) == ("denied", 403, [THEIRS])
    assert (anonymous.agent.name, anonymous.outcome, anonymous.patients) == (
        "anonymous",
        "denied",
        [],
    )


def test_a_list_names_every_patient_it_showed(client: TestClient, sink: RecordingAuditSink) -> None:
    assert client.get("/v1/alerts", headers=bearer("chief")).status_code == 200
    assert sink.events[-1].patients == [OURS, THEIRS]
    assert client.get("/v1/alerts", headers=bearer("nurse-a")).status_code == 200
    assert sink.events[-1].patients == [OURS]


def test_a_write_is_recorded_as_such(client: TestClient, sink: RecordingAuditSink) -> None:
    response = client.post(f"/v1/alerts/al-{OURS}/acknowledge", headers=bearer("nurse-a"))
    assert response.status_code == 202
    assert (sink.events[-1].action, sink.events[-1].patients) == ("create", [OURS])


def test_without_an_audit_trail_nothing_is_answered(
    client: TestClient, sink: RecordingAuditSink
) -> None:
    sink.failure = ConnectionError("kafka down")
    response = client.get(f"/v1/alerts/al-{OURS}", headers=bearer("nurse-a"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["type"] == "urn:pghd:problem:audit-unavailable"
    assert OURS not in response.text, "the answer leaked without its audit event"


def test_health_is_not_audited(client: TestClient, sink: RecordingAuditSink) -> None:
    assert client.get("/healthz").status_code == 200
    assert sink.events == []


def _event(patient: str) -> AuditEvent:
    return new_event(
        recorded=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        service="care-api",
        method="GET",
        route="/v1/alerts/{alert_id}",
        resource=f"/v1/alerts/al-{patient}",
        agent=AuditAgent(name="nurse-a", role="clinician", teams=["ward-a"]),
        patients=[patient],
        status=200,
        request_id="r-1",
    )


def test_only_admins_read_the_audit_trail(
    client: TestClient, sink: RecordingAuditSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []

    def read(bootstrap: str, **kwargs: Any) -> list[AuditEvent]:
        asked.append(kwargs)
        return [_event(OURS)]

    monkeypatch.setattr(audit_route, "read_audit", read)
    refused = client.get("/v1/audit", params={"patient_id": OURS}, headers=bearer("nurse-a"))
    assert refused.status_code == 403 and asked == []
    answer = client.get("/v1/audit", params={"patient_id": OURS}, headers=bearer("chief"))
    assert answer.status_code == 200, answer.text
    assert [e["patients"] for e in answer.json()] == [[OURS]]
    assert asked[0]["patient_id"] == OURS
    # reading the audit is audited too
    assert (sink.events[-1].operation, sink.events[-1].patients) == ("GET /v1/audit", [OURS])

    fhir = client.get("/v1/audit", params={"format": "fhir"}, headers=bearer("chief"))
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(fhir.json())
    assert bundle.type == "searchset" and bundle.total == 1


def test_an_event_is_a_valid_fhir_audit_event() -> None:
    resource = FhirAuditEvent.model_validate(to_fhir(_event(OURS)))
    assert resource.action == "R" and resource.outcome == "0"
    assert resource.entity[0].what.reference == f"Patient/{OURS}"
    assert resource.subtype[0].code == "read"
    listing = to_fhir(_event(OURS).model_copy(update={"operation": "GET /v1/alerts"}))
    assert listing["subtype"][0]["code"] == "search-type"


def test_a_since_before_1970_reads_from_the_start() -> None:
    """Kafka refuses negative timestamps; the fuzz found ``since=0011-07-01`` answered 503."""
    assert start_ms(datetime(11, 7, 1, tzinfo=UTC)) == 0
    assert start_ms(datetime(2026, 12, 1, tzinfo=UTC)) == 1_796_083_200_000


def test_a_crash_is_recorded_as_failed(
    client: TestClient, sink: RecordingAuditSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("alerts.api.routes.alerts.check_patient", broken)
    crashed = TestClient(client.app, raise_server_exceptions=False)
    response = crashed.get(f"/v1/alerts/al-{OURS}", headers=bearer("nurse-a"))
    assert response.status_code == 500
    assert (sink.events[-1].outcome, sink.events[-1].status) == ("failed", 500)
