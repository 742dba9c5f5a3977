"""Fixtures for the care-team API unit tests: no Kafka; a recording producer and a read model
fed directly with alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api.app import create_app
from alerts.api.deps import get_producer, get_read_model
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.access import hash_token
from pghd.alert_commands import AlertCommand
from pghd.alerting import Alert, AlertLabels, AlertState, label_fingerprint
from pghd.contracts import Severity
from tests.unit.audit_sink import RecordingAuditSink

TOKEN = "nurse-token-0123456789"
USER = "nurse-ward-3"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC).replace(microsecond=0)


class RecordingProducer:
    """Stands in for :class:`KafkaCommandProducer`: keeps what was sent, or fails on demand."""

    def __init__(self) -> None:
        self.sent: list[AlertCommand] = []
        self.failure: Exception | None = None

    async def send(self, command: AlertCommand) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append(command)


def make_alert(
    *,
    patient_id: str = "patient-001",
    problem: str = "heart_rate",
    status: AlertState = AlertState.OPEN,
    **changes: Any,
) -> Alert:
    """A valid alert of ``patient_id`` about ``problem`` in ``status``."""
    labels = AlertLabels(patient_id=patient_id, problem=problem)
    fingerprint = label_fingerprint(labels)
    fields: dict[str, Any] = {
        "alert_id": f"al-{fingerprint[:6]}-1",
        "fingerprint": fingerprint,
        "labels": labels,
        "severity": Severity.WARNING,
        "status": status,
        "summary": f"{problem} well above this patient's usual",
        "opened_at": NOW - timedelta(hours=2),
        "updated_at": NOW - timedelta(hours=1),
        "last_anomaly_at": NOW - timedelta(hours=1),
        "anomaly_ids": ["an-1", "an-2"],
        "anomaly_count": 2,
    }
    if status is not AlertState.OPEN:
        fields |= {"acknowledged_at": NOW - timedelta(minutes=50), "acknowledged_by": "someone"}
    if status is AlertState.RESOLVED:
        fields |= {"resolved_at": NOW - timedelta(minutes=30), "resolved_by": "someone"}
    fields.update(changes)
    return Alert(**fields)


@pytest.fixture(scope="session")
def settings() -> CareApiSettings:
    return CareApiSettings(
        tokens={USER: hash_token(TOKEN), "night-team": hash_token("night-token")},
        kafka_bootstrap="127.0.0.1:1",
        retry_after_s=7,
    )


@pytest.fixture
def producer() -> RecordingProducer:
    return RecordingProducer()


@pytest.fixture
def model() -> ReadModel:
    model = ReadModel(ready=True)
    # enrolled (the API lists silences of enrolled patients only)
    model.patient_teams = {
        "patient-001": frozenset({"cardio"}),
        "patient-002": frozenset({"pulmo"}),
        "patient-003": frozenset({"cardio"}),
    }
    model.load_alerts(
        [
            make_alert(),
            make_alert(
                patient_id="patient-002",
                problem="spo2",
                severity=Severity.CRITICAL,
                updated_at=NOW - timedelta(minutes=5),
            ),
            make_alert(
                patient_id="patient-003",
                status=AlertState.RESOLVED,
                updated_at=NOW - timedelta(minutes=90),
            ),
        ]
    )
    return model


def build(
    settings: CareApiSettings,
    producer: RecordingProducer,
    model: ReadModel,
    audit: RecordingAuditSink | None = None,
) -> FastAPI:
    """An app whose producer, read model and audit sink are the given ones (the lifespan
    is not run)."""
    app = create_app(settings)
    app.state.audit_sink = audit if audit is not None else RecordingAuditSink()
    app.dependency_overrides[get_producer] = lambda: producer
    app.dependency_overrides[get_read_model] = lambda: model
    return app


@pytest.fixture
def client(
    settings: CareApiSettings, producer: RecordingProducer, model: ReadModel
) -> Iterator[TestClient]:
    # No ``with``: the lifespan (real Kafka producer and follower) is not started.
    yield TestClient(build(settings, producer, model))
