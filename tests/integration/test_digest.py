"""The daily digest on real Kafka: sent once per team and day, not again after a restart.

One alerts worker runs with a routing file whose team has a budget of one notification per
day and a digest due shortly after the worker starts. Three warning findings for one
patient: the first pages the team's route, the other two are held back for the digest; the
digest reaches a real HTTP receiver (Apprise ``json://``) listing both. A restarted worker
finds the ``sent`` record on ``pghd.digests.v1`` and sends nothing more.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from deploy.local.harness import NotificationSink, wait_for
from deploy.local.process import free_port, log_tail, start_detached, stop_process
from pghd import topics, wire
from pghd.alerting import DigestRecord, DigestState
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, BaselineSnapshot, Severity

LEAD_S = 45.0  # the digest is due this long after the worker starts


def _anomaly(patient: str, metric: Metric, unit: str) -> Anomaly:
    now = datetime.now(UTC)
    return Anomaly(
        anomaly_id=f"an-{uuid.uuid4().hex[:12]}",
        patient_id=patient,
        metric=metric,
        channel=metric.value,
        detector="deviation",
        severity=Severity.WARNING,
        score=4.1,
        value=101.0,
        unit=unit,
        baseline=BaselineSnapshot(mean=80, spread=5, low=70, high=90, n=300),
        observed_at=now,
        detected_at=now,
        explanation=f"{metric.value} is above this patient's usual.",
        event_ids=["e1"],
    )


def _digest_records(bootstrap: str, team: str) -> list[DigestRecord]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000
    )
    try:
        parts = [
            TopicPartition(topics.DIGESTS, p)
            for p in consumer.partitions_for_topic(topics.DIGESTS) or []
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records = [wire.decode(DigestRecord, m.value) for m in consumer if m.value]
        return [r for r in records if r.team == team]
    finally:
        consumer.close()


class DigestWorker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.pid: int | None = None

    def start(self) -> None:
        process = start_detached(
            [sys.executable, "-m", "alerts.main"],
            log_file=self.log,
            env=self.env,
            die_with_parent=True,
        )
        self.pid = process.pid

    def stop(self) -> None:
        if self.pid is not None:
            stop_process(self.pid, timeout=20)
            self.pid = None

    def diagnostics(self) -> str:
        return log_tail(self.log, 60)


@pytest.fixture(scope="module")
def setup(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DigestWorker, NotificationSink, str, str, datetime]]:
    workdir = tmp_path_factory.mktemp("digest")
    sink = NotificationSink()
    team = f"dg-{uuid.uuid4().hex[:8]}"
    patient = f"dgp-{uuid.uuid4().hex[:8]}"
    due = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
    routing = {
        "channels": {"page": f"{sink.url}/page", "digest": f"{sink.url}/digest"},
        "patient_teams": {patient: team},
        "routes": [
            {
                "name": "page",
                "teams": [team],
                "escalation": [{"after_s": 0, "channels": ["page"]}],
                "repeat_interval_s": None,
            }
        ],
        "budget": {"max_notifications": 1, "window_s": 86400},
        "digest": {"at": due.time().isoformat(), "timezone": "UTC", "channels": ["digest"]},
    }
    routing_file = workdir / "routing.json"
    routing_file.write_text(json.dumps(routing))
    env = {
        "PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PGHD_ALERTS_APP_ID": f"pghd-alerts-dg-{uuid.uuid4().hex[:8]}",
        "PGHD_ALERTS_DATA_DIR": str(workdir / "data"),
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_ROUTING_FILE": str(routing_file),
        "PGHD_ALERTS_NOTIFY_URLS": "[]",
        "PGHD_ALERTS_TICK_S": "0.5",
        "PGHD_ALERTS_DIGEST_CHECK_S": "1",
    }
    worker = DigestWorker(env, workdir / "alerts.log")
    worker.start()
    try:
        yield worker, sink, team, patient, due
    finally:
        worker.stop()
        sink.close()


def test_held_back_findings_reach_the_team_in_one_digest_and_never_twice(
    setup: tuple[DigestWorker, NotificationSink, str, str, datetime], kafka_bootstrap: str
) -> None:
    worker, sink, team, patient, due = setup
    findings = [
        _anomaly(patient, Metric.HEART_RATE, "/min"),
        _anomaly(patient, Metric.RESPIRATORY_RATE, "/min"),
        _anomaly(patient, Metric.BODY_TEMPERATURE, "Cel"),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        for anomaly in findings:
            producer.send(topics.ANOMALIES, key=patient.encode(), value=wire.encode(anomaly))
            producer.flush()
            time.sleep(0.3)  # in order, so the first one is the one that pages
    finally:
        producer.close()

    def paged() -> list[dict[str, object]] | None:
        return sink.messages_about(patient) or None

    wait_for(paged, timeout=60, what="the first finding paged", diagnostics=worker.diagnostics)
    assert datetime.now(UTC) < due, (
        "the worker was too slow: the digest came due before the findings"
    )

    def digests() -> list[dict[str, object]] | None:
        found = [m for m in sink.messages_about("daily digest") if team in str(m)]
        return found or None

    sent = wait_for(
        digests, timeout=LEAD_S + 60, what="the daily digest", diagnostics=worker.diagnostics
    )
    assert len(sent) == 1
    text = str(sent[0])
    assert "2 findings" in text and "respiratory_rate" in text and "body_temperature" in text
    assert "heart_rate" not in text.split("findings", 1)[1], (
        "the paged finding is not in the digest"
    )
    assert len(sink.messages_about(patient)) == 2  # one page, one digest naming the patient

    records = wait_for(
        lambda: (
            [r for r in _digest_records(kafka_bootstrap, team) if r.state is DigestState.SENT]
            or None
        ),
        timeout=20,
        what="the sent record",
    )
    assert records[0].findings == 2 and records[0].outcomes == {"digest": "delivered"}

    worker.stop()
    worker.start()
    time.sleep(25)  # the restarted worker rejoins and checks the digest every second
    assert len([m for m in sink.messages_about("daily digest") if team in str(m)]) == 1
    states = [r.state for r in _digest_records(kafka_bootstrap, team)]
    assert states == [DigestState.SENDING, DigestState.SENT]
