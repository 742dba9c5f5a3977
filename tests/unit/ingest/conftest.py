"""Fixtures for the ingest unit tests: an app whose Kafka gateway is an in-memory recorder."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.auth import hash_key
from ingest.deps import get_gateway
from ingest.settings import IngestSettings
from pghd.service.producer import Record
from tests.clock import ANCHOR

API_KEY = "acme-test-key-0123456789"
SOURCE = "acme"
MAX_BATCH = 5
MAX_BODY = 4096
PAST = (ANCHOR - timedelta(hours=1)).isoformat()


class RecordingGateway:
    """Stands in for :class:`KafkaGateway`: keeps what was sent, or fails on demand.

    It asks for one record per reading (``envelope = "v1"``), so these tests see each
    reading as a record; ``test_envelope_route.py`` covers the default, one per patient.
    """

    def __init__(self, envelope: str = "v1") -> None:
        self.envelope = envelope
        self.records: list[Record] = []
        self.calls = 0
        self.failure: Exception | None = None
        self.is_ready = True

    async def send_batch(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        self.records.extend(records)

    async def ready(self) -> bool:
        return self.is_ready


def reading(**overrides: Any) -> dict[str, Any]:
    """A valid heart-rate reading, with ``overrides`` applied (``None`` removes a field)."""
    base: dict[str, Any] = {
        "patient_id": "patient-001",
        "metric": "heart_rate",
        "value": 72,
        "unit": "/min",
        "effective_time": PAST,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="session")
def settings() -> IngestSettings:
    return IngestSettings(
        api_keys={SOURCE: hash_key(API_KEY), "other": hash_key("other-key")},
        kafka_bootstrap="127.0.0.1:1",
        max_batch=MAX_BATCH,
        max_body_bytes=MAX_BODY,
        retry_after_s=7,
        consent="off",  # not about consent: see test_patients_api.py for that
    )


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def app(settings: IngestSettings, gateway: RecordingGateway) -> FastAPI:
    app = create_app(settings)
    app.dependency_overrides[get_gateway] = lambda: gateway
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client that does not run the lifespan (no real Kafka gateway is started)."""
    yield TestClient(app, headers={"X-API-Key": API_KEY})
