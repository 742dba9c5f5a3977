"""The notification outbox on real Kafka: outages, crashes mid-delivery, late anomalies.

One alerts worker (``python -m alerts.main``) runs for the module; its pages go through
Apprise ``json://`` to real HTTP receivers on loopback that deduplicate on the notification
id and count what they got. The outage receiver starts *down*: its port is bound but not
listening, so every connection is refused until :meth:`Receiver.up`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.harness import wait_for
from deploy.local.process import free_port, log_tail, signal_group, start_detached, stop_process
from pghd import topics, wire
from pghd.alerting import Alert, AlertLabels, NotificationOutcome, label_fingerprint
from tests.integration.sync import alert_states
from tests.unit.alerts.conftest import make_anomaly

RECEIVER_DOWN_S = 600  # how long the outage receiver refuses connections
BACKOFF_CAP_S = 30  # the worker's longest wait between two tries
FALLBACK_AFTER_S = 120  # the outage route's fallback delay
HOLD_S = 20  # the crash receiver holds its first answer this long
TEAMS = ("outage", "crash", "late")


@dataclass
class Hit:
    path: str
    notification_id: str
    title: str
    at: float
    wall: datetime


@dataclass
class Receiver:
    """A webhook that keeps the first post of each notification id (repeats are counted,
    not delivered); the first post to a ``hold`` path is answered after ``HOLD_S``."""

    hold: set[str] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)
    held_arrived: threading.Event = field(default_factory=threading.Event)
    held_answered_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    serving: bool = False

    def bind(self) -> str:
        """Take a port without listening: connections are refused until :meth:`up`."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                hit = Hit(
                    self.path, body["notification_id"], body["title"], time.monotonic(), _now()
                )
                with receiver.lock:
                    held = self.path in receiver.hold and not any(
                        h.path == self.path for h in receiver.hits
                    )
                    receiver.hits.append(hit)
                if held:
                    receiver.held_arrived.set()
                    time.sleep(HOLD_S)  # the sender is killed while it waits for this answer
                with contextlib.suppress(OSError):
                    self.send_response(200)
                    self.end_headers()
                if held:
                    receiver.held_answered_at = time.monotonic()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()
        return f"json://127.0.0.1:{self.server.server_address[1]}"

    def up(self) -> None:
        assert self.server is not None
        self.server.server_activate()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.serving = True

    def close(self) -> None:
        if self.server is not None:
            if self.serving:
                self.server.shutdown()
            self.server.server_close()

    def to(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == f"/{path}"]

    def delivered(self, path: str) -> set[str]:
        """Notification ids kept (a repeat of an id is dropped)."""
        return {h.notification_id for h in self.to(path)}


@dataclass
class Worker:
    env: dict[str, str]
    log: Path
    bootstrap: str
    patients: dict[str, str]
    live: Receiver
    outage: Receiver
    process: Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "alerts.main"]
        self.process = start_detached(cmd, log_file=self.log, env=self.env, die_with_parent=True)

    def kill(self) -> None:
        assert self.process is not None
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process.pid, timeout=30)
            self.process = None

    def diagnostics(self) -> str:
        return log_tail(self.log, 60)

    def undelivered(self) -> dict[str, float]:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.env['PGHD_ALERTS_WEB_PORT']}/metrics").text
        except httpx.HTTPError:
            return {}
        return {
            s.labels["state"]: s.value
            for family in text_string_to_metric_families(text)
            if family.name == "alerts_undelivered"
            for s in family.samples
        }


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    workdir = tmp_path_factory.mktemp("outbox")
    live, outage = Receiver(hold={"/crash"}), Receiver()
    live_url, outage_url = live.bind(), outage.bind()
    live.up()
    patients = {team: f"ob-{team}-{uuid.uuid4().hex[:8]}" for team in TEAMS}
    step = [{"after_s": 0, "channels": ["CH"]}]

    def route(team: str, channel: str, **extra: Any) -> dict[str, Any]:
        escalation = json.loads(json.dumps(step).replace("CH", channel))
        return {"name": team, "teams": [team], "escalation": escalation, **extra}

    routing = {
        "channels": {
            "outage": f"{outage_url}/outage",
            "backup": f"{live_url}/backup",
            "crash": f"{live_url}/crash",
            "late": f"{live_url}/late",
        },
        "cleared_channels": ["outage", "crash", "late"],  # backup: severity and link only
        "patient_teams": {patient: team for team, patient in patients.items()},
        "routes": [
            route("outage", "outage", fallback=["backup"], fallback_after_s=FALLBACK_AFTER_S),
            route("crash", "crash"),
            route("late", "late"),
        ],
    }
    (workdir / "routing.json").write_text(json.dumps(routing))
    env = {
        "PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PGHD_ALERTS_APP_ID": f"pghd-alerts-outbox-{uuid.uuid4().hex[:8]}",
        "PGHD_ALERTS_DATA_DIR": str(workdir / "data"),
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_ROUTING_FILE": str(workdir / "routing.json"),
        "PGHD_ALERTS_NOTIFY_URLS": "[]",
        "PGHD_ALERTS_NOTIFY_MAX_BACKOFF_S": str(BACKOFF_CAP_S),
        "PGHD_ALERTS_TICK_S": "0.5",
    }
    running = Worker(env, workdir / "alerts.log", kafka_bootstrap, patients, live, outage)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        live.close()
        outage.close()


def _produce(worker: Worker, team: str, *, detected_at: datetime | None = None) -> None:
    patient, at = worker.patients[team], detected_at or _now()
    anomaly = make_anomaly(
        anomaly_id=f"an-{uuid.uuid4().hex[:12]}",
        patient_id=patient,
        observed_at=at,
        detected_at=at,
    )
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    try:
        producer.send(topics.ANOMALIES, key=patient.encode(), value=wire.encode(anomaly))
        producer.flush()
    finally:
        producer.close()


def _alert(worker: Worker, team: str) -> Alert | None:
    """The latest state of the team patient's heart-rate alert on pghd.alerts.v1."""
    labels = AlertLabels(patient_id=worker.patients[team], problem="heart_rate")
    states = alert_states(worker.bootstrap, fingerprint=label_fingerprint(labels))
    return states[-1] if states else None


def _until(worker: Worker, what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    return wait_for(
        lambda: probe() or None,
        timeout=timeout,
        what=what,
        diagnostics=worker.diagnostics,
        every=0.2,
    )


def _records(alert: Alert | None, channel: str, outcome: NotificationOutcome) -> list[Any]:
    notes = [] if alert is None else alert.notifications
    return [r for r in notes if r.channel == channel and r.outcome is outcome]


def test_an_anomaly_older_than_a_day_opens_an_alert_marked_late(worker: Worker) -> None:
    _produce(worker, "late", detected_at=_now() - timedelta(hours=26))
    alert = _until(worker, "the late alert", lambda: _alert(worker, "late"))
    assert alert.late and alert.anomaly_count == 1
    (page,) = _until(worker, "the late page", lambda: worker.live.to("late"))
    assert page.title.endswith("(late: detected 26 h ago)"), page.title
    delivered = _until(
        worker,
        "the late page recorded as delivered",
        lambda: _records(_alert(worker, "late"), "late", NotificationOutcome.DELIVERED),
    )
    assert delivered[-1].final


def test_killed_mid_delivery_the_restarted_worker_resends_once(worker: Worker) -> None:
    _produce(worker, "crash")
    assert worker.live.held_arrived.wait(timeout=120), worker.diagnostics()
    worker.kill()
    killed_at = time.monotonic()
    (first,) = worker.live.to("crash")
    assert worker.live.held_answered_at is None, "killed while the request was in flight"
    worker.start()

    hits = _until(worker, "the re-send", lambda: (h := worker.live.to("crash"))[1:] and h, 240)
    assert {h.notification_id for h in hits} == {first.notification_id}, "the same id"
    delivered = _until(
        worker,
        "the re-send recorded as delivered",
        lambda: _records(_alert(worker, "crash"), "crash", NotificationOutcome.DELIVERED),
    )
    assert "outcome unknown" in (delivered[-1].detail or "") and delivered[-1].final
    _until(worker, "the held answer", lambda: worker.live.held_answered_at, HOLD_S + 30)
    assert worker.live.held_answered_at is not None and worker.live.held_answered_at > killed_at
    hits = worker.live.to("crash")
    assert len(hits) == 2, "sent twice at most: no third send"
    assert worker.live.delivered("crash") == {first.notification_id}, "delivered once"


@pytest.mark.timeout(RECEIVER_DOWN_S + 300)
def test_a_receiver_down_for_ten_minutes_gets_the_page_once_when_back(worker: Worker) -> None:
    down_from, down_wall = time.monotonic(), _now()
    _produce(worker, "outage")

    def failures() -> list[Any]:
        return _records(_alert(worker, "outage"), "outage", NotificationOutcome.FAILED)

    _until(worker, "a refused attempt in the alert's history", failures)
    _until(worker, "the undelivered gauge", lambda: worker.undelivered().get("retrying"))
    (backup,) = _until(
        worker, "the fallback page", lambda: worker.live.to("backup"), FALLBACK_AFTER_S + 60
    )
    assert "fallback: outage failing for" in backup.title
    assert backup.title.startswith("[critical] pghd alert"), "backup is not cleared"
    assert "ob-" not in backup.title, "no patient id to a channel not cleared for it"
    assert backup.at - down_from >= FALLBACK_AFTER_S - 5

    worker.stop()  # the outbox entry and its next try live in Kafka, not in the process
    worker.start()
    restarted = _now()
    _until(
        worker,
        "a refused attempt made by the restarted worker",
        lambda: [r for r in failures() if r.at > restarted],
        120,
    )
    while time.monotonic() < down_from + RECEIVER_DOWN_S:  # the outage lasts its full length
        assert worker.process is not None and worker.process.poll() is None, worker.diagnostics()
        assert worker.outage.to("outage") == []
        time.sleep(1)
    up_at, up_wall = time.monotonic(), _now()
    worker.outage.up()

    (page,) = _until(worker, "the page after the outage", lambda: worker.outage.to("outage"))
    assert page.at - up_at <= BACKOFF_CAP_S + 5, "within the backoff cap of the return"
    delivered = _until(
        worker,
        "the page recorded as delivered",
        lambda: _records(_alert(worker, "outage"), "outage", NotificationOutcome.DELIVERED),
    )
    assert delivered[-1].final
    _until(worker, "the gauge back to 0", lambda: worker.undelivered().get("retrying") == 0)
    refused = [r for r in failures() if down_wall <= r.at <= up_wall]
    assert len(refused) >= 2, "attempts refused during the outage were audited"
    assert len(worker.outage.to("outage")) == 1 and len(worker.outage.delivered("outage")) == 1
    assert len(worker.live.to("backup")) == 1, "the fallback went out once"
