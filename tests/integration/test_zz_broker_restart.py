"""A Kafka broker killed (SIGKILL) and restarted on its data dir during a steady stream.

Devices keep posting; what ingest refused with 503 they post again after Retry-After, as
real clients do. Promises checked once the stream ends: every reading that got a 202 is
stored exactly once (one point per reading, nothing extra), and no page went out twice.

Named ``zz`` so it runs after the other integration modules: it kills the session's broker
(and restarts it on the same port and data).
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from deploy.local.harness import Pipeline, new_patient, reading, running_pipeline, wait_for
from deploy.local.influxdb import InfluxServer
from deploy.local.kafka import KafkaServer, kafka_healthy

PATIENTS = 5
RATE_PER_S = 10.0
KILL_AT_S = 8.0
DOWN_FOR_S = 10.0
STREAM_FOR_S = 35.0


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("broker-restart")
    with running_pipeline(stack_env=stack_env, influx=influx, workdir=workdir) as running:
        yield running


class Stream:
    """Posts heart-rate readings at a steady rate from a thread; retries 503s like a device."""

    def __init__(self, pipeline: Pipeline, patients: list[str], start: datetime) -> None:
        self.pipeline = pipeline
        self.patients = patients
        self.start = start
        self.accepted: dict[str, list[float]] = collections.defaultdict(list)
        self.refused_503 = 0
        self.broker_down = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _post_until_accepted(self, patient: str, minute: int) -> None:
        value = 60.0 + minute % 20
        body = reading(patient, value, self.start + timedelta(minutes=minute), context="rest")
        while not self.stop.is_set():
            try:
                response = self.pipeline.post(body, enroll=False, timeout=15)
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if response.status_code == 202:
                self.accepted[patient].append(value)
                return
            assert response.status_code == 503, response.text
            self.refused_503 += 1
            time.sleep(min(2.0, float(response.headers.get("Retry-After", "1"))))

    def _run(self) -> None:
        sent = 0
        began = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - began < STREAM_FOR_S:
            patient = self.patients[sent % len(self.patients)]
            self._post_until_accepted(patient, sent // len(self.patients))
            sent += 1
            pause = began + sent / RATE_PER_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)


def test_every_accepted_reading_is_stored_once_and_no_page_twice_across_a_broker_kill(
    pipeline: Pipeline, kafka_server: KafkaServer
) -> None:
    patients = [new_patient("steady") for _ in range(PATIENTS)]
    paged, paged_after = new_patient("paged"), new_patient("paged-after")
    for patient in patients:
        pipeline.enroll(patient, ["heart_rate"])
    for patient in (paged, paged_after):
        pipeline.enroll(patient, ["spo2"])
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)

    # A page before the kill: it must not be sent again after the restart.
    before = reading(paged, 85, now - timedelta(minutes=5), metric="spo2", unit="%")
    assert pipeline.post(before, enroll=False).status_code == 202
    wait_for(lambda: pipeline.sink.messages_about(paged) or None, timeout=60, what="the first page")

    stream = Stream(pipeline, patients, start)
    stream.thread.start()
    time.sleep(KILL_AT_S)
    assert kafka_server.pid is not None
    os.kill(kafka_server.pid, signal.SIGKILL)
    stream.broker_down.set()
    wait_for(lambda: True if kafka_server.pid is None else None, timeout=10, what="broker dead")
    time.sleep(DOWN_FOR_S)
    stream.broker_down.clear()
    kafka_server.start()
    stream.thread.join(timeout=STREAM_FOR_S + 120)
    stream.stop.set()
    assert not stream.thread.is_alive()

    # The kill really hit the stream: devices were refused while it was down.
    assert stream.refused_503 > 0
    assert kafka_healthy(kafka_server.bootstrap)

    # A page after the restart, through the restarted broker.
    after = reading(paged_after, 84, now - timedelta(minutes=1), metric="spo2", unit="%")
    assert pipeline.post(after, enroll=False).status_code == 202

    for patient in patients:
        expected = len(stream.accepted[patient])
        rows = pipeline.wait_vitals(patient, expected, timeout=120)
        assert len(rows) == expected, f"{patient}: {len(rows)} points for {expected} readings"
        assert sorted(r["value"] for r in rows) == sorted(stream.accepted[patient])

    wait_for(
        lambda: pipeline.sink.messages_about(paged_after) or None,
        timeout=60,
        what="the page of the reading posted after the restart",
    )
    # Both workers have caught up: a sentinel posted last is stored, and a second sentinel
    # page arrives after every page that could still be on its way.
    sentinel = new_patient("sentinel")
    pipeline.enroll(sentinel, ["spo2"])
    late = reading(sentinel, 83, now - timedelta(minutes=1), metric="spo2", unit="%")
    assert pipeline.post(late, enroll=False).status_code == 202
    pipeline.wait_vitals(sentinel, 1, timeout=60)
    wait_for(
        lambda: pipeline.sink.messages_about(sentinel) or None, timeout=60, what="sentinel page"
    )
    ids = [page["notification_id"] for page in pipeline.sink.received]
    duplicates = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not duplicates, f"pages sent twice: {duplicates}"
    print(
        f"broker killed {DOWN_FOR_S:.0f} s: {sum(map(len, stream.accepted.values()))} readings"
        f" accepted and stored once, {stream.refused_503} refusals (503) retried,"
        f" {len(ids)} distinct pages"
    )
