"""POST /v1/imports/apple-health and GET /v1/imports/{id}: upload, background job, limits.

Requests go through httpx's ASGI transport in the test's event loop, so the background job
the upload starts keeps running between requests (the Kafka gateway is the in-memory one).
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import ingest.imports
from ingest.app import create_app
from ingest.deps import get_gateway
from ingest.imports import ImportJob
from ingest.settings import IngestSettings
from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import Measurement
from pghd.service.producer import KafkaUnavailable, Record
from pghd.simulation.apple_export import ExportSummary, write_export
from tests.clock import ANCHOR
from tests.unit.ingest.conftest import API_KEY, RecordingGateway

URL = "/v1/imports/apple-health"
ZIP = {"Content-Type": "application/zip"}
END = ANCHOR


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> ExportSummary:
    return write_export(tmp_path_factory.mktemp("ah") / "export.zip", records=1200, end=END)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ingest", headers={"X-API-Key": API_KEY}
    ) as client:
        yield client


async def finished(http: httpx.AsyncClient, location: str, **kw: Any) -> dict[str, Any]:
    for _ in range(600):
        response = await http.get(location, **kw)
        assert response.status_code == 200, response.text
        if response.json()["state"] != "running":
            return dict(response.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the import did not finish")


def produced(gateway: RecordingGateway) -> list[Measurement]:
    return [wire.decode(Measurement, value) for _, value in gateway.records]


async def test_upload_is_imported_in_the_background_through_intake(
    http: httpx.AsyncClient, gateway: RecordingGateway, export: ExportSummary
) -> None:
    response = await http.post(
        URL, params={"patient_id": "pt-7"}, content=export.path.read_bytes(), headers=ZIP
    )
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    assert location == f"/v1/imports/{response.json()['id']}"
    assert response.json()["state"] == "running"

    job = await finished(http, location)
    assert job["state"] == "done", job
    assert job["error"] is None
    assert job["records_read"] == export.records + export.correlations
    assert job["readings"] == job["accepted"] == export.total_readings
    assert job["rejected"] == 0
    assert job["readings_by_metric"] == export.readings
    assert job["records_by_type"] == {
        **export.by_type,
        "HKCorrelationTypeIdentifierBloodPressure": export.correlations,
    }
    assert job["skipped_types"]["HKQuantityTypeIdentifierActiveEnergyBurned"] > 0
    assert job["bytes_read"] == job["bytes_total"] > 0

    measurements = produced(gateway)
    assert len(measurements) == export.total_readings
    assert {m.patient_id for m in measurements} == {"pt-7"}
    assert {m.source.vendor for m in measurements} == {"acme"}
    assert len({m.event_id for m in measurements}) == len(measurements)
    assert all(key == b"pt-7" for key, _ in gateway.records)
    weights = [m.value for m in measurements if m.metric is Metric.WEIGHT]
    assert weights and all(m is not None and 60 < m < 80 for m in weights)  # lb made kg


async def test_bare_export_xml_is_accepted_too(
    http: httpx.AsyncClient, gateway: RecordingGateway, tmp_path: Path
) -> None:
    summary = write_export(tmp_path / "export.xml", records=300, end=END, bare_xml=True)
    response = await http.post(
        URL,
        params={"patient_id": "pt-8"},
        content=summary.path.read_bytes(),
        headers={"Content-Type": "application/xml"},
    )
    assert response.status_code == 202, response.text
    job = await finished(http, response.headers["location"])
    assert (job["state"], job["accepted"]) == ("done", summary.total_readings)


class RefuseSteps:
    """A registry whose patients consented to everything but steps."""

    def patient_for(self, *, source: str, account: str) -> str | None:
        return None

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        return "no consent to steps" if metric is Metric.STEPS else None

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        return None


async def test_consent_is_checked_for_every_imported_reading(
    app: FastAPI, http: httpx.AsyncClient, gateway: RecordingGateway, export: ExportSummary
) -> None:
    app.state.registry = RefuseSteps()
    response = await http.post(
        URL, params={"patient_id": "pt-9"}, content=export.path.read_bytes(), headers=ZIP
    )
    job = await finished(http, response.headers["location"])
    assert job["rejected_by_reason"] == {"consent": export.readings["steps"]}
    assert job["accepted"] == export.total_readings - export.readings["steps"]
    assert Metric.STEPS not in {m.metric for m in produced(gateway)}


class FlakyGateway(RecordingGateway):
    """Kafka refuses the first ``failures`` sends, then takes everything."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def send_batch(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaUnavailable("broker down")
        self.records.extend(records)


async def test_kafka_outage_is_waited_out_then_the_job_fails_past_its_patience(
    app: FastAPI, http: httpx.AsyncClient, export: ExportSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = export.path.read_bytes()
    flaky = FlakyGateway(failures=2)
    app.dependency_overrides[get_gateway] = lambda: flaky
    response = await http.post(URL, params={"patient_id": "pt-1"}, content=body, headers=ZIP)
    job = await finished(http, response.headers["location"])
    assert (job["state"], job["accepted"]) == ("done", export.total_readings)
    assert len(flaky.records) == export.total_readings

    monkeypatch.setattr(ingest.imports, "PRODUCE_PATIENCE_S", 0.3)
    down = FlakyGateway(failures=10**9)
    app.dependency_overrides[get_gateway] = lambda: down
    response = await http.post(URL, params={"patient_id": "pt-1"}, content=body, headers=ZIP)
    job = await finished(http, response.headers["location"])
    assert job["state"] == "failed"
    assert "Kafka kept refusing" in job["error"]
    assert job["accepted"] == 0 and down.records == []


class Erasable:
    """A registry that allows everything until the patient is erased (in place, as the
    enrollment book changes when the tombstone arrives)."""

    def __init__(self) -> None:
        self.erased = False

    def patient_for(self, *, source: str, account: str) -> str | None:
        return None

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        return f"patient {patient_id} is not enrolled" if self.erased else None

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        return f"not enrolled with source {source}" if self.erased else None


class ErasedWhileKafkaRefuses(FlakyGateway):
    """Kafka refuses the first send; meanwhile the patient is erased."""

    def __init__(self, registry: Erasable) -> None:
        super().__init__(failures=1)
        self.registry = registry

    async def send_batch(self, records: Sequence[Record]) -> None:
        self.registry.erased = True
        await super().send_batch(records)


async def test_a_retried_batch_is_asked_again_whether_its_patient_may_be_stored(
    app: FastAPI, http: httpx.AsyncClient, export: ExportSummary
) -> None:
    """A patient erased (or withdrawn) while Kafka refused a batch: the retry drops it."""
    registry = Erasable()
    app.state.registry = registry
    gateway = ErasedWhileKafkaRefuses(registry)
    app.dependency_overrides[get_gateway] = lambda: gateway
    response = await http.post(
        URL, params={"patient_id": "pt-9"}, content=export.path.read_bytes(), headers=ZIP
    )
    job = await finished(http, response.headers["location"])
    assert gateway.records == []
    assert job["accepted"] == 0


async def test_refusals_are_problems(
    http: httpx.AsyncClient, gateway: RecordingGateway, export: ExportSummary, tmp_path: Path
) -> None:
    body = export.path.read_bytes()
    params = {"patient_id": "pt-1"}
    wrong_type = await http.post(
        URL, params=params, content=body, headers={"Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.headers["content-type"] == "application/problem+json"
    bad_patient = await http.post(
        URL, params={"patient_id": "no spaces"}, content=body, headers=ZIP
    )
    assert bad_patient.status_code == 422
    no_key = await http.post(URL, params=params, content=body, headers={**ZIP, "X-API-Key": ""})
    assert no_key.status_code == 401
    empty = await http.post(URL, params=params, content=b"", headers=ZIP)
    assert empty.status_code == 422

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("notes/readme.txt", "hello")
    not_export = await http.post(URL, params=params, content=other.read_bytes(), headers=ZIP)
    assert not_export.status_code == 422
    assert "no export.xml" in not_export.json()["detail"]

    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE HealthData [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><HealthData>&b;</HealthData>'
    )
    unsafe = await http.post(
        URL, params=params, content=bomb, headers={"Content-Type": "application/xml"}
    )
    assert unsafe.status_code == 422
    assert "entities" in unsafe.json()["detail"]
    assert gateway.calls == 0


async def test_uploads_over_the_import_limit_are_413(
    gateway: RecordingGateway, settings: IngestSettings, export: ExportSummary
) -> None:
    app = create_app(settings.model_copy(update={"max_import_bytes": 4096}))
    app.dependency_overrides[get_gateway] = lambda: gateway
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        response = await client.post(
            URL,
            params={"patient_id": "pt-1"},
            content=export.path.read_bytes(),
            headers={**ZIP, "X-API-Key": API_KEY},
        )
    assert response.status_code == 413
    assert "PGHD_INGEST_MAX_IMPORT_BYTES" in response.json()["detail"]


async def test_jobs_are_private_to_their_source_and_unknown_ids_are_404(
    http: httpx.AsyncClient, export: ExportSummary
) -> None:
    response = await http.post(
        URL, params={"patient_id": "pt-1"}, content=export.path.read_bytes(), headers=ZIP
    )
    location = response.headers["location"]
    await finished(http, location)
    assert (await http.get(location, headers={"X-API-Key": "other-key"})).status_code == 404
    assert (await http.get("/v1/imports/nope")).status_code == 404
    assert (await http.get(location, headers={"X-API-Key": ""})).status_code == 401


class StuckGateway(RecordingGateway):
    async def send_batch(self, records: Sequence[Record]) -> None:
        await asyncio.sleep(3600)


async def test_shutdown_fails_running_jobs_and_removes_their_files(
    app: FastAPI, http: httpx.AsyncClient, export: ExportSummary
) -> None:
    app.dependency_overrides[get_gateway] = lambda: StuckGateway()
    response = await http.post(
        URL, params={"patient_id": "pt-1"}, content=export.path.read_bytes(), headers=ZIP
    )
    job: ImportJob | None = app.state.imports.get(response.json()["id"])
    assert job is not None and job.path.exists()
    await asyncio.sleep(0.2)
    await app.state.imports.close()
    assert job.state == "failed"
    assert job.error == "ingest stopped before the import finished"
    assert not job.path.exists()
