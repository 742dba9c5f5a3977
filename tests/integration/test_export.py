"""Patient export on real servers: the reader on InfluxDB 1.8 and 2.7, and the round trip.

The round trip is the issue's must-show: readings shaped like what devices send (the FHIR
R4 vital-signs examples, Open mHealth schema samples, a watch's heart rate) go over HTTP
through ingest, Kafka and the processors into InfluxDB; the patient is exported through
ingest's route (FHIR) and ``pghd patients export`` (Open mHealth); each export is posted
back, the Bundle to ``/v1/fhir`` and the data points to ``/v1/omh``, into a fresh stack (new
processors consumer groups writing to a database of their own), and the points stored
there are the points the first stack stored: same metrics, channels, times, interval ends,
values and units (and, through FHIR, devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from typer.testing import CliRunner

from deploy.local.harness import (
    ADMIN_TOKEN,
    API_KEY,
    Pipeline,
    heart_rate_series,
    new_patient,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.influxdb2 import Influx2Server
from pghd import topics
from pghd.catalogue import Metric
from pghd.commands import patients as patients_command
from pghd.export.influx import InfluxExportReader
from pghd.export.records import StoredFinding, StoredReading, format_time
from tests.clock import ANCHOR
from tests.integration.sync import caught_up, settled_vitals
from tests.unit.ingest.fhir_documents import (
    blood_pressure,
    body_temperature_f,
    bundle,
    glucose_mmol,
    heart_rate,
    over,
    sat_o2,
    sleep_duration,
    steps,
    weight_lb,
)

FHIR = "application/fhir+json"
METRICS = [
    "heart_rate",
    "resting_heart_rate",
    "blood_pressure",
    "body_temperature",
    "spo2",
    "respiratory_rate",
    "steps",
    "sleep_duration",
    "weight",
    "blood_glucose",
]


# --- the reader, on both InfluxDB versions ------------------------------------------------


def _line(measurement: str, tags: dict[str, str], fields: str, when: Any) -> str:
    tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
    return f"{measurement},{tag_text} {fields} {ns}"


@pytest.mark.parametrize("server_name", ["influx", "influx2"])
def test_the_reader_pages_through_a_history_on_both_influxdb_versions(
    server_name: str, request: pytest.FixtureRequest
) -> None:
    server: InfluxServer | Influx2Server = request.getfixturevalue(server_name)
    bucket = server.create_database(f"export_{uuid.uuid4().hex[:8]}")
    patient, other = "p-reader", "p-other"
    start = ANCHOR - timedelta(days=20)
    lines = []

    def vital(pid: str, channel: str, value: float, when: Any, **extra: str) -> None:
        metric = channel.split(".")[0]
        unit = {"blood_pressure": "mm[Hg]", "steps": "{steps}"}.get(metric, "/min")
        tags = {
            "patient_id": pid,
            "metric": metric,
            "channel": channel,
            "source": "acme",
            "device": extra.pop("device", "watch-1"),
            "unit": unit,
        }
        fields = f'value={value},event_id="{extra.pop("event_id", f"ev-{when.timestamp()}")}"'
        fields += "".join(f',{k}="{v}"' for k, v in extra.items())
        lines.append(_line("vitals", tags, fields, when))

    # 300 heart rates spread over 20 days, denser towards the end
    hearts = [start + timedelta(hours=i * i / 300) for i in range(300)]  # 12 days
    for i, when in enumerate(hearts):
        vital(patient, "heart_rate", 60 + i % 30, when)
    pressure_at = start + timedelta(days=3, minutes=7)
    vital(patient, "blood_pressure.systolic", 128, pressure_at, event_id="bp-1", device="cuff")
    vital(patient, "blood_pressure.diastolic", 84, pressure_at, event_id="bp-1", device="cuff")
    steps_at = start + timedelta(days=5)
    end = format_time(steps_at + timedelta(hours=1))
    vital(patient, "steps", 1200, steps_at, event_id="st-1", device="unknown", effective_end=end)
    vital(patient, "heart_rate", 77, hearts[10], device="watch-2")  # a second device, same time
    vital(other, "heart_rate", 99, hearts[10])  # someone else's
    anomaly_tags = {
        "patient_id": patient,
        "metric": "heart_rate",
        "channel": "heart_rate",
        "detector": "deviation",
        "severity": "critical",
    }
    lines.append(
        _line(
            "anomalies",
            {**anomaly_tags, "phase": "onset"},
            'score=6.5,value=165,explanation="far above",anomaly_id="an-1",episode_id="ep-1"',
            hearts[-1],
        )
    )
    lines.append(
        _line(
            "anomalies",
            {**anomaly_tags, "severity": "info", "detector": "gap"},
            'score=1,value=70,explanation="after a gap",anomaly_id="an-2"',
            hearts[5],
        )
    )
    with InfluxDBClient(url=server.url, token=server.token, org=server.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines)

    async def read() -> tuple[list[StoredReading], list[StoredFinding], Any]:
        reader = InfluxExportReader(
            url=server.url,
            token=server.token,
            org=server.org,
            bucket=bucket,
            target_rows=20,
            first_span=timedelta(hours=1),
        )
        try:
            extent = await reader.extent(patient)
            assert extent is not None
            readings = [r async for r in reader.readings(patient, extent)]
            findings = [f async for f in reader.findings(patient, extent)]
            return readings, findings, await reader.extent("p-nobody")
        finally:
            await reader.close()

    readings, findings, nobody = asyncio.run(read())
    assert nobody is None
    assert len(readings) == 300 + 1 + 1 + 1
    assert [r.time for r in readings] == sorted(r.time for r in readings)
    assert all(r.patient_id == patient for r in readings)
    hr = [r for r in readings if r.metric is Metric.HEART_RATE and r.device == "watch-1"]
    assert [r.time for r in hr] == hearts
    [bp] = [r for r in readings if r.metric is Metric.BLOOD_PRESSURE]
    assert (dict(bp.values), bp.device, bp.time) == (
        {"systolic": 128.0, "diastolic": 84.0},
        "cuff",
        pressure_at,
    )
    [st] = [r for r in readings if r.metric is Metric.STEPS]
    assert (st.time, st.end, st.device) == (steps_at, steps_at + timedelta(hours=1), None)
    assert {r.device for r in readings if r.time == hearts[10]} == {"watch-1", "watch-2"}
    assert [(f.anomaly_id, f.episode_id, f.phase) for f in findings] == [
        ("an-2", None, None),
        ("an-1", "ep-1", "onset"),
    ]
    assert findings[1].value == 165 and findings[1].unit == "/min"


# --- the round trip through two stacks --------------------------------------------------


def _rows(influx: InfluxServer, bucket: str, measurement: str, patient: str) -> list[Any]:
    return influx.query(
        f'from(bucket: "{bucket}") |> range(start: -60d, stop: 1d)'
        f' |> filter(fn: (r) => r._measurement == "{measurement}" and r.patient_id == "{patient}")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        ' |> group() |> sort(columns: ["_time", "channel", "device"])'
    )


def _points(
    influx: InfluxServer, bucket: str, patient: str, *, devices: bool
) -> list[tuple[Any, ...]]:
    """The patient's stored readings as (metric, channel, time, end, value, unit[, device])."""
    return sorted(
        (
            row["metric"],
            row["channel"],
            row["_time"],
            row.get("effective_end"),
            round(float(row["value"]), 9),
            row["unit"],
            *((row["device"],) if devices else ()),
        )
        for row in _rows(influx, bucket, "vitals", patient)
    )


def _fresh(
    stack_env: dict[str, str], influx: InfluxServer, workdir: Path, name: str
) -> contextlib.AbstractContextManager[Pipeline]:
    """A fresh stack: new processors consumer groups writing to a database of their own."""
    bucket = influx.create_database(f"{name}_{uuid.uuid4().hex[:8]}")
    return running_pipeline(
        stack_env=stack_env,
        influx=influx,
        workdir=workdir / name,
        services=("ingest", "processors"),
        extra_env={"PGHD_INFLUX_BUCKET": bucket},
    )


def _device_readings(pipeline: Pipeline, patient: str) -> None:
    """What a patient's devices and apps send, over HTTP, as the specs' examples shape it."""
    pipeline.enroll(patient, METRICS)
    when = ANCHOR - timedelta(hours=4)
    at = when.isoformat()
    night = (ANCHOR - timedelta(hours=14), ANCHOR - timedelta(hours=6, minutes=30))
    document = bundle(
        "batch",
        heart_rate(62, patient=patient, when=at, device={"reference": "Device/watch-7731"}),
        body_temperature_f(98.6, patient=patient, when=at),
        blood_pressure(128, 84, patient=patient, when=at),
        sat_o2(97, patient=patient, when=at),
        glucose_mmol(6.3, patient=patient, when=at),
        weight_lb(185, patient=patient, when=at),
        # a daily weight given as a date alone, as the R4 dateTime allows
        weight_lb(184, patient=patient, when=when.date().isoformat(), id_="weighed-on-a-day"),
        steps(1200, patient=patient, **over(when - timedelta(hours=1), when)),
        sleep_duration(7.25, patient=patient, **over(*night)),
    )
    posted = httpx.post(
        f"{pipeline.ingest_url}/v1/fhir",
        content=orjson.dumps(document),
        headers={"X-API-Key": API_KEY, "Content-Type": FHIR},
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    assert {e["response"]["status"] for e in posted.json()["entry"]} == {"201 Created"}
    omh_points = [
        {
            "header": {
                "id": f"{patient}-resp",
                "creation_date_time": at,
                "schema_id": {"namespace": "omh", "name": "respiratory-rate", "version": "2.0"},
                "user_id": patient,
            },
            "body": {
                "respiratory_rate": {"value": 14, "unit": "breaths/min"},
                "effective_time_frame": {"date_time": (when + timedelta(minutes=2)).isoformat()},
                "temporal_relationship_to_physical_activity": "at rest",
            },
        },
        {  # a date and a part of the day, as the omh time-interval schema allows
            "header": {
                "id": f"{patient}-resp-morning",
                "creation_date_time": at,
                "schema_id": {"namespace": "omh", "name": "respiratory-rate", "version": "2.0"},
                "user_id": patient,
            },
            "body": {
                "respiratory_rate": {"value": 15, "unit": "breaths/min"},
                "effective_time_frame": {
                    "time_interval": {"date": when.date().isoformat(), "part_of_day": "morning"}
                },
            },
        },
    ]
    posted = _post_omh(pipeline, omh_points)
    assert posted.json()["accepted"] == 2, posted.text
    # A watch's heart rate at rest, with a spike the processors flag: a finding to export.
    normal = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71]
    series = heart_rate_series(
        patient, [*normal, 165, 166, 71], start=ANCHOR + timedelta(minutes=10)
    )
    assert pipeline.post(series).status_code == 202


def _post_omh(pipeline: Pipeline, points: list[Any]) -> httpx.Response:
    response = httpx.post(
        f"{pipeline.ingest_url}/v1/omh",
        content=orjson.dumps(points),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response


def _settled_points(
    pipeline: Pipeline, influx: InfluxServer, patient: str, expected: list[Any], *, devices: bool
) -> list[Any]:
    bucket = pipeline.env["PGHD_INFLUX_BUCKET"]
    caught_up(pipeline.kafka_bootstrap, pipeline.env["PGHD_PROCESSORS_APP_ID"])
    caught_up(
        pipeline.kafka_bootstrap,
        f"{pipeline.env['PGHD_PROCESSORS_APP_ID']}-store",
        (topics.POINTS,),
    )
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: True if _points(influx, bucket, patient, devices=devices) == expected else None,
            timeout=30,
            what="the re-ingested points",
        )
    return _points(influx, bucket, patient, devices=devices)


def test_an_export_re_ingested_into_a_fresh_stack_gives_the_same_points(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("export")
    patient = new_patient("export")
    omh_file = workdir / "export-omh.json"

    with _fresh(stack_env, influx, workdir, "first") as first:
        bucket = first.env["PGHD_INFLUX_BUCKET"]
        _device_readings(first, patient)
        settled_vitals(first, patient)  # everything posted is stored (and a resting HR)
        wait_for(
            lambda: _rows(influx, bucket, "anomalies", patient) or None,
            timeout=60,
            what="the spike's finding in InfluxDB",
            diagnostics=first.diagnostics,
        )
        original = _points(influx, bucket, patient, devices=True)
        assert {p[0] for p in original} == set(METRICS)
        precisions = {
            (row["metric"], row["effective_precision"])
            for row in _rows(influx, bucket, "vitals", patient)
            if row.get("effective_precision")
        }
        assert precisions == {("weight", "day"), ("respiratory_rate", "morning")}
        findings = _rows(influx, bucket, "anomalies", patient)

        exported = httpx.get(
            f"{first.ingest_url}/v1/patients/{patient}/export",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        )
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"] == FHIR
        fhir_bundle = exported.json()
        cli = CliRunner().invoke(
            patients_command.app,
            [
                "export",
                patient,
                "--format",
                "omh",
                "--url",
                first.ingest_url,
                "--token",
                ADMIN_TOKEN,
                "--output",
                str(omh_file),
            ],
        )
        assert cli.exit_code == 0, cli.output
        unknown = httpx.get(
            f"{first.ingest_url}/v1/patients/{new_patient('nobody')}/export",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert unknown.status_code == 404

    kinds = [e["resource"]["resourceType"] for e in fhir_bundle["entry"]]
    dated = [e["resource"].get("effectiveDateTime") for e in fhir_bundle["entry"]]
    assert (ANCHOR - timedelta(hours=4)).date().isoformat() in dated  # the weight's date
    assert kinds.count("Observation") == len({(p[0], p[2], p[6]) for p in original})
    assert kinds.count("DetectedIssue") == len(findings) >= 1

    # FHIR: the Bundle, posted as it is, into a fresh stack.
    with _fresh(stack_env, influx, workdir, "fhir") as fresh:
        fresh.enroll(patient, METRICS)
        posted = httpx.post(
            f"{fresh.ingest_url}/v1/fhir",
            content=orjson.dumps(fhir_bundle),
            headers={"X-API-Key": API_KEY, "Content-Type": FHIR},
            timeout=60,
        )
        assert posted.status_code == 200, posted.text
        statuses = [e["response"]["status"] for e in posted.json()["entry"]]
        assert statuses == [
            "201 Created" if kind == "Observation" else "400 Bad Request" for kind in kinds
        ]
        again = _settled_points(fresh, influx, patient, original, devices=True)
    assert again == original

    # Open mHealth: the data points, posted as they are, into another fresh stack. Resting
    # heart rate has no Open mHealth schema ingest takes (pghd:resting-heart-rate), and
    # findings are pghd:finding: those are refused, everything else comes back.
    points = orjson.loads(omh_file.read_bytes())
    refused = {i for i, p in enumerate(points) if p["header"]["schema_id"]["namespace"] == "pghd"}
    expected = [p[:6] for p in original if p[0] != "resting_heart_rate"]
    with _fresh(stack_env, influx, workdir, "omh") as fresh:
        fresh.enroll(patient, METRICS)
        answer = _post_omh(fresh, points).json()
        assert {i["index"] for i in answer["items"] if i["status"] == "rejected"} == refused
        again_omh = _settled_points(fresh, influx, patient, sorted(expected), devices=False)
    assert again_omh == sorted(expected)


@pytest.mark.parametrize("server_name", ["influx", "influx2"])
def test_a_point_on_a_window_boundary_is_exported_once(
    server_name: str, request: pytest.FixtureRequest
) -> None:
    """Daily readings taken at the same time every day fall exactly on the windows'
    boundaries (a window is a day at first): InfluxDB 1.8's ``range`` also returns the
    points stamped at its stop, which the next window reads again unless they are
    filtered out (two readings at one instant, read twice, are not folded back into two)."""
    server: InfluxServer | Influx2Server = request.getfixturevalue(server_name)
    bucket = server.create_database(f"export_{uuid.uuid4().hex[:8]}")
    patient = "p-daily"
    first = ANCHOR - timedelta(days=10)
    days = [first + timedelta(days=i) for i in range(6)]
    tags = {
        "patient_id": patient,
        "metric": "weight",
        "channel": "weight",
        "source": "acme",
        "unit": "kg",
    }
    lines = [
        _line("vitals", {**tags, "device": device}, f'value={80 + i},event_id="w-{i}"', d)
        for i, d in enumerate(days)
        for device in ("scale", "scale-2")  # two readings at each instant
    ]
    with InfluxDBClient(url=server.url, token=server.token, org=server.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines)

    async def read() -> list[StoredReading]:
        reader = InfluxExportReader(
            url=server.url,
            token=server.token,
            org=server.org,
            bucket=bucket,
            first_span=timedelta(days=1),
            target_rows=1,  # the windows stay a day long: a boundary at every reading
        )
        try:
            extent = await reader.extent(patient)
            assert extent is not None
            return [r async for r in reader.readings(patient, extent)]
        finally:
            await reader.close()

    readings = asyncio.run(read())
    assert [(r.event_id, r.device) for r in readings] == [
        (f"w-{i}", device) for i in range(6) for device in ("scale", "scale-2")
    ]
