"""``pghd import apple-health`` against a stand-in ingest server: batches, resume, errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deploy.local.process import free_port
from pghd.cli import app
from pghd.simulation.apple_export import ExportSummary, write_export

KEY = "import-test-key"
END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FakeIngest:
    """Answers POST /v1/measurements as ingest does; refuses steps; can 503 or be down."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.requests = 0
        self.unavailable = 0  # answer this many requests with 503 first
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with fake.lock:
                    fake.requests += 1
                    if self.headers.get("X-API-Key") != KEY:
                        return self._answer(401, {"status": 401, "detail": "unknown X-API-Key"})
                    if fake.unavailable > 0:
                        fake.unavailable -= 1
                        return self._answer(503, {"status": 503}, {"Retry-After": "0"})
                    items = json.loads(body)
                    fake.posted.extend(items)
                results = [
                    {"index": i, "status": "rejected", "errors": [{"field": "unit"}]}
                    if item["metric"] == "steps"
                    else {"index": i, "status": "accepted", "event_id": item["event_id"]}
                    for i, item in enumerate(items)
                ]
                accepted = sum(r["status"] == "accepted" for r in results)
                self._answer(
                    202,
                    {"accepted": accepted, "rejected": len(items) - accepted, "items": results},
                )

            def _answer(
                self, status: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def event_ids(self) -> list[str]:
        return [str(item["event_id"]) for item in self.posted]


@pytest.fixture
def ingest() -> Iterator[FakeIngest]:
    fake = FakeIngest()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def export(tmp_path: Path) -> ExportSummary:
    return write_export(tmp_path / "export.zip", records=1500, end=END)


def run(export: Path, url: str, *extra: str, patient: str = "pt-1") -> Any:
    args = ["import", "apple-health", str(export), "--patient", patient, "--url", url]
    return CliRunner().invoke(app, [*args, "--api-key", KEY, *extra])


def checkpoint(export: ExportSummary) -> dict[str, Any]:
    path = export.path.with_name("export.zip.pghd-import.json")
    return dict(json.loads(path.read_text()))


def test_import_posts_every_reading_once_and_summarises(
    ingest: FakeIngest, export: ExportSummary
) -> None:
    result = run(export.path, ingest.url, "--batch", "200")
    assert result.exit_code == 0, result.output
    assert len(ingest.posted) == export.total_readings
    assert len(set(ingest.event_ids())) == export.total_readings
    assert {item["patient_id"] for item in ingest.posted} == {"pt-1"}
    assert ingest.requests == -(-export.total_readings // 200)
    steps = export.readings["steps"]
    assert f"accepted  {export.total_readings - steps}" in result.output
    assert f"{steps}  invalid unit" in result.output
    assert f"records   {export.records + export.correlations} read" in result.output
    heart_rates = export.by_type["HKQuantityTypeIdentifierHeartRate"]
    assert f"{heart_rates:>9}  HKQuantityTypeIdentifierHeartRate" in result.output
    assert "HKQuantityTypeIdentifierActiveEnergyBurned" in result.output  # skipped type
    assert checkpoint(export)["acknowledged"] == export.total_readings
    assert checkpoint(export)["complete"] is True


def test_an_interrupted_import_resumes_where_it_stopped(
    ingest: FakeIngest, export: ExportSummary
) -> None:
    first = run(export.path, ingest.url, "--batch", "100", "--stop-after", "3")
    assert first.exit_code == 3, first.output
    assert "run again to resume" in first.output
    assert len(ingest.posted) == 300
    assert checkpoint(export)["acknowledged"] == 300

    second = run(export.path, ingest.url, "--batch", "100")
    assert second.exit_code == 0, second.output
    assert "resuming  after 300 readings" in second.output
    ids = ingest.event_ids()
    assert len(ids) == len(set(ids)) == export.total_readings  # nothing twice, nothing missed

    third = run(export.path, ingest.url)
    assert third.exit_code == 0 and "imported already" in third.output
    assert len(ingest.posted) == export.total_readings

    again = run(export.path, ingest.url, "--restart")
    assert again.exit_code == 0, again.output
    assert ingest.event_ids()[export.total_readings :] == ids  # same ids, same order


def test_a_checkpoint_of_another_patient_is_not_used(
    ingest: FakeIngest, export: ExportSummary
) -> None:
    assert run(export.path, ingest.url, "--stop-after", "1").exit_code == 3
    result = run(export.path, ingest.url, patient="pt-2")
    assert result.exit_code == 0, result.output
    assert "for another export or patient" in result.output
    pt2 = [item for item in ingest.posted if item["patient_id"] == "pt-2"]
    assert len(pt2) == export.total_readings


def test_503_is_retried_after_retry_after(ingest: FakeIngest, export: ExportSummary) -> None:
    ingest.unavailable = 2
    result = run(export.path, ingest.url, "--batch", "500")
    assert result.exit_code == 0, result.output
    assert "2 retried batches" in result.output
    assert len(set(ingest.event_ids())) == export.total_readings


def test_clear_errors(ingest: FakeIngest, export: ExportSummary, tmp_path: Path) -> None:
    missing = run(tmp_path / "nope.zip", ingest.url)
    assert missing.exit_code == 1 and "no such file" in missing.output

    notes = tmp_path / "notes.xml"
    notes.write_text("<notes><note/></notes>")
    not_export = run(notes, ingest.url)
    assert not_export.exit_code == 1 and "<notes>, not <HealthData>" in not_export.output

    args = ["import", "apple-health", str(export.path), "--patient", "pt-1", "--url", ingest.url]
    bad_key = CliRunner().invoke(app, [*args, "--api-key", "wrong"])
    assert bad_key.exit_code == 1 and "refused the API key (HTTP 401)" in bad_key.output

    down = run(export.path, f"http://127.0.0.1:{free_port()}")
    assert down.exit_code == 1 and "cannot reach" in down.output
    assert ingest.posted == []
