"""``/v1/patients/{id}/care-plan``: validated, produced keyed by patient, read back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.api.deps import get_publisher
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd import wire
from pghd.care_plans import CarePlan
from pghd.pseudonym import pseudonym
from pghd.service.producer import KafkaUnavailable
from pghd.topics import CARE_PLANS

from .conftest import AUTH, USER, RecordingProducer, build

PATH = "/v1/patients/patient-007/care-plan"


class RecordingPublisher:
    """Stands in for the Kafka producer's ``publish``: keeps the records, or fails."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None]] = []
        self.failure: Exception | None = None

    async def publish(self, *, topic: str, key: bytes, value: bytes | None) -> None:
        if self.failure is not None:
            raise self.failure
        self.records.append((topic, key, value))


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def api(
    settings: CareApiSettings,
    producer: RecordingProducer,
    model: ReadModel,
    publisher: RecordingPublisher,
) -> Iterator[TestClient]:
    app = build(settings, producer, model)
    app.dependency_overrides[get_publisher] = lambda: publisher
    yield TestClient(app)


def test_put_produces_the_stamped_plan_keyed_by_patient_and_get_reads_it(
    api: TestClient, publisher: RecordingPublisher
) -> None:
    body: dict[str, Any] = {
        "spo2_scale": 2,
        "limits": {"heart_rate": {"high": 120}},
        "detectors": {"spo2": {"off": ["cusum"]}},
        "note": "COPD, target 88-92 %",
    }
    response = api.put(PATH, json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    ((topic, key, value),) = publisher.records
    assert (topic, key) == (CARE_PLANS, b"patient-007")
    assert value is not None
    plan = wire.decode(CarePlan, value)
    assert (plan.patient_id, plan.updated_by, plan.spo2_scale) == ("patient-007", USER, 2)
    assert plan.limits_for("heart_rate") is not None and plan.is_off("spo2", "cusum")
    assert response.json()["updated_by"] == USER
    shown = api.get(PATH, headers=AUTH)
    assert shown.status_code == 200
    assert CarePlan.model_validate(shown.json()) == plan


def test_an_invalid_plan_is_refused_naming_the_field(
    api: TestClient, publisher: RecordingPublisher
) -> None:
    response = api.put(
        PATH,
        json={"spo2_scale": 3, "limits": {"heart_rate": {"low": 130, "high": 90}}},
        headers=AUTH,
    )
    assert response.status_code == 422
    problem = response.json()
    fields = {e["field"]: e["detail"] for e in problem["errors"]}
    assert "Input should be 1 or 2" in fields["spo2_scale"]
    assert "low (130) must be below high (90)" in fields["limits.heart_rate"]
    assert publisher.records == []


def test_delete_writes_a_tombstone_and_the_plan_is_gone(
    api: TestClient, publisher: RecordingPublisher
) -> None:
    assert api.delete(PATH, headers=AUTH).status_code == 404
    assert api.put(PATH, json={"spo2_scale": 2}, headers=AUTH).status_code == 202
    response = api.delete(PATH, headers=AUTH)
    assert response.status_code == 202
    assert publisher.records[-1] == (CARE_PLANS, b"patient-007", None)
    missing = api.get(PATH, headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "patient patient-007 has no care plan"


def test_unauthenticated_and_kafka_down(
    api: TestClient, publisher: RecordingPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert api.get(PATH).status_code == 401
    assert api.put(PATH, json={"spo2_scale": 2}).status_code == 401
    publisher.failure = KafkaUnavailable("not connected to Kafka")
    response = api.put(PATH, json={"spo2_scale": 2}, headers=AUTH)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert api.get(PATH, headers=AUTH).status_code == 404  # nothing was set
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("alerts"))
    assert "not written" in ours and pseudonym("patient-007") in ours
    assert "patient-007" not in ours, "patient ids are pseudonymised in logs"


def test_get_before_the_topic_was_read_is_503(api: TestClient, model: ReadModel) -> None:
    model.ready = False
    assert api.get(PATH, headers=AUTH).status_code == 503


def test_read_model_follows_the_care_plans_topic() -> None:
    model = ReadModel()
    plan = CarePlan.model_validate(
        {
            "patient_id": "p-9",
            "spo2_scale": 2,
            "updated_at": "2026-11-25T10:00:00Z",
            "updated_by": "nurse",
        }
    )
    model.apply_care_plan_record(b"p-9", wire.encode(plan))
    assert model.care_plans["p-9"] == plan
    with pytest.raises(ValueError, match="another patient"):
        model.apply_care_plan_record(b"p-8", wire.encode(plan))
    model.apply_care_plan_record(b"p-9", None)
    assert model.care_plans == {}
