"""InfluxDB faults on real servers: a refused point, a stopped and a frozen InfluxDB.

Each test runs the pipeline against an InfluxDB of its own (started here on free loopback
ports), so that stopping, freezing or shortening its retention touches no other test; each
runs once on InfluxDB 1.8 (the local runner's) and once on 2.7 (the version compose and k8s
ship: it answers a partial write with 422 where 1.8 says 400).
Promises checked:

- a point InfluxDB refuses for good (beyond its retention) goes to ``pghd.dlq.v1`` and every
  other patient's readings are stored within seconds;
- with InfluxDB stopped, or frozen (SIGSTOP: connections accepted, never answered), a
  critical reading's anomaly is on ``pghd.anomalies.v1`` within 5 s, and every accepted
  reading is stored once InfluxDB is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from deploy.local.ephemeral import influx2_on_free_ports, influx_on_free_ports
from deploy.local.harness import Pipeline, new_patient, reading, running_pipeline, wait_for
from deploy.local.influxdb import InfluxServer, ensure_influxd, influx_healthy
from deploy.local.influxdb2 import ensure_influxd2
from deploy.local.stack import StackPaths
from pghd import topics, wire
from pghd.contracts import DeadLetter

ANOMALY_DEADLINE_S = 5.0
OTHERS = 6
PER_PATIENT = 10


@pytest.fixture(params=["1.8", "2.7"], ids=["influxdb1.8", "influxdb2.7"])
def own_influx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InfluxServer]:
    """A fresh InfluxDB of each version for one test (the session's first: it builds it)."""
    root = StackPaths.for_root().root
    server: InfluxServer
    if request.param == "1.8":
        request.getfixturevalue("influx")
        server = influx_on_free_ports(ensure_influxd(root), tmp_path / "influx")
    else:
        request.getfixturevalue("influx2")
        server = influx2_on_free_ports(ensure_influxd2(root), tmp_path / "influx")
    server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
def pipeline(
    stack_env: dict[str, str], own_influx: InfluxServer, tmp_path: Path
) -> Iterator[Pipeline]:
    env = {**stack_env, **own_influx.env()}
    extra = {
        # Readings ingest accepted before the retention was shortened: let them in.
        "PGHD_INGEST_RAW_RETENTION": "off",
        # A hung InfluxDB fails an attempt after 3 s (10 s by default).
        "PGHD_PROCESSORS_INFLUX_TIMEOUT_S": "3",
        "PGHD_PROCESSORS_INFLUX_MAX_BACKOFF_S": "2",
    }
    with running_pipeline(
        stack_env=env, influx=own_influx, workdir=tmp_path / "pipeline", extra_env=extra
    ) as running:
        yield running


def _dead_letters(bootstrap: str, *, stage: str) -> list[DeadLetter]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000
    )
    try:
        parts = [
            TopicPartition(topics.DLQ, p) for p in consumer.partitions_for_topic(topics.DLQ) or []
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        letters = [wire.decode(DeadLetter, m.value) for m in consumer if m.value]
        return [letter for letter in letters if letter.stage == stage]
    finally:
        consumer.close()


def _store_failures(pipeline: Pipeline) -> float:
    """``store_write_failures_total`` summed over outcomes, from the worker's /metrics."""
    port = pipeline.env["PGHD_PROCESSORS_WEB_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("store_write_failures_total{")
    )


def _post_others(pipeline: Pipeline, *, at: datetime) -> list[str]:
    patients = [new_patient("other") for _ in range(OTHERS)]
    for patient in patients:
        body = [
            reading(patient, 60 + i, at + timedelta(minutes=i), context="rest")
            for i in range(PER_PATIENT)
        ]
        response = pipeline.post(body)
        assert response.status_code == 202 and response.json()["accepted"] == PER_PATIENT
    return patients


def _all_stored(pipeline: Pipeline, patients: list[str], *, timeout: float) -> None:
    for patient in patients:
        pipeline.wait_vitals(patient, PER_PATIENT, timeout=timeout)


def test_a_point_beyond_retention_is_dead_lettered_and_others_are_stored(
    pipeline: Pipeline, own_influx: InfluxServer
) -> None:
    """A phone syncs a 200-day-old reading into a bucket that keeps 90 days."""
    own_influx.set_retention(90 * 86400)
    now = datetime.now(UTC)
    old = new_patient("backlog")
    response = pipeline.post(reading(old, 64, now - timedelta(days=200), context="rest"))
    assert response.status_code == 202, response.text
    posted = time.monotonic()
    others = _post_others(pipeline, at=now - timedelta(hours=1))

    _all_stored(pipeline, others, timeout=30)
    stored_after = time.monotonic() - posted
    ours = {old, *others}  # the DLQ is shared with other tests (and the other version's run)
    letters = wait_for(
        lambda: (
            [
                letter
                for letter in _dead_letters(pipeline.kafka_bootstrap, stage="store")
                if letter.key in ours
            ]
            or None
        ),
        timeout=30,
        what="the refused point in pghd.dlq.v1",
    )
    # Its points (the vital and its NEWS2 score) were refused, and nobody else's.
    assert {letter.key for letter in letters} == {old}
    assert any(letter.payload.startswith("vitals,") for letter in letters)
    # 1.8: "400: partial write: points beyond retention policy dropped=1"; 2.7: "422: failure
    # writing points to database: partial write: dropped 1 points outside retention policy".
    status, words = (400, "beyond") if own_influx.version.startswith("1.") else (422, "outside")
    for letter in letters:
        assert letter.reason.startswith(f"InfluxDB refused the point: HTTP {status}: "), letter
        assert f"points {words} retention policy" in letter.reason, letter.reason
        assert letter.topic == topics.POINTS and f"patient_id={old}" in letter.payload
    stored_old = own_influx.query(
        f'from(bucket: "{own_influx.bucket}") |> range(start: -400d)'
        f' |> filter(fn: (r) => r.patient_id == "{old}")'
    )
    assert stored_old == []
    assert stored_after < 30
    print(f"{OTHERS * PER_PATIENT} readings of other patients stored {stored_after:.1f} s after")


def _all_threads_stopped(pid: int | None) -> bool:
    """Every thread of ``pid`` in state T (stopped), from /proc."""
    if pid is None:
        return False
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state == "T" for state in states)


def _critical_reading_while(pipeline: Pipeline, own_influx: InfluxServer, fault: str) -> None:
    """Post readings and an SpO2 of 85 % while InfluxDB suffers ``fault``; check the anomaly
    comes within 5 s and every reading is stored after InfluxDB is back."""
    assert own_influx.pid is not None
    failures_before = _store_failures(pipeline)
    if fault == "stopped":
        own_influx.stop()
    else:
        os.kill(own_influx.pid, signal.SIGSTOP)
        # SIGSTOP takes effect asynchronously: wait until every thread is stopped.
        wait_for(
            lambda: True if _all_threads_stopped(own_influx.pid) else None,
            timeout=10,
            what="InfluxDB stopped by SIGSTOP",
            every=0.05,
        )
    try:
        assert not influx_healthy(own_influx.url)  # the fault is in place
        now = datetime.now(UTC)
        others = _post_others(pipeline, at=now - timedelta(hours=1))
        patient = new_patient("desat")
        posted = time.monotonic()
        body = reading(patient, 85, now - timedelta(seconds=30), metric="spo2", unit="%")
        response = pipeline.post(body)
        assert response.status_code == 202, response.text
        anomalies = pipeline.anomalies(patient, settle=0.0, timeout=ANOMALY_DEADLINE_S)
        latency = time.monotonic() - posted
        assert anomalies, f"no anomaly within {ANOMALY_DEADLINE_S} s with InfluxDB {fault}"
        assert anomalies[0].severity.value == "critical"
        assert latency < ANOMALY_DEADLINE_S
        print(f"InfluxDB {fault}: POST -> anomaly on the topic in {latency:.2f} s")
        # The store stage met the fault: it tried, failed and keeps the points for later.
        wait_for(
            lambda: True if _store_failures(pipeline) > failures_before else None,
            timeout=30,
            what="a failed InfluxDB write attempt",
        )
    finally:
        if fault == "stopped":
            own_influx.start()
        else:
            assert own_influx.pid is not None
            os.kill(own_influx.pid, signal.SIGCONT)
    _all_stored(pipeline, others, timeout=60)
    [stored] = pipeline.wait_vitals(patient, 1, timeout=60)
    assert stored["value"] == 85


def test_alerts_do_not_wait_for_a_stopped_influxdb(
    pipeline: Pipeline, own_influx: InfluxServer
) -> None:
    _critical_reading_while(pipeline, own_influx, "stopped")


def test_alerts_do_not_wait_for_a_frozen_influxdb(
    pipeline: Pipeline, own_influx: InfluxServer
) -> None:
    _critical_reading_while(pipeline, own_influx, "frozen")
