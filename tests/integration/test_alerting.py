"""The alerts worker on real Kafka, notifying a real HTTP receiver through Apprise json://.

One worker process (``python -m alerts.main``) runs for the module with a routing file whose
care teams each serve one scenario's patient; anomalies and care-team commands are produced
straight to their topics, alert states are read back from ``pghd.alerts.v1``. The restart
scenario runs last: it stops and starts that same worker.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from deploy.local.harness import wait_for
from deploy.local.process import (
    free_port,
    log_tail,
    signal_group,
    start_detached,
    stop_process,
)
from pghd import topics, wire
from pghd.alert_commands import AlertCommand, CommandKind
from pghd.alerting import Alert, AlertLabels, AlertState, NotificationOutcome, label_fingerprint
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, BaselineSnapshot, Severity
from tests.integration.sync import alert_states

ESCALATE_AFTER_S = 3.0
RESTART_ESCALATE_AFTER_S = 20.0  # the stop must come before it: asserted
TEAMS = ("burst", "ack", "esc", "flaky", "restart", "resume", "kept")  # kept: no route
SLOW_S = 60.0  # at most: the slow post is answered once the test has killed the sender


@dataclass
class Post:
    path: str
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """A real HTTP server: records successful posts per path; the first ``fail[path]`` posts
    get 500; the first post to a ``slow`` path is recorded, then answered once ``release`` is
    set (after ``SLOW_S`` at most)."""

    posts: list[Post] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    n = receiver.calls[self.path] = receiver.calls.get(self.path, 0) + 1
                    failing = n <= receiver.fail.get(self.path, 0)
                    if not failing:
                        receiver.posts.append(Post(self.path, json.loads(body), time.monotonic()))
                if n == 1 and self.path in receiver.slow:
                    receiver.release.wait(SLOW_S)  # the sender dies before it hears back
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def to(self, path: str) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == f"/{path}"]


@dataclass
class Worker:
    env: dict[str, str]
    log: Path
    receiver: Receiver
    patients: dict[str, str]
    bootstrap: str
    process: Popen[bytes] | None = None

    def start(self) -> None:
        self.process = start_detached(
            [sys.executable, "-m", "alerts.main"],
            log_file=self.log,
            env=self.env,
            die_with_parent=True,
        )

    def kill(self) -> None:
        """SIGKILL, no shutdown: in-flight deliveries end with an unknown outcome."""
        if self.process is not None:
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process.pid, timeout=20)
            self.process = None

    def diagnostics(self) -> str:
        return log_tail(self.log, 60)


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    workdir = tmp_path_factory.mktemp("alerting")
    receiver = Receiver(fail={"/flaky": 3}, slow={"/slow"})
    server = receiver.start()
    base = f"json://127.0.0.1:{server.server_address[1]}"
    patients = {team: f"al-{team}-{uuid.uuid4().hex[:8]}" for team in TEAMS}

    def route(name: str, team: str, *steps: tuple[float, str], **extra: Any) -> dict[str, Any]:
        escalation = [{"after_s": after, "channels": [ch]} for after, ch in steps]
        return {
            "name": name,
            "teams": [team],
            "escalation": escalation,
            "repeat_interval_s": None,
            **extra,
        }

    channels = [
        "burst-a",
        "burst-b",
        "ack-1",
        "ack-2",
        "esc-1",
        "esc-2",
        "flaky",
        "rs-1",
        "rs-2",
        "slow",
    ]
    routing = {
        "channels": {name: f"{base}/{name}" for name in channels},
        "cleared_channels": list(channels),  # loopback sinks: the tests read who and what
        "patient_teams": {patient: team for team, patient in patients.items()},
        "routes": [
            route("burst-a", "burst", (0, "burst-a")),
            route("burst-b", "burst", (0, "burst-b")),
            route("ack", "ack", (0, "ack-1"), (ESCALATE_AFTER_S, "ack-2")),
            route("esc", "esc", (0, "esc-1"), (ESCALATE_AFTER_S, "esc-2"), severities=["critical"]),
            route("flaky", "flaky", (0, "flaky")),
            route("restart", "restart", (0, "rs-1"), (RESTART_ESCALATE_AFTER_S, "rs-2")),
            route("resume", "resume", (0, "slow")),
        ],
    }
    routing_file = workdir / "routing.json"
    routing_file.write_text(json.dumps(routing))
    env = {
        "PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PGHD_ALERTS_APP_ID": f"pghd-alerts-it-{uuid.uuid4().hex[:8]}",
        "PGHD_ALERTS_DATA_DIR": str(workdir / "data"),
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_ROUTING_FILE": str(routing_file),
        "PGHD_ALERTS_NOTIFY_URLS": "[]",
        "PGHD_ALERTS_NOTIFY_ATTEMPTS": "5",
        "PGHD_ALERTS_NOTIFY_BACKOFF_S": "0.2",
        "PGHD_ALERTS_TICK_S": "0.5",
    }
    running = Worker(
        env=env,
        log=workdir / "alerts.log",
        receiver=receiver,
        patients=patients,
        bootstrap=kafka_bootstrap,
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
        server.shutdown()
        server.server_close()


def _anomaly(patient: str, *, severity: Severity = Severity.CRITICAL) -> Anomaly:
    now = datetime.now(UTC)
    return Anomaly(
        anomaly_id=f"an-{uuid.uuid4().hex[:12]}",
        patient_id=patient,
        metric=Metric.HEART_RATE,
        channel="heart_rate",
        detector="zscore",
        severity=severity,
        score=7.2,
        value=151.0,
        unit="/min",
        baseline=BaselineSnapshot(mean=72, spread=5, low=62, high=82, n=300),
        observed_at=now,
        detected_at=now,
        explanation="Heart rate 151/min at rest is far above this patient's usual 72/min.",
        event_ids=["e1"],
    )


def _produce(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush()
    finally:
        producer.close()


def _alerts(bootstrap: str, patient: str) -> list[Alert]:
    """Every state of the patient's heart-rate alerts on pghd.alerts.v1, in order."""
    fp = label_fingerprint(AlertLabels(patient_id=patient, problem="heart_rate"))
    return alert_states(bootstrap, fingerprint=fp)


def _latest(worker: Worker, patient: str, what: str, ok: Any) -> Alert:
    def probe() -> Alert | None:
        states = _alerts(worker.bootstrap, patient)
        return states[-1] if states and ok(states[-1]) else None

    return wait_for(probe, timeout=60, what=what, diagnostics=worker.diagnostics)


def _caught_up(worker: Worker) -> None:
    """Wait until the worker's group has committed every anomaly and command produced so
    far: all they make it do has been decided by then (a "nothing else" check needs this)."""
    group = worker.env["PGHD_ALERTS_APP_ID"]

    def committed_to_the_end() -> bool | None:
        consumer = KafkaConsumer(
            bootstrap_servers=worker.bootstrap, group_id=group, enable_auto_commit=False
        )
        try:
            parts = [
                TopicPartition(topic, p)
                for topic in (topics.ANOMALIES, topics.ALERT_COMMANDS)
                for p in consumer.partitions_for_topic(topic) or []
            ]
            ends = consumer.end_offsets(parts)
            done = all((consumer.committed(tp) or 0) >= end for tp, end in ends.items())
            return True if done else None
        finally:
            consumer.close()

    wait_for(
        committed_to_the_end,
        timeout=60,
        what="the alerts worker to commit every anomaly and command",
        diagnostics=worker.diagnostics,
    )


def _posts(worker: Worker, path: str, count: int, *, timeout: float = 60) -> list[Post]:
    return wait_for(
        lambda: posts if len(posts := worker.receiver.to(path)) >= count else None,
        timeout=timeout,
        what=f"{count} notifications to /{path}",
        diagnostics=worker.diagnostics,
        every=0.1,
    )


def test_burst_makes_one_alert_and_one_notification_per_route(worker: Worker) -> None:
    patient = worker.patients["burst"]
    burst = [_anomaly(patient, severity=Severity.WARNING) for _ in range(100)]
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(a)) for a in burst])

    alert = _latest(
        worker, patient, "the alert with 100 anomalies", lambda a: a.anomaly_count == 100
    )
    _posts(worker, "burst-a", 1)
    _posts(worker, "burst-b", 1)
    _caught_up(worker)
    assert len({a.alert_id for a in _alerts(worker.bootstrap, patient)}) == 1
    assert [len(worker.receiver.to(p)) for p in ("burst-a", "burst-b")] == [1, 1]
    body = worker.receiver.to("burst-a")[0].body
    assert patient in body["title"] and alert.alert_id in body["message"]
    assert body["notification_id"].startswith("nt-")
    assert alert.status is AlertState.OPEN


def test_acknowledging_stops_escalation(worker: Worker) -> None:
    patient = worker.patients["ack"]
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(_anomaly(patient)))])
    (first,) = _posts(worker, "ack-1", 1)
    alert_id = first.body["message"].split("alert_id: ")[1].split()[0]
    command = AlertCommand(
        command_id=uuid.uuid4().hex,
        kind=CommandKind.ACKNOWLEDGE,
        patient_id=patient,
        alert_id=alert_id,
        by="nurse-7",
        issued_at=datetime.now(UTC),
    )
    _produce(worker.bootstrap, topics.ALERT_COMMANDS, [(patient, wire.encode(command))])

    acked = _latest(
        worker, patient, "the acknowledged alert", lambda a: a.status is AlertState.ACKNOWLEDGED
    )
    assert acked.alert_id == alert_id and acked.acknowledged_by == "nurse-7"
    assert acked.next_notify_at is None, "no escalation is scheduled any more"
    time.sleep(ESCALATE_AFTER_S + 3)  # past the time it would have escalated
    _caught_up(worker)
    assert worker.receiver.to("ack-2") == []
    assert len(worker.receiver.to("ack-1")) == 1


def test_unacknowledged_critical_alert_escalates_after_the_delay(worker: Worker) -> None:
    patient = worker.patients["esc"]
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(_anomaly(patient)))])
    (first,) = _posts(worker, "esc-1", 1)
    (second,) = _posts(worker, "esc-2", 1, timeout=30)
    waited = second.at - first.at
    assert waited >= ESCALATE_AFTER_S - 0.5, waited  # not before the delay (later: load)
    assert "escalated" in second.body["title"]
    alert = _latest(worker, patient, "escalation level 2", lambda a: a.escalation_level == 2)
    assert alert.status is AlertState.OPEN
    assert alert.next_notify_at is None, "the last step: nothing more is scheduled"
    _caught_up(worker)
    assert len(worker.receiver.to("esc-1")) == len(worker.receiver.to("esc-2")) == 1


def test_failing_channel_is_retried_and_every_attempt_is_audited(worker: Worker) -> None:
    patient = worker.patients["flaky"]
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(_anomaly(patient)))])
    _posts(worker, "flaky", 1)

    def settled(alert: Alert) -> bool:
        return any(r.outcome is NotificationOutcome.DELIVERED for r in alert.notifications)

    alert = _latest(worker, patient, "the delivered flaky notification", settled)
    _caught_up(worker)
    assert len(worker.receiver.to("flaky")) == 1
    assert worker.receiver.calls["/flaky"] == 4
    outcomes = [r.outcome for r in alert.notifications if r.channel == "flaky"]
    assert outcomes == [
        NotificationOutcome.QUEUED,
        NotificationOutcome.FAILED,
        NotificationOutcome.FAILED,
        NotificationOutcome.FAILED,
        NotificationOutcome.DELIVERED,
    ]
    attempts = [r for r in alert.notifications if r.outcome is not NotificationOutcome.QUEUED]
    assert all(r.at >= alert.opened_at and r.route == "flaky" for r in attempts)


def test_restart_mid_escalation_sends_no_duplicate_and_loses_no_alert(worker: Worker) -> None:
    patient = worker.patients["restart"]
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(_anomaly(patient)))])
    _posts(worker, "rs-1", 1)

    def delivered(alert: Alert) -> bool:
        return any(r.outcome is NotificationOutcome.DELIVERED for r in alert.notifications)

    before = _latest(worker, patient, "the first step delivered", delivered)
    kept = worker.patients["kept"]  # another patient's alert, open across the restart
    _produce(worker.bootstrap, topics.ANOMALIES, [(kept, wire.encode(_anomaly(kept)))])
    kept_before = _latest(worker, kept, "the other patient's alert", lambda a: True)
    worker.stop()
    assert worker.receiver.to("rs-2") == [], "stopped before the escalation: mid-escalation"
    worker.start()

    _posts(worker, "rs-2", 1, timeout=90)
    _caught_up(worker)
    assert len(worker.receiver.to("rs-1")) == 1, "the first step was not sent again"
    assert len(worker.receiver.to("rs-2")) == 1
    after = _latest(worker, patient, "the escalated alert", lambda a: a.escalation_level == 2)
    assert after.alert_id == before.alert_id and after.status is AlertState.OPEN

    # The state survived the restart: a new anomaly joins the same alert, nobody is paged.
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(_anomaly(patient)))])
    joined = _latest(worker, patient, "the second anomaly", lambda a: a.anomaly_count == 2)
    assert joined.alert_id == before.alert_id
    _produce(worker.bootstrap, topics.ANOMALIES, [(kept, wire.encode(_anomaly(kept)))])
    kept_after = _latest(
        worker, kept, "the other patient's 2nd anomaly", lambda a: a.anomaly_count == 2
    )
    assert kept_after.alert_id == kept_before.alert_id, "other patients' alerts are kept"
    _caught_up(worker)
    assert len(worker.receiver.to("rs-1")) == 1 and len(worker.receiver.to("rs-2")) == 1


def test_killed_mid_delivery_resends_with_the_same_notification_id(worker: Worker) -> None:
    """The receiver got the post but the worker died before hearing back: the outcome is
    unknown. json:// receivers are told the notification id, so the restarted worker sends
    it again with the same id (the receiver keeps one); it does not open a new alert."""
    patient = worker.patients["resume"]
    _produce(worker.bootstrap, topics.ANOMALIES, [(patient, wire.encode(_anomaly(patient)))])
    _posts(worker, "slow", 1)
    worker.kill()
    worker.receiver.release.set()  # answered only now: the sender is dead
    worker.start()

    posts = _posts(worker, "slow", 2, timeout=180)
    assert len(worker.receiver.to("slow")) == 2
    assert len({p.body["notification_id"] for p in posts}) == 1, "same id: the receiver dedups"

    def delivered(alert: Alert) -> bool:
        return any(r.outcome is NotificationOutcome.DELIVERED for r in alert.notifications)

    alert = _latest(worker, patient, "the re-sent notification delivered", delivered)
    _caught_up(worker)
    assert len(worker.receiver.to("slow")) == 2
    assert (
        alert.anomaly_count == 1
        and len({a.alert_id for a in _alerts(worker.bootstrap, patient)}) == 1
    )
    records = [r for r in alert.notifications if r.channel == "slow"]
    assert [r.outcome for r in records] == [
        NotificationOutcome.QUEUED,
        NotificationOutcome.DELIVERED,
    ]
    assert "outcome unknown" in (records[-1].detail or "")
