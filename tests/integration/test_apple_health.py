"""Apple Health exports on real Kafka and InfluxDB, through real ingest and processors.

``pghd import apple-health`` runs as its own process against a running ingest; the upload
endpoint is called over HTTP. What is checked is what lands in InfluxDB.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.harness import API_KEY, Pipeline, new_patient, running_pipeline, wait_for
from deploy.local.influxdb import InfluxServer
from pghd.catalogue import Metric
from pghd.simulation.apple_export import HEADER, write_export
from tests.clock import ANCHOR
from tests.integration.sync import settled_vitals

ALL_METRICS = [m.value for m in Metric]


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("apple-health")
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=workdir, services=("ingest", "processors")
    ) as running:
        yield running


def import_export(
    pipeline: Pipeline, export: Path, patient: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``pghd import apple-health`` as a separate process."""
    command = [sys.executable, "-m", "pghd.cli", "import", "apple-health", str(export)]
    return subprocess.run(
        [*command, "--patient", patient, "--url", pipeline.ingest_url, "--api-key", API_KEY,
         *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip


def per_channel(rows: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(r["channel"]) for r in rows))


def expected(readings: dict[str, int]) -> dict[str, int]:
    """Points per channel the readings of each metric make (blood pressure: two)."""
    counts = {m: n for m, n in readings.items() if m != "blood_pressure"}
    if "blood_pressure" in readings:
        counts["blood_pressure.systolic"] = counts["blood_pressure.diastolic"] = readings[
            "blood_pressure"
        ]
    return counts


def test_cli_import_stores_canonical_values(pipeline: Pipeline, tmp_path: Path) -> None:
    patient = new_patient("ah")
    pipeline.enroll(patient, ALL_METRICS)
    day = (ANCHOR - timedelta(days=1)).strftime("%Y-%m-%d")  # a fixed day, 2 days back
    stamp = f"{day} 08:15:00 -0500"

    def record(kind: str, value: str, unit: str, minute: int) -> str:
        at = f"{day} 08:{minute:02d}:00 -0500"
        return (
            f'<Record type="HKQuantityTypeIdentifier{kind}" sourceName="Test Watch"'
            f' unit="{unit}" startDate="{at}" endDate="{at}" value="{value}"/>'
        )

    def half(kind: str, value: str) -> str:
        return record(f"BloodPressure{kind}", value, "mmHg", 30)

    night = [
        ("InBed", f"{day} 00:50:00 -0500", f"{day} 07:00:00 -0500"),
        ("AsleepCore", f"{day} 01:00:00 -0500", f"{day} 04:00:00 -0500"),
        ("Awake", f"{day} 04:00:00 -0500", f"{day} 04:30:00 -0500"),
        ("AsleepREM", f"{day} 04:30:00 -0500", f"{day} 06:45:00 -0500"),
    ]
    xml = (
        HEADER
        + f'<HealthData locale="en_US"><ExportDate value="{stamp}"/>'
        + record("HeartRate", "72", "count/min", 1)
        + record("OxygenSaturation", "0.97", "%", 2)
        + record("BloodGlucose", "5.5", "mmol&lt;180.1558800000541&gt;/L", 3)
        + record("BodyTemperature", "98.6", "degF", 4)
        + record("BodyMass", "150", "lb", 5)
        + record("StepCount", "812", "count", 6)
        + record("ActiveEnergyBurned", "3.5", "kcal", 7)
        + half("Diastolic", "82")
        + half("Systolic", "128")
        + '<Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Test Watch"'
        + f' startDate="{day} 08:30:00 -0500" endDate="{day} 08:30:00 -0500">'
        + half("Diastolic", "82")
        + half("Systolic", "128")
        + "</Correlation>"
        + "".join(
            f'<Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Test Watch"'
            f' startDate="{start}" endDate="{end}" value="HKCategoryValueSleepAnalysis{value}"/>'
            for value, start, end in night
        )
        + "</HealthData>"
    )
    export = tmp_path / "export.xml"
    export.write_text(xml)

    done = import_export(pipeline, export, patient)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted  8" in done.stdout
    assert "HKQuantityTypeIdentifierActiveEnergyBurned" in done.stdout

    rows = settled_vitals(pipeline, patient)  # a sentinel stored after everything posted
    by_channel = {row["channel"]: row for row in rows}
    assert len(rows) == 9, rows
    assert by_channel["heart_rate"]["value"] == 72
    assert by_channel["spo2"]["value"] == pytest.approx(97)
    assert by_channel["blood_glucose"]["value"] == pytest.approx(99.0857, abs=1e-3)
    assert by_channel["blood_glucose"]["unit"] == "mg/dL"
    assert by_channel["body_temperature"]["value"] == pytest.approx(37.0)
    assert by_channel["body_temperature"]["unit"] == "Cel"
    assert by_channel["weight"]["value"] == pytest.approx(68.0389, abs=1e-3)
    assert by_channel["steps"]["value"] == 812
    assert by_channel["blood_pressure.systolic"]["value"] == 128
    assert by_channel["blood_pressure.diastolic"]["value"] == 82
    assert by_channel["sleep_duration"]["value"] == 5.25
    assert by_channel["heart_rate"]["_time"] == datetime.fromisoformat(f"{day}T13:01:00+00:00")


def test_cli_import_resumes_after_interruption_and_stores_each_reading_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    patient = new_patient("ah")
    pipeline.enroll(patient, ALL_METRICS)
    summary = write_export(tmp_path / "export.zip", records=1500, end=ANCHOR)
    points = summary.total_readings + summary.readings["blood_pressure"]  # BP: two channels

    stopped = import_export(pipeline, summary.path, patient, "--batch", "100", "--stop-after", "4")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert len(settled_vitals(pipeline, patient)) < points

    resumed = import_export(pipeline, summary.path, patient, "--batch", "100")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming  after 400 readings" in resumed.stdout
    assert f"posted    {summary.total_readings - 400} readings" in resumed.stdout
    assert per_channel(settled_vitals(pipeline, patient)) == expected(summary.readings), (
        resumed.stdout + pipeline.diagnostics()
    )

    # The whole export again: the same event ids, so every reading is still stored once.
    again = import_export(pipeline, summary.path, patient, "--restart")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"accepted  {summary.total_readings}" in again.stdout
    rows = settled_vitals(pipeline, patient)
    assert len(rows) == points
    assert len({(r["channel"], r["event_id"]) for r in rows}) == points


def test_upload_endpoint_imports_an_export(pipeline: Pipeline, tmp_path: Path) -> None:
    patient = new_patient("ah")
    pipeline.enroll(patient, ALL_METRICS)
    summary = write_export(tmp_path / "export.zip", records=600, end=ANCHOR)
    headers = {"X-API-Key": API_KEY}
    response = httpx.post(
        f"{pipeline.ingest_url}/v1/imports/apple-health",
        params={"patient_id": patient},
        content=summary.path.read_bytes(),
        headers={**headers, "Content-Type": "application/zip"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    location = pipeline.ingest_url + response.headers["Location"]

    def finished() -> dict[str, Any] | None:
        job = httpx.get(location, headers=headers, timeout=10).json()
        return dict(job) if job["state"] != "running" else None

    job = wait_for(finished, timeout=120, what="the import job", diagnostics=pipeline.diagnostics)
    assert job["state"] == "done", job
    assert job["accepted"] == summary.total_readings
    assert job["rejected"] == 0
    assert per_channel(settled_vitals(pipeline, patient)) == expected(summary.readings)
