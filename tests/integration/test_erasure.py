"""Erasure on the real stack: ingest, processors (with the store stage), the alerts worker
and the care-team API as processes, real Kafka, real InfluxDB 1.8.

Two patients are enrolled, send the same readings (a heart-rate spike that opens an alert)
and get a care plan; the one to be erased also gets a silence (set through the care API);
then they are erased with ``pghd patients erase``. Afterwards nothing about them is left
where the platform keeps it: no point in any InfluxDB measurement, no live record naming
them in any compacted topic or table changelog, nothing from any API (their silence
included), and their new readings are refused; the other patient is untouched. Asking again
is harmless.
The InfluxDB 2.x side of the eraser runs against a real InfluxDB 2.7.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import KafkaAdminClient
from typer.testing import CliRunner

from deploy.local.harness import (
    ADMIN_TOKEN,
    Pipeline,
    heart_rate_series,
    new_patient,
    reading,
    running_care_api,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.influxdb2 import Influx2Server
from deploy.local.process import log_tail
from deploy.local.topics import read_table
from pghd import topics
from pghd.cli import app as cli
from processors.store.erase import InfluxEraser, buckets_to_erase
from tests.clock import ANCHOR
from tests.integration.sync import alert_states, caught_up
from tests.integration.test_care_access import RUN, write_users

NORMAL = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71]
COMPACTED = (topics.ENROLLMENTS, topics.CARE_PLANS, topics.ALERTS)


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("erasure")
    with running_pipeline(stack_env=stack_env, influx=influx, workdir=workdir) as running:
        yield running


@pytest.fixture(scope="module")
def care_api(
    kafka_bootstrap: str, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("erasure-care-api")
    users = workdir / "users.json"
    write_users(users, {"auditor": ("admin", [])})
    with running_care_api(
        kafka_bootstrap=kafka_bootstrap,
        log=workdir / "care-api.log",
        env={"PGHD_CARE_API_USERS_FILE": str(users)},
    ) as url:
        yield url


def _care(url: str, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer auditor-{RUN}"}
    return httpx.request(method, url + path, json=body, params=params, headers=headers, timeout=10)


def _points(influx: InfluxServer, patient: str) -> list[dict[str, Any]]:
    """Every stored value of ``patient`` in every measurement, over all time."""
    return influx.query(
        f'from(bucket: "{influx.bucket}") |> range(start: 0)'
        f' |> filter(fn: (r) => r.patient_id == "{patient}")'
    )


def _tables(pipeline: Pipeline) -> list[str]:
    """The compacted topics of the spec and the workers' table changelogs."""
    admin = KafkaAdminClient(bootstrap_servers=pipeline.kafka_bootstrap)
    try:
        names = admin.list_topics()
    finally:
        admin.close()
    apps = (pipeline.env["PGHD_PROCESSORS_APP_ID"], pipeline.env["PGHD_ALERTS_APP_ID"])
    changelogs = [n for n in names if n.startswith(apps) and n.endswith("-changelog")]
    assert len(changelogs) >= 3, names  # processors state and care plans, alerts state
    return [*COMPACTED, *sorted(changelogs)]


def _naming(pipeline: Pipeline, patient: str) -> dict[str, int]:
    """Live records whose key or value names ``patient``, per table."""
    needle = patient.encode()
    found: dict[str, int] = {}
    for topic in _tables(pipeline):
        live = read_table(pipeline.kafka_bootstrap, topic)
        count = sum(1 for k, v in live.items() if needle in k or needle in v)
        if count:
            found[topic] = count
    return found


def _silence(pipeline: Pipeline, care_api: str, patient: str) -> str:
    """A silence of the patient, set by the admin through the care API, and in the alerts
    worker's state (its table changelog) before the test goes on; its id."""
    ends_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = _care(care_api, "POST", "/v1/silences", {"patient_id": patient, "ends_at": ends_at})
    assert response.status_code == 202, response.text
    silence_id = str(response.json()["silence_id"])
    listed = _care(care_api, "GET", "/v1/silences", patient_id=patient).json()["items"]
    assert [s["silence_id"] for s in listed] == [silence_id]
    changelogs = [t for t in _tables(pipeline) if t.startswith(pipeline.env["PGHD_ALERTS_APP_ID"])]
    wait_for(
        lambda: (
            any(
                silence_id.encode() in value
                for topic in changelogs
                for value in read_table(pipeline.kafka_bootstrap, topic).values()
            )
            or None
        ),
        timeout=30,
        what=f"the alerts worker to hold {patient}'s silence",
        diagnostics=pipeline.diagnostics,
    )
    return silence_id


def _erase(pipeline: Pipeline, patient: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        cli,
        [
            "patients",
            "erase",
            patient,
            "--yes",
            "--json",
            "--wait",
            "90",
            "--url",
            pipeline.ingest_url,
            "--token",
            ADMIN_TOKEN,
        ],
    )
    return result.exit_code, json.loads(result.output)


def _prepare(pipeline: Pipeline, care_api: str, patient: str) -> None:
    """The patient's readings stored and judged, an alert open, a care plan set."""
    series = heart_rate_series(
        patient, [*NORMAL, 165, 166, 71], start=ANCHOR + timedelta(minutes=10)
    )
    assert pipeline.post(series).status_code == 202
    pipeline.wait_vitals(patient, len(series))
    plan = _care(care_api, "PUT", f"/v1/patients/{patient}/care-plan", {"spo2_scale": 2})
    assert plan.status_code == 202, plan.text
    wait_for(
        lambda: (
            [a for a in alert_states(pipeline.kafka_bootstrap) if a.patient_id == patient] or None
        ),
        timeout=60,
        what=f"an alert of {patient}",
        diagnostics=pipeline.diagnostics,
    )
    wait_for(
        lambda: _care(care_api, "GET", "/v1/alerts", patient_id=patient).json()["items"] or None,
        timeout=30,
        what=f"the care API to show {patient}'s alert",
    )


def test_erase_leaves_nothing_of_the_patient_and_refuses_their_readings(
    pipeline: Pipeline, care_api: str
) -> None:
    gone, kept = new_patient("erase"), new_patient("keep")
    for patient in (gone, kept):
        _prepare(pipeline, care_api, patient)
    _silence(pipeline, care_api, gone)
    assert _naming(pipeline, gone), "the scan must see the patient before the erasure"
    stored = len(_points(pipeline.influx, gone))

    code, report = _erase(pipeline, gone)
    assert code == 0, json.dumps(report)
    assert report["pending"] == [] and report["failed"] == {}
    removed = report["removed"]
    assert removed["ingest"] == {"enrollments": 1, "care_plan_tombstones": 1}
    assert removed["processors"]["state_records"] == 1
    assert removed["store"]["points"] == stored > 0
    assert removed["alerts"]["alerts"] >= 1 and removed["alerts"]["alert_states"] == 1
    assert removed["alerts"]["silences"] == 1

    # InfluxDB: nothing in any measurement; the other patient untouched
    assert _points(pipeline.influx, gone) == []
    assert len(_points(pipeline.influx, kept)) == stored
    # Kafka, every compacted topic and table changelog read as a table: nothing names them
    caught_up(pipeline.kafka_bootstrap, pipeline.env["PGHD_PROCESSORS_APP_ID"])
    assert _naming(pipeline, gone) == {}
    assert set(_naming(pipeline, kept)) >= {topics.ENROLLMENTS, topics.CARE_PLANS, topics.ALERTS}
    # the APIs
    assert pipeline.admin("GET", f"/v1/patients/{gone}").status_code == 404
    assert pipeline.admin("GET", f"/v1/patients/{gone}/export").status_code == 404
    assert pipeline.admin("GET", f"/v1/patients/{kept}/export").status_code == 200
    wait_for(
        lambda: _care(care_api, "GET", "/v1/alerts", patient_id=gone).json()["items"] == [] or None,
        timeout=30,
        what="the care API to forget the erased patient's alerts",
    )
    assert _care(care_api, "GET", f"/v1/patients/{gone}/care-plan").status_code == 404
    wait_for(
        lambda: (
            _care(care_api, "GET", "/v1/silences", patient_id=gone).json()["items"] == [] or None
        ),
        timeout=30,
        what="the care API to forget the erased patient's silence",
    )
    assert _care(care_api, "GET", "/v1/alerts", patient_id=kept).json()["items"]
    # new readings are refused
    late = pipeline.post(reading(gone, 70, ANCHOR + timedelta(hours=3)), enroll=False)
    assert late.status_code == 422, late.text
    assert late.json()["errors"][0]["detail"] == f"patient {gone} is not enrolled with source acme"

    # asking again is harmless and finds nothing more
    code, again = _erase(pipeline, gone)
    assert code == 0, again
    assert again["removed"]["store"]["points"] == 0
    assert again["removed"]["processors"] == {"state_records": 0, "dedup_buckets": 0}
    assert again["removed"]["alerts"]["alerts"] == 0
    assert again["removed"]["ingest"]["enrollments"] == 0

    # the audit trail keeps who asked, and each stage's report
    audit = _care(care_api, "GET", "/v1/audit", patient_id=gone, limit=10_000).json()
    asked = [e for e in audit if e["operation"] == "POST /v1/patients/{patient_id}/erase"]
    assert len(asked) == 2 and all(e["agent"]["name"] == "harness" for e in asked)
    stages = {e["service"] for e in audit if e["request_id"] == report["erasure_id"]}
    assert stages == {"processors", "store", "alerts"}
    assert not log_tail_has_errors(pipeline)


def log_tail_has_errors(pipeline: Pipeline) -> bool:
    """Whether a service logged a traceback (an erasure must not crash anything)."""
    return any("Traceback" in log_tail(path, 400) for path in pipeline.logs.values())


def test_the_eraser_deletes_one_patients_points_from_every_bucket_of_influxdb_2(
    influx2: Influx2Server,
) -> None:
    gone, kept = new_patient("erase2"), new_patient("keep2")
    downsampled = f"{influx2.bucket}_downsampled"
    when = int((ANCHOR - timedelta(days=400)).timestamp())  # old points go too
    with InfluxDBClient(url=influx2.url, token=influx2.token, org=influx2.org) as client:
        if client.buckets_api().find_bucket_by_name(downsampled) is None:
            client.buckets_api().create_bucket(bucket_name=downsampled, org=influx2.org)
        writer = client.write_api(write_options=SYNCHRONOUS)
        for bucket in (influx2.bucket, downsampled):
            lines = [
                f"vitals,patient_id={p},channel=heart_rate value={60 + i} {when + i * 60}"
                for p in (gone, kept)
                for i in range(5)
            ]
            writer.write(bucket=bucket, record=lines, write_precision="s")
    eraser = InfluxEraser(
        url=influx2.url,
        token=influx2.token,
        org=influx2.org,
        buckets=buckets_to_erase(influx2.bucket, ["no-such-bucket"]),
        timeout_s=10,
    )
    assert asyncio.run(eraser.erase(gone)) == {"points": 10}
    for bucket in (influx2.bucket, downsampled):
        flux = (
            f'from(bucket: "{bucket}") |> range(start: 0)'
            ' |> filter(fn: (r) => r._measurement == "vitals")'
        )
        patients = [row["patient_id"] for row in influx2.query(flux)]
        assert gone not in patients
        assert patients.count(kept) == 5
    assert asyncio.run(eraser.erase(gone)) == {"points": 0}


def test_new_readings_of_an_erased_patient_are_refused_even_after_a_restart_of_ingest(
    pipeline: Pipeline,
) -> None:
    """The enrollment is gone from the compacted topic itself, not only from memory."""
    patient = new_patient("erase-restart")
    pipeline.enroll(patient)
    code, _ = _erase(pipeline, patient)
    assert code == 0
    workdir = Path(pipeline.logs["ingest"]).parent / "second-ingest"
    workdir.mkdir(exist_ok=True)
    env = {k: v for k, v in pipeline.env.items() if k.startswith("PGHD_")}
    with running_pipeline(
        stack_env=env, influx=pipeline.influx, workdir=workdir, services=("ingest",)
    ) as second:
        late = second.post(reading(patient, 70, ANCHOR), enroll=False)
        assert late.status_code == 422, late.text
