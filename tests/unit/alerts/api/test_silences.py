"""``/v1/silences``: validation, the command produced, listing and expiring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.api.read_model import ReadModel
from pghd.alert_commands import CommandKind
from pghd.service.producer import KafkaUnavailable
from tests.unit.alerts.api.conftest import AUTH, NOW, USER, RecordingProducer

LATER = (NOW + timedelta(hours=4)).isoformat()


def _silence(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"patient_id": "patient-001", "ends_at": LATER, "comment": "known AF"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_silence_produces_the_command_keyed_by_patient(
    client: TestClient, producer: RecordingProducer
) -> None:
    response = client.post(
        "/v1/silences", headers=AUTH, json=_silence(matchers={"problem": "heart_rate"})
    )
    assert response.status_code == 202, response.text
    [command] = producer.sent
    body = response.json()
    assert body["kind"] == "silence"
    assert body["command_id"] == command.command_id
    assert command.kind is CommandKind.SILENCE
    assert command.patient_id == "patient-001"
    assert command.by == USER
    assert command.silence is not None
    assert body["silence_id"] == command.silence.silence_id
    assert command.silence.matchers == {"patient_id": "patient-001", "problem": "heart_rate"}
    assert command.silence.created_by == USER
    assert command.silence.comment == "known AF"
    listed = client.get("/v1/silences", headers=AUTH).json()
    assert listed["count"] == 1
    assert listed["items"][0]["silence_id"] == body["silence_id"]
    assert listed["items"][0]["state"] == "active"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"ends_at": (NOW - timedelta(minutes=1)).isoformat()}, None, "in the future"),
        ({"ends_at": "2030-01-01T00:00:00"}, "ends_at", "timezone"),
        ({"ends_at": None}, "ends_at", "required"),
        ({"patient_id": None}, "patient_id", "required"),
        ({"matchers": {"patient_id": "patient-002"}}, None, "must equal patient_id"),
        ({"matchers": {"ward": "3"}}, None, "unknown labels"),
        ({"matchers": {"severity": "dire"}}, None, "severity"),
        (
            {"starts_at": (NOW + timedelta(hours=5)).isoformat()},
            None,
            "ends_at must be after starts_at",
        ),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_invalid_silences_are_422_problems(
    client: TestClient,
    producer: RecordingProducer,
    changes: dict[str, Any],
    field: str | None,
    words: str,
) -> None:
    response = client.post("/v1/silences", headers=AUTH, json=_silence(**changes))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert words in error["detail"]
    assert producer.sent == []


def test_silence_503_when_kafka_is_down(client: TestClient, producer: RecordingProducer) -> None:
    producer.failure = KafkaUnavailable("Kafka did not acknowledge within 5 s")
    response = client.post("/v1/silences", headers=AUTH, json=_silence())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert client.get("/v1/silences", headers=AUTH).json()["count"] == 0


def test_expire_a_silence(client: TestClient, producer: RecordingProducer) -> None:
    silence_id = client.post("/v1/silences", headers=AUTH, json=_silence()).json()["silence_id"]
    response = client.delete(f"/v1/silences/{silence_id}", headers=AUTH)
    assert response.status_code == 202
    command = producer.sent[-1]
    assert command.kind is CommandKind.EXPIRE_SILENCE
    assert (command.silence_id, command.patient_id, command.by) == (
        silence_id,
        "patient-001",
        USER,
    )
    [item] = client.get("/v1/silences?state=expired", headers=AUTH).json()["items"]
    assert (item["silence_id"], item["expired_by"]) == (silence_id, USER)
    assert client.get("/v1/silences?state=active", headers=AUTH).json()["count"] == 0
    again = client.delete(f"/v1/silences/{silence_id}", headers=AUTH)
    assert again.status_code == 409


def test_expire_unknown_silence_is_404(client: TestClient) -> None:
    response = client.delete("/v1/silences/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["type"] == "urn:pghd:problem:silence-not-found"


def test_silences_filter_by_patient(client: TestClient, model: ReadModel) -> None:
    for patient in ("patient-001", "patient-002"):
        client.post("/v1/silences", headers=AUTH, json=_silence(patient_id=patient))
    items = client.get("/v1/silences?patient_id=patient-002", headers=AUTH).json()["items"]
    assert [i["matchers"]["patient_id"] for i in items] == ["patient-002"]


def test_no_silence_is_listed_or_expired_for_an_erased_or_unknown_patient(
    client: TestClient, model: ReadModel, producer: RecordingProducer
) -> None:
    created = client.post("/v1/silences", headers=AUTH, json=_silence(patient_id="patient-002"))
    silence_id = created.json()["silence_id"]
    listed = client.get("/v1/silences?patient_id=patient-002", headers=AUTH).json()
    assert listed["count"] == 1

    model.apply_enrollment_record(b"patient-002", None)  # erased
    assert client.get("/v1/silences?patient_id=patient-002", headers=AUTH).json()["count"] == 0
    assert client.get("/v1/silences", headers=AUTH).json()["count"] == 0
    assert client.delete(f"/v1/silences/{silence_id}", headers=AUTH).status_code == 404

    # the silence command read again (a restart, the commands topic keeps it): still nothing
    [command] = producer.sent
    model.apply_command(command)
    assert client.get("/v1/silences?patient_id=patient-002", headers=AUTH).json()["count"] == 0
    assert client.get("/v1/silences?patient_id=nobody-9", headers=AUTH).json()["count"] == 0
