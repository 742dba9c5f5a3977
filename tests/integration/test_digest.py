"""The daily digest on real Kafka: sent once per team and day, not again after a restart.

One alerts worker runs with a routing file whose team has a budget of one notification per
day and a daily digest not due for the next hour. Three warning findings for one patient:
the first pages the team's route, the other two are held back for the digest (seen on
``pghd.alerts.v1``). Then the worker is restarted with the digest due at that moment (the
routing file is read at start), so it is sent at once, whatever the hour and however long
the first part took; it reaches a real HTTP receiver (Apprise ``json://``) listing both.
Restarted once more, with a second team added whose (empty) digest is due too, the worker
sends that one, proof that it checked, and nothing more for the first team: it found the
``sent`` record on ``pghd.digests.v1``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from deploy.local.harness import NotificationSink, wait_for
from deploy.local.process import free_port, log_tail, start_detached, stop_process
from deploy.local.topics import read_from_start
from pghd import topics, wire
from pghd.alerting import DigestRecord, DigestState, NotificationOutcome
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, BaselineSnapshot, Severity
from tests.integration.sync import alert_states

NOT_DUE_FOR = timedelta(minutes=50)
"""The first worker's digest time is this far ahead: not due (a digest whose time is more
than 23 h past is skipped as tomorrow's, so the time must lie in the coming hour)."""


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
    records = [wire.decode(DigestRecord, v) for _, v in read_from_start(bootstrap, topics.DIGESTS)]
    return [r for r in records if r.team == team]


@dataclass
class DigestWorker:
    env: dict[str, str]
    log: Path
    routing_file: Path
    sink: NotificationSink
    team: str
    patient: str
    pid: int | None = None

    def routing(self, *, due: datetime, teams: dict[str, str]) -> None:
        """Write the routing file: ``teams`` (patient -> team), the digest due at ``due``."""
        self.routing_file.write_text(
            json.dumps(
                {
                    "channels": {
                        "page": f"{self.sink.url}/page",
                        "digest": f"{self.sink.url}/digest",
                    },
                    "cleared_channels": ["page", "digest"],  # a loopback sink
                    "patient_teams": teams,
                    "routes": [
                        {
                            "name": "page",
                            "teams": sorted(set(teams.values())),
                            "escalation": [{"after_s": 0, "channels": ["page"]}],
                            "repeat_interval_s": None,
                        }
                    ],
                    "budget": {"max_notifications": 1, "window_s": 86400},
                    "digest": {
                        "at": due.astimezone(UTC).time().replace(microsecond=0).isoformat(),
                        "timezone": "UTC",
                        "channels": ["digest"],
                    },
                }
            )
        )

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
def worker(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DigestWorker]:
    workdir = tmp_path_factory.mktemp("digest")
    sink = NotificationSink()
    env = {
        "PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PGHD_ALERTS_APP_ID": f"pghd-alerts-dg-{uuid.uuid4().hex[:8]}",
        "PGHD_ALERTS_DATA_DIR": str(workdir / "data"),
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_ROUTING_FILE": str(workdir / "routing.json"),
        "PGHD_ALERTS_NOTIFY_URLS": "[]",
        "PGHD_ALERTS_TICK_S": "0.5",
        "PGHD_ALERTS_DIGEST_CHECK_S": "1",
    }
    running = DigestWorker(
        env=env,
        log=workdir / "alerts.log",
        routing_file=workdir / "routing.json",
        sink=sink,
        team=f"dg-{uuid.uuid4().hex[:8]}",
        patient=f"dgp-{uuid.uuid4().hex[:8]}",
    )
    running.routing(due=datetime.now(UTC) + NOT_DUE_FOR, teams={running.patient: running.team})
    running.start()
    try:
        yield running
    finally:
        running.stop()
        sink.close()


def _held_back(bootstrap: str, patient: str) -> set[str]:
    """The problems of the patient's alerts that have a finding held back for the digest."""
    alerts = alert_states(bootstrap)
    return {
        a.problem
        for a in alerts
        if a.patient_id == patient
        and any(r.outcome is NotificationOutcome.DIGEST for r in a.notifications)
    }


def _digests_of(sink: NotificationSink, team: str) -> list[dict[str, Any]]:
    return [m for m in sink.messages_about("daily digest") if team in str(m)]


def test_held_back_findings_reach_the_team_in_one_digest_and_never_twice(
    worker: DigestWorker, kafka_bootstrap: str
) -> None:
    sink, team, patient = worker.sink, worker.team, worker.patient
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
    wait_for(
        lambda: (
            True
            if _held_back(kafka_bootstrap, patient) == {"respiratory_rate", "body_temperature"}
            else None
        ),
        timeout=60,
        what="the other two findings held back for the digest",
        diagnostics=worker.diagnostics,
    )
    assert _digests_of(sink, team) == [], "the digest is not due yet"

    # Due now: the restarted worker sends it at its first check.
    worker.stop()
    due = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)  # after both
    worker.routing(due=due, teams={patient: team})
    worker.start()
    sent = wait_for(
        lambda: _digests_of(sink, team) or None,
        timeout=120,
        what="the daily digest",
        diagnostics=worker.diagnostics,
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

    # Restarted again with a second team whose digest is due as well (the same time, so
    # the same day's digest even past midnight): once that one is sent, the worker has
    # checked the first team's too (one check goes through the teams in name order).
    other = f"dh-{uuid.uuid4().hex[:8]}"
    assert other > team and team not in other
    worker.stop()
    worker.routing(due=due, teams={patient: team, f"{patient}-2": other})
    worker.start()
    (quiet,) = wait_for(
        lambda: _digests_of(sink, other) or None,
        timeout=120,
        what="the second team's digest (the restarted worker checked)",
        diagnostics=worker.diagnostics,
    )
    assert "no findings below critical were held back" in str(quiet)
    assert len(_digests_of(sink, team)) == 1, "the first team's digest was sent again"
    states = [r.state for r in _digest_records(kafka_bootstrap, team)]
    assert states == [DigestState.SENDING, DigestState.SENT]
