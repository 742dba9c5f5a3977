"""Care plans end to end on real Kafka and InfluxDB: set through the care-team API (and CLI)
while a processors worker runs, judged with at once, and still held after a restart.

ingest (HTTP), the care-team API (``python -m alerts.api.main``) and a processors worker
(``python -m processors.main``) run as real processes. A scale-2 plan for one patient goes
through ``pghd care-plan set`` (the API produces it to ``pghd.care-plans.v1``); once the
worker's ``care_plans`` table has it (seen on the table's changelog), SpO2 readings of 89 %
are posted for that patient and for one without a plan: only the latter gets a NEWS2 SpO2
anomaly (one: its readings fold into one episode, :mod:`processors.episodes`), and the
``news2`` points in InfluxDB score SpO2 0 on scale 2 and 3 on scale 1. The worker is then
stopped and started again (memory store: the table comes back from its changelog) and the
plan still holds, while a new patient without a plan is flagged at once; cleared through the
API, it no longer does.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from deploy.local.harness import (
    Pipeline,
    new_patient,
    reading,
    running_care_api,
    running_pipeline,
    service_env,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.process import free_port, log_tail, start_detached, stop_process
from pghd import topics, wire
from pghd.access import hash_token
from pghd.care_plans import CarePlan
from pghd.cli import app as cli
from pghd.contracts import Anomaly
from tests.clock import ANCHOR
from tests.integration.sync import caught_up

TOKEN = "care-plan-integration-token"
USER = "nurse-copd-clinic"


@pytest.fixture
def ingest(stack_env: dict[str, str], influx: InfluxServer, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=tmp_path / "ingest", services=("ingest",)
    ) as pipeline:
        yield pipeline


@pytest.fixture
def care_api(kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    """The care-team API process; yields its base URL."""
    tokens = json.dumps({USER: hash_token(TOKEN)})
    with running_care_api(
        kafka_bootstrap=kafka_bootstrap,
        log=tmp_path / "care-api.log",
        env={"PGHD_CARE_API_TOKENS": tokens},
    ) as url:
        yield url


class Worker:
    """A processors worker that can be stopped and started again with the same app id."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_detached(
            [sys.executable, "-m", "processors.main"],
            log_file=self.log,
            env=self.env,
            die_with_parent=True,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process.pid, timeout=30)

    def diagnostics(self) -> str:
        return log_tail(self.log, 60)


def _wait(check: Any, what: str, *, worker: Worker, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{worker.diagnostics()}")


def _changelog_value(bootstrap: str, topic: str, key: str) -> tuple[bool, Any]:
    """Whether the changelog has ``key``, and its latest value (None: deleted)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return False, None
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found, value = False, None
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key is not None and json.loads(record.key) == key:
                        found = True
                        value = None if record.value is None else json.loads(record.value)
        return found, value
    finally:
        consumer.close()


def _plan(url: str, patient: str) -> dict[str, Any] | None:
    """The patient's plan as ``GET /v1/patients/{id}/care-plan`` answers it (None: 404)."""
    response = httpx.get(
        f"{url}/v1/patients/{patient}/care-plan",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    plan: dict[str, Any] = response.json()
    return plan


def _spo2(patient: str, value: float, when: datetime, n: int) -> dict[str, object]:
    return reading(
        patient, value, when, metric="spo2", unit="%", context="rest", event_id=f"{patient}-{n}"
    )


def _news2_spo2_anomalies(found: list[Anomaly]) -> list[Anomaly]:
    return [a for a in found if a.channel == "spo2" and a.detector == "news2"]


def _news2_points(ingest: Pipeline, patient: str) -> list[dict[str, Any]]:
    return ingest.influx.query(
        f'from(bucket: "{ingest.influx.bucket}") |> range(start: -30d)'
        f' |> filter(fn: (r) => r._measurement == "news2" and r.patient_id == "{patient}")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
        ' |> group() |> sort(columns: ["_time"])'
    )


@pytest.mark.timeout(600)
def test_a_care_plan_set_through_the_api_is_judged_with_at_once_and_survives_a_restart(
    stack_env: dict[str, str], ingest: Pipeline, care_api: str, tmp_path: Path
) -> None:
    suffix = f"plans-{uuid.uuid4().hex[:8]}"
    env = service_env(
        stack_env,
        data_dir=tmp_path,
        sink_url="json://127.0.0.1:9/unused",
        ingest_port=free_port(),
        app_suffix=suffix,
        warmup=10,
    )
    changelog = f"pghd-processors-{suffix}-care_plans-changelog"
    bootstrap = stack_env["PGHD_KAFKA_BOOTSTRAP"]
    worker = Worker(env, tmp_path / "processors.log")
    worker.start()
    try:
        copd, other = new_patient("copd"), new_patient("noplan")
        start = ANCHOR - timedelta(minutes=30)
        # the worker is up and judging: a first reading of the other patient is stored
        assert ingest.post([_spo2(other, 97, start, 0)]).status_code == 202
        _wait(lambda: ingest.vitals(other), "the worker to judge a first reading", worker=worker)

        result = CliRunner().invoke(
            cli,
            ["care-plan", "set", copd, "--spo2-scale", "2", "--note", "COPD, target 88-92 %"],
            env={"PGHD_CARE_API_URL": care_api, "PGHD_CARE_TOKEN": TOKEN},
        )
        assert result.exit_code == 0, result.output
        assert f"patient {copd}: NEWS2 SpO2 scale 2" in result.output
        shown = _plan(care_api, copd)
        assert shown is not None and (shown["spo2_scale"], shown["updated_by"]) == (2, USER)
        _wait(
            lambda: _changelog_value(bootstrap, changelog, copd)[0],
            "the worker's care_plans table to hold the plan",
            worker=worker,
        )
        # a plan another API instance set reaches this one's read model through the topic
        elsewhere = CarePlan.model_validate(
            {
                "patient_id": new_patient("elsewhere"),
                "spo2_scale": 2,
                "updated_at": datetime.now(UTC),
                "updated_by": "another-instance",
            }
        )
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        try:
            key = elsewhere.patient_id.encode()
            producer.send(topics.CARE_PLANS, key=key, value=wire.encode(elsewhere)).get(10)
        finally:
            producer.close()
        followed = _wait(
            lambda: _plan(care_api, elsewhere.patient_id),
            "the API to read a plan set elsewhere",
            worker=worker,
            timeout=30,
        )
        assert followed["updated_by"] == "another-instance"

        # SpO2 89 %: score 3 on scale 1 (critical), 0 on the plan's scale 2; the other
        # patient's second 89 % goes on the episode its first one opened (no new anomaly)
        body = [
            _spo2(p, 89, start + timedelta(minutes=1 + i), i + 1)
            for p in (copd, other)
            for i in range(2)
        ]
        assert ingest.post(body).status_code == 202
        ingest.wait_vitals(copd, 2)
        ingest.wait_vitals(other, 3)
        # Everything judged (offsets committed to the end): no anomaly is still to come.
        caught_up(bootstrap, env["PGHD_PROCESSORS_APP_ID"], what=worker.diagnostics())
        other_alerts = _news2_spo2_anomalies(ingest.anomalies(other, expect=1, settle=0.5))
        assert [(a.severity.value, a.phase, a.event_ids) for a in other_alerts] == [
            ("critical", "onset", [f"{other}-1"])
        ]
        assert _news2_spo2_anomalies(ingest.anomalies(copd, expect=0, settle=0.5)) == []
        points = _wait(
            lambda: rows if len(rows := _news2_points(ingest, copd)) >= 2 else None,
            "news2 points of the patient with a plan",
            worker=worker,
        )
        assert [(r["spo2"], r["spo2_scale"], r["partial"]) for r in points] == [
            (0, "2", "true"),
            (0, "2", "true"),
        ]
        assert points[-1]["parameters_count"] == 1 and points[-1]["score"] == 0
        assert "pulse" in points[-1]["missing"]
        assert _news2_points(ingest, other)[-1]["spo2"] == 3

        # restart: the table comes back from its changelog; the plan still holds, while a
        # patient without a plan (and without an open episode) is flagged at once
        worker.stop()
        worker.start()
        later = start + timedelta(minutes=10)
        fresh = new_patient("noplan")
        body = [_spo2(p, 89, later, 10) for p in (copd, other, fresh)]
        assert ingest.post(body).status_code == 202
        _wait(
            lambda: _news2_spo2_anomalies(ingest.anomalies(fresh, expect=1, timeout=5)) or None,
            "the restarted worker to judge a new patient's reading",
            worker=worker,
            timeout=180,
        )
        ingest.wait_vitals(copd, 3, timeout=60)
        ingest.wait_vitals(other, 4, timeout=60)
        caught_up(bootstrap, env["PGHD_PROCESSORS_APP_ID"], what=worker.diagnostics())
        assert _news2_spo2_anomalies(ingest.anomalies(copd, expect=0, settle=0.5)) == []
        assert [a.severity.value for a in _news2_spo2_anomalies(ingest.anomalies(fresh))] == [
            "critical"
        ]
        # the other patient's episode came back with the worker's tables: still one anomaly
        assert _news2_spo2_anomalies(ingest.anomalies(other, settle=0.5)) == other_alerts

        # cleared through the API: judged on scale 1 again
        cleared = httpx.delete(
            f"{care_api}/v1/patients/{copd}/care-plan",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert cleared.status_code == 202, cleared.text
        _wait(
            lambda: _changelog_value(bootstrap, changelog, copd) == (True, None),
            "the worker to drop the plan",
            worker=worker,
        )
        assert ingest.post([_spo2(copd, 89, later + timedelta(minutes=1), 11)]).status_code == 202
        (after,) = _news2_spo2_anomalies(ingest.anomalies(copd, expect=1, timeout=90))
        assert after.severity.value == "critical"
        assert "score-3 band (≤91 %)" in after.explanation
    finally:
        worker.stop()
