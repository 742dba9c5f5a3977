"""Two alerts workers in one group: each patient's page goes out once, also when one dies.

The alerts workers share the partitions of ``pghd.anomalies.v1`` (keyed by patient). With
two members, every desaturation must be paged exactly once (not once per worker); after one
worker is SIGKILLed, the survivor takes its partitions over (after the session timeout) and
pages the patients of those partitions once, re-sending nothing the dead one had sent.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from deploy.local.harness import Pipeline, new_patient, reading, running_pipeline, wait_for
from deploy.local.influxdb import InfluxServer
from deploy.local.process import free_port, start_detached, stop_process
from pghd import topics
from tests.integration.sync import backlog

PATIENTS = 12
# A SIGKILLed member keeps its partitions until its session times out (60 s by default);
# the survivor then rejoins and recovers the tables before it pages.
FAST_TAKEOVER = {"PGHD_ALERTS_SESSION_TIMEOUT_S": "10", "PGHD_ALERTS_HEARTBEAT_INTERVAL_S": "1"}


@pytest.fixture
def pipeline(stack_env: dict[str, str], influx: InfluxServer, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(
        stack_env=stack_env, influx=influx, workdir=tmp_path, extra_env=FAST_TAKEOVER
    ) as running:
        yield running


def _members(bootstrap: str, group: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="multi-worker-test")
    try:
        described = admin.describe_groups([group])[group]
        return len(described["members"]) if described["group_state"] == "Stable" else 0
    finally:
        admin.close()


def _desaturate(pipeline: Pipeline, prefix: str) -> list[str]:
    patients = [new_patient(prefix) for _ in range(PATIENTS)]
    at = datetime.now(UTC) - timedelta(minutes=1)
    for patient in patients:
        body = reading(patient, 85, at, metric="spo2", unit="%")
        assert pipeline.post(body).status_code == 202
    return patients


def _pages(pipeline: Pipeline, patients: list[str]) -> dict[str, collections.Counter[str]]:
    """Notification ids received per patient, with how often each came."""
    pages: dict[str, collections.Counter[str]] = {p: collections.Counter() for p in patients}
    for body in list(pipeline.sink.received):
        text = json.dumps(body)
        for patient in patients:
            if patient in text:
                pages[patient][str(body.get("notification_id"))] += 1
    return pages


def _where_anomalies_are(bootstrap: str, patients: list[str]) -> dict[str, list[str]]:
    """partition@offset of each anomaly of ``patients`` on the anomalies topic."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000
    )
    try:
        parts = [
            TopicPartition(topics.ANOMALIES, p)
            for p in sorted(consumer.partitions_for_topic(topics.ANOMALIES) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        found: dict[str, list[str]] = {p: [] for p in patients}
        for message in consumer:
            key = (message.key or b"").decode()
            if key in found:
                found[key].append(f"{message.partition}@{message.offset}")
        return found
    finally:
        consumer.close()


def _rereads(web_port: str) -> float:
    """``stream_partitions_reread_total`` of the worker, summed over topics."""
    text = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("stream_partitions_reread_total{")
    )


def _all_paged(pipeline: Pipeline, patients: list[str], *, timeout: float) -> None:
    def diagnostics() -> str:
        unpaged = [p for p, ids in _pages(pipeline, patients).items() if not ids]
        group = pipeline.env["PGHD_ALERTS_APP_ID"]
        return (
            f"not paged: {unpaged}\n"
            f"their anomalies (partition@offset): "
            f"{_where_anomalies_are(pipeline.kafka_bootstrap, unpaged)}\n"
            f"alerts group (committed, end) per anomalies partition: "
            f"{backlog(pipeline.kafka_bootstrap, group, topics.ANOMALIES)}\n"
            + pipeline.diagnostics()
        )

    wait_for(
        lambda: True if all(_pages(pipeline, patients).values()) else None,
        timeout=timeout,
        what=f"a page for each of {len(patients)} patients",
        diagnostics=diagnostics,
    )


def test_two_alerts_workers_page_each_patient_once_and_survive_one_death(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    group = pipeline.env["PGHD_ALERTS_APP_ID"]
    env = {
        **pipeline.env,
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_DATA_DIR": str(tmp_path / "alerts-2"),
    }
    second = start_detached(
        [sys.executable, "-m", "alerts.main"],
        log_file=tmp_path / "alerts-2.log",
        env=env,
        die_with_parent=True,
    )
    pipeline.logs["alerts-2"] = tmp_path / "alerts-2.log"  # in every timeout's diagnostics
    try:
        wait_for(
            lambda: True if _members(pipeline.kafka_bootstrap, group) == 2 else None,
            timeout=120,
            what="two members in the alerts group",
        )
        first_wave = _desaturate(pipeline, "two-workers")
        _all_paged(pipeline, first_wave, timeout=60)
        # Both workers have caught up: a page posted after the wave came too.
        _all_paged(pipeline, _desaturate(pipeline, "sentinel-1")[:1], timeout=60)
        for patient, ids in _pages(pipeline, first_wave).items():
            # The plain receiver here does not deduplicate: one anomaly handled by both
            # workers would show as the same id twice.
            assert sum(ids.values()) == 1, f"{patient}: paged {dict(ids)}"

        # One worker dies without leaving the group; the other takes its partitions over.
        os.kill(pipeline.processes["alerts"].pid, signal.SIGKILL)
        second_wave = _desaturate(pipeline, "one-worker")
        # If the takeover hit Faust's rebalance race (a partition fetched but not processed;
        # pghd.stall_watchdog), the survivor reads it again after 30 s: still within this.
        _all_paged(pipeline, second_wave, timeout=150)
        print(f"\nsurvivor re-read partitions: {_rereads(env['PGHD_ALERTS_WEB_PORT'])}")
        wait_for(
            lambda: True if _members(pipeline.kafka_bootstrap, group) == 1 else None,
            timeout=60,
            what="one member left in the alerts group",
        )
        _all_paged(pipeline, _desaturate(pipeline, "sentinel-2")[:1], timeout=60)
        for patient, ids in _pages(pipeline, first_wave + second_wave).items():
            # One page per patient; a delivery the dead worker left unsettled may be sent
            # again with the same id (receivers deduplicate on it), never as a new page.
            assert len(ids) == 1, f"{patient} paged {len(ids)} times: {dict(ids)}"
    finally:
        stop_process(second.pid, timeout=20)
