"""``GET /v1/patients/{id}/export`` and ``pghd patients export``, with InfluxDB replaced by
a store in memory (the real reader on real servers: tests/integration/test_export.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

from ingest.app import create_app
from ingest.auth import hash_key
from ingest.enrollment import EnrollmentBook, EnrollmentFollower, EnrollmentService
from ingest.settings import IngestSettings
from pghd.catalogue import Metric
from pghd.commands import patients as patients_command
from pghd.export.influx import ExportStoreError, Extent
from pghd.export.records import StoredFinding, StoredReading
from tests.clock import ANCHOR
from tests.unit.audit_sink import RecordingAuditSink
from tests.unit.ingest.test_patients_api import ADMIN, PROBLEM, Loopback

WHEN = ANCHOR - timedelta(hours=3)


def reading(patient: str, value: float, minutes: int = 0) -> StoredReading:
    return StoredReading(
        patient_id=patient,
        metric=Metric.HEART_RATE,
        time=WHEN + timedelta(minutes=minutes),
        unit="/min",
        values={"heart_rate": value},
        source="acme",
        event_id=f"ev-{minutes}",
        device="watch-1",
    )


class MemoryStore:
    """Stored readings and findings by patient; fails on demand (at once or midway)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[StoredReading]] = {}
        self.found: dict[str, list[StoredFinding]] = {}
        self.failure: Exception | None = None
        self.fail_after: int | None = None

    async def extent(self, patient_id: str, *, now: datetime | None = None) -> Extent | None:
        if self.failure is not None:
            raise self.failure
        times = [r.time for r in self.rows.get(patient_id, [])]
        return Extent(first=min(times), last=max(times)) if times else None

    async def _readings(self, patient_id: str) -> AsyncIterator[StoredReading]:
        for i, item in enumerate(self.rows.get(patient_id, [])):
            if self.fail_after is not None and i >= self.fail_after:
                raise ExportStoreError("InfluxDB query failed: connection reset")
            yield item

    def readings(self, patient_id: str, extent: Extent) -> AsyncIterator[StoredReading]:
        return self._readings(patient_id)

    async def _findings(self, patient_id: str) -> AsyncIterator[StoredFinding]:
        for item in self.found.get(patient_id, []):
            yield item

    def findings(self, patient_id: str, extent: Extent) -> AsyncIterator[StoredFinding]:
        return self._findings(patient_id)

    async def close(self) -> None:
        return None


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def audit() -> RecordingAuditSink:
    return RecordingAuditSink()


@pytest.fixture
def client(store: MemoryStore, audit: RecordingAuditSink) -> Iterator[TestClient]:
    book = EnrollmentBook()
    loopback = Loopback(EnrollmentFollower(bootstrap="127.0.0.1:1", book=book))
    settings = IngestSettings(
        admin_tokens={"ops": hash_key(ADMIN)}, kafka_bootstrap="127.0.0.1:1", retry_after_s=7
    )
    app = create_app(settings)
    app.state.enrollment_book = app.state.registry = book
    app.state.audit_sink = audit
    app.state.enrollments = EnrollmentService(
        book=book, follower=loopback.follower, gateway=loopback
    )
    app.state.export_store = store
    book.ready = True
    yield TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"})


def test_export_needs_an_admin_token_and_is_audited_naming_the_patient(
    client: TestClient, store: MemoryStore, audit: RecordingAuditSink
) -> None:
    store.rows["p1"] = [reading("p1", 70)]
    refused = client.get("/v1/patients/p1/export", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM
    answer = client.get("/v1/patients/p1/export")
    assert answer.status_code == 200, answer.text
    last = audit.events[-1]
    assert last.operation == "GET /v1/patients/{patient_id}/export"
    assert last.patients == ["p1"] and last.agent.name == "ops" and last.status == 200


def test_fhir_export_is_a_bundle_of_the_stored_readings_and_findings(
    client: TestClient, store: MemoryStore
) -> None:
    client.post("/v1/patients", json={"patient_id": "p1"})
    store.rows["p1"] = [reading("p1", 70 + i, minutes=i) for i in range(50)]
    answer = client.get("/v1/patients/p1/export")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/fhir+json"
    assert answer.headers["content-disposition"] == 'attachment; filename="p1-fhir.json"'
    assert answer.headers["cache-control"] == "no-store"
    bundle = answer.json()
    Bundle.model_validate(bundle)
    values = [e["resource"]["valueQuantity"]["value"] for e in bundle["entry"]]
    assert values == [70.0 + i for i in range(50)]


def test_omh_export_is_an_array_of_data_points(client: TestClient, store: MemoryStore) -> None:
    store.rows["p1"] = [reading("p1", 70)]
    answer = client.get("/v1/patients/p1/export", params={"format": "omh"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    [point] = answer.json()
    assert point["header"]["schema_id"]["name"] == "heart-rate"
    assert point["body"]["heart_rate"] == {"value": 70.0, "unit": "beats/min"}
    assert client.get("/v1/patients/p1/export", params={"format": "csv"}).status_code == 422


def test_unknown_patient_is_404_enrolled_without_data_an_empty_bundle(
    client: TestClient, audit: RecordingAuditSink
) -> None:
    missing = client.get("/v1/patients/p9/export")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["detail"] == "patient p9 is not enrolled and has no stored data"
    assert audit.events[-1].patients == ["p9"]  # a probe of who exists shows in the audit

    client.post("/v1/patients", json={"patient_id": "p2"})
    client.post("/v1/patients/p2/withdraw")
    empty = client.get("/v1/patients/p2/export")
    assert empty.status_code == 200
    assert "entry" not in empty.json() and empty.json()["type"] == "collection"
    assert client.get("/v1/patients/p2/export", params={"format": "omh"}).json() == []


def test_influxdb_down_or_not_configured_is_503_before_anything_is_sent(
    client: TestClient, store: MemoryStore
) -> None:
    store.failure = ExportStoreError("InfluxDB query failed: connection refused")
    down = client.get("/v1/patients/p1/export")
    assert down.status_code == 503 and down.headers["retry-after"] == "7"
    assert "connection refused" in down.json()["detail"]

    client.app.state.export_store = None  # type: ignore[attr-defined]
    unset = client.get("/v1/patients/p1/export")
    assert unset.status_code == 503
    assert "PGHD_INGEST_INFLUX_TOKEN" in unset.json()["detail"]


def test_a_failure_midway_cuts_the_answer_short(client: TestClient, store: MemoryStore) -> None:
    store.rows["p1"] = [reading("p1", 70 + i, minutes=i) for i in range(5000)]
    store.fail_after = 4000
    with pytest.raises(ExportStoreError):
        client.get("/v1/patients/p1/export")


# --- the CLI -------------------------------------------------------------------------


@pytest.fixture
def cli(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    def through_app(request: httpx.Request) -> httpx.Response:
        answer = client.request(request.method, request.url.raw_path.decode())
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def app_client(url: str, token: str) -> httpx.Client:
        return httpx.Client(base_url=url, transport=httpx.MockTransport(through_app))

    monkeypatch.setattr(patients_command, "_client", app_client)
    return CliRunner()


def test_cli_exports_to_a_file_or_stdout(
    cli: CliRunner, store: MemoryStore, tmp_path: Path
) -> None:
    store.rows["p1"] = [reading("p1", 70), reading("p1", 71, minutes=5)]
    target = tmp_path / "p1.json"
    done = cli.invoke(patients_command.app, ["export", "p1", "--output", str(target)])
    assert done.exit_code == 0, done.output
    assert "patient p1 exported as fhir to" in done.output
    assert len(orjson.loads(target.read_bytes())["entry"]) == 2
    assert not (tmp_path / "p1.json.part").exists()

    printed = cli.invoke(patients_command.app, ["export", "p1", "--format", "omh", "-q"])
    assert printed.exit_code == 0, printed.output
    assert [p["body"]["heart_rate"]["value"] for p in orjson.loads(printed.stdout)] == [70, 71]


def test_cli_says_why_an_export_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "p9.json"
    refused = cli.invoke(patients_command.app, ["export", "p9", "-o", str(target)])
    assert refused.exit_code == 1
    assert "HTTP 404: patient p9 is not enrolled and has no stored data" in refused.output
    assert not target.exists() and not (tmp_path / "p9.json.part").exists()
    bad = cli.invoke(patients_command.app, ["export", "p9", "--format", "csv"])
    assert bad.exit_code == 2


HEAD = b'{"resourceType":"Bundle","type":"collection","entry":['


def test_cli_reports_a_broken_off_export_and_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield HEAD
            raise httpx.RemoteProtocolError("incomplete chunked read")

        return httpx.Response(200, content=body())

    monkeypatch.setattr(
        patients_command,
        "_client",
        lambda url, token: httpx.Client(base_url=url, transport=httpx.MockTransport(broken)),
    )
    target = tmp_path / "p1.json"
    result = CliRunner().invoke(patients_command.app, ["export", "p1", "-o", str(target)])
    assert result.exit_code == 1
    assert f"the export broke off after {len(HEAD)} bytes" in result.output
    assert "nothing written" in result.output
    assert not target.exists() and not (tmp_path / "p1.json.part").exists()
