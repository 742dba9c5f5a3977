"""Feedback to patients' apps on real Kafka, from a real alerts worker process.

The patients are enrolled through a real ingest, each issued their own token there; each
registers their app with it at a real care-team API (``PUT /v1/me/feedback``), which answers
the secret; one alerts worker (``python -m alerts.main``) runs for the module. The patients'
apps are one real HTTP server on the loopback (a path per app). Findings are driven as
``test_alerting.py`` drives them: anomalies produced straight to ``pghd.anomalies.v1``.
A refused reading is a signed Terra push to the real ingest with one heart-rate sample
no heart can have, which ingest dead-letters to ``pghd.dlq.v1`` naming the consenting patient
its account is linked to; a device's
readings are a points record as the processors write it, produced to ``pghd.points.v1``, and
the worker calls a source silent after seconds, not a day, and its weeks (for
``weekly_summary``) last seconds too; an erasure marker is produced to the anomalies as the
processors forward it.

Every delivery is checked with ingest's own verifier (:func:`ingest.webhooks.signing.
verify_timestamped`) and the secret the patient was given; "exactly once" and "nothing" are
asserted after sync points (the worker's group has committed its inputs and the events
topic, the patient's feedback state has nothing pending), not after a sleep.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from alerts.feedback.weekly import week_start
from deploy.local.harness import (
    running_care_api,
    running_pipeline,
    start_group_at_end,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.process import free_port, log_tail, start_detached, stop_process
from deploy.local.topics import read_from_start, read_table
from ingest.webhooks.signing import verify_timestamped
from pghd import topics, wire
from pghd.alerting import Alert, AlertLabels, AlertState, label_fingerprint
from pghd.audit import AuditEvent
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, BaselineSnapshot, Severity
from pghd.erasure import new_marker
from pghd.feedback.events import FeedbackEvent
from pghd.feedback.wording import Kind
from tests.integration.sync import alert_states, caught_up
from tests.webhook_payloads import body_of, terra_body, terra_headers, webhook_config

RUN = uuid.uuid4().hex[:8]
#: patient -> (path of their app, kinds consented to; None: no registration)
APPS: dict[str, tuple[str, list[Kind] | None]] = {
    "warm": ("warm", [Kind.FINDING_OPENED]),
    "a": ("a", [Kind.FINDING_OPENED]),
    "b": ("b", [Kind.FINDING_RESOLVED]),  # no consent to finding_opened
    "d": ("d", None),  # no registration at all
    "flaky": ("flaky", [Kind.FINDING_OPENED]),
    "refused": ("refused", [Kind.READING_REFUSED]),
    "quiet": ("quiet", [Kind.DEVICE_SILENT]),
    "weekly": ("weekly", [Kind.WEEKLY_SUMMARY]),
    "unweekly": ("unweekly", [Kind.FINDING_RESOLVED]),  # no consent to weekly_summary
}
SILENT_AFTER_S = 3.0  # a day in production
WEEK_S = 5.0  # a week in production
QUIET_S = 4.0  # a finding with no anomaly this long resolves (6 h in production)
FAIL_FIRST = {"/flaky": 1}
REFUSED_ACCOUNT = f"terra-{uuid.uuid4()}"
#: what a Terra body event carries (tests/webhook_payloads.py): consented, so only the
#: impossible sample is refused
TERRA_METRICS = [
    "heart_rate", "hrv_sdnn", "spo2", "body_temperature", "blood_pressure", "blood_glucose",
    "weight", "resting_heart_rate",
]  # fmt: skip


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # wall clock, time.time()

    @property
    def event(self) -> FeedbackEvent:
        return wire.decode(FeedbackEvent, self.body)


@dataclass
class Apps:
    """Patients' apps: one real HTTP server; the first ``fail[path]`` posts get 500."""

    posts: list[Post] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def start(self) -> ThreadingHTTPServer:
        apps = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with apps.lock:
                    n = apps.calls[self.path] = apps.calls.get(self.path, 0) + 1
                    failing = n <= apps.fail.get(self.path, 0)
                    if not failing:
                        apps.posts.append(Post(self.path, dict(self.headers), body, time.time()))
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def to(self, path: str) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == f"/{path}"]


@dataclass
class Stack:
    bootstrap: str
    app_id: str
    apps: Apps
    log: Path
    patients: dict[str, str]
    secrets: dict[str, str]
    process: Popen[bytes] | None = None
    care_url: str = ""
    ingest_url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def events_topic(self) -> str:
        return f"{self.app_id}-feedback-events"

    def diagnostics(self) -> str:
        return log_tail(self.log, 60)

    def posts(self, name: str, count: int, timeout: float = 60) -> list[Post]:
        return wait_for(
            lambda: found if len(found := self.apps.to(APPS[name][0])) >= count else None,
            timeout=timeout,
            what=f"{count} feedback posts to /{name}",
            diagnostics=self.diagnostics,
            every=0.05,
        )

    def caught_up(self) -> None:
        caught_up(
            self.bootstrap,
            self.app_id,
            (topics.ANOMALIES, topics.DLQ, topics.POINTS, self.events_topic),
            timeout=60,
            what=self.diagnostics(),
        )

    def feedback_state(self, name: str) -> dict[str, Any] | None:
        table = read_table(self.bootstrap, f"{self.app_id}-feedback-changelog")
        raw = table.get(json.dumps(self.patients[name]).encode())
        return None if raw is None else json.loads(raw)

    def settled(self, name: str) -> dict[str, Any]:
        """The patient's feedback state once nothing of theirs is pending any more."""

        def probe() -> dict[str, Any] | None:
            state = self.feedback_state(name)
            return state if state is not None and not state["pending"] else None

        return wait_for(probe, timeout=60, what=f"{name}'s feedback settled", every=0.2)

    def alert_of(self, name: str) -> Alert:
        """The patient's heart-rate alert, once the worker published it."""
        fingerprint = label_fingerprint(
            AlertLabels(patient_id=self.patients[name], problem="heart_rate")
        )

        def probe() -> Alert | None:
            states = alert_states(self.bootstrap, fingerprint=fingerprint)
            return states[-1] if states else None

        return wait_for(
            probe, timeout=60, what=f"{name}'s finding opened", diagnostics=self.diagnostics
        )

    def resolved(self, name: str) -> Alert:
        """The patient's heart-rate alert, once the worker published it resolved."""
        fingerprint = label_fingerprint(
            AlertLabels(patient_id=self.patients[name], problem="heart_rate")
        )

        def probe() -> Alert | None:
            states = alert_states(self.bootstrap, fingerprint=fingerprint)
            return states[-1] if states and states[-1].status is AlertState.RESOLVED else None

        return wait_for(
            probe, timeout=60, what=f"{name}'s finding resolved", diagnostics=self.diagnostics
        )

    def verified(self, name: str, post: Post) -> FeedbackEvent:
        """The post's event, once its signature verifies with the patient's secret."""
        secret = self.secrets[name].encode("ascii")
        verify_timestamped(
            post.headers["X-Pghd-Signature"], post.body, secrets=[secret], now=time.time()
        )
        return post.event


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def _anomaly(patient: str, n: int = 0) -> Anomaly:
    now = datetime.now(UTC)
    return Anomaly(
        anomaly_id=f"an-{uuid.uuid4().hex[:12]}",
        patient_id=patient,
        metric=Metric.HEART_RATE,
        channel="heart_rate",
        detector="zscore",
        severity=Severity.CRITICAL,
        score=7.2,
        value=151.0 + n,
        unit="/min",
        baseline=BaselineSnapshot(mean=72, spread=5, low=62, high=82, n=300),
        observed_at=now - timedelta(minutes=2),
        detected_at=now,
        explanation="Heart rate 151/min at rest is far above this patient's usual 72/min.",
        event_ids=[f"e{n}"],
    )


def _open_finding(stack: Stack, name: str, n: int = 0) -> float:
    """Produce an anomaly of the patient's (a new finding, or joining theirs); when."""
    patient = stack.patients[name]
    produced = time.time()
    _produce(
        stack.bootstrap, topics.ANOMALIES, [(patient.encode(), wire.encode(_anomaly(patient, n)))]
    )
    return produced


def _register(care_url: str, token: str, url: str, kinds: list[Kind]) -> dict[str, Any]:
    """The patient's app registered with their own token (a 503 while the care-team API has
    not read their token yet is retried); the answer, secret included."""

    def put() -> httpx.Response | None:
        answer = httpx.put(
            f"{care_url}/v1/me/feedback",
            json={"url": url, "kinds": [k.value for k in kinds]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return None if answer.status_code == 503 else answer

    answer = wait_for(put, timeout=60, what="the care-team API to know the patient's token")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    stack_env: dict[str, str],
    influx: InfluxServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("feedback")
    apps = Apps(fail=dict(FAIL_FIRST))
    server = apps.start()
    patients = {name: f"fb-{name}-{RUN}" for name in APPS}
    secrets: dict[str, str] = {}
    app_id = f"pghd-alerts-fb-{RUN}"
    # earlier tests' anomalies and dead letters are not this worker's business
    start_group_at_end(
        kafka_bootstrap,
        app_id,
        [topics.ANOMALIES, topics.ALERT_COMMANDS, topics.DLQ, topics.POINTS],
    )
    env = {
        "PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PGHD_ALERTS_APP_ID": app_id,
        "PGHD_ALERTS_DATA_DIR": str(workdir / "data"),
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_NOTIFY_URLS": "[]",
        "PGHD_ALERTS_TICK_S": "0.5",
        "PGHD_ALERTS_FEEDBACK_TICK_S": "0.2",
        "PGHD_ALERTS_FEEDBACK_BACKOFF_S": "0.5",
        "PGHD_ALERTS_FEEDBACK_SILENT_AFTER_S": str(SILENT_AFTER_S),
        "PGHD_ALERTS_FEEDBACK_WEEK_S": str(WEEK_S),
        "PGHD_ALERTS_GROUPING": json.dumps({"auto_resolve_after_s": QUIET_S}),
        "PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP": "true",  # the apps are on the loopback
    }
    running = Stack(
        bootstrap=kafka_bootstrap,
        app_id=app_id,
        apps=apps,
        log=workdir / "alerts.log",
        patients=patients,
        secrets=secrets,
    )
    care_log = workdir / "care-api.log"
    loopback = {"PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP": "true"}
    with (
        running_pipeline(
            stack_env={**stack_env, "PGHD_INGEST_WEBHOOKS": json.dumps(webhook_config())},
            influx=influx,
            workdir=workdir / "ingest",
            services=("ingest",),
        ) as ingest,
        running_care_api(kafka_bootstrap=kafka_bootstrap, log=care_log, env=loopback) as care,
    ):
        running.care_url = care
        running.ingest_url = ingest.ingest_url
        for name, (path, kinds) in APPS.items():
            body: dict[str, Any] = {"patient_id": patients[name], "issue_token": True}
            if name == "refused":  # a Terra account whose pushes ingest takes for them
                body |= {
                    "consents": TERRA_METRICS,
                    "links": [{"source": "terra", "account": REFUSED_ACCOUNT}],
                }
            enrolled = ingest.admin("POST", "/v1/patients", body)
            assert enrolled.status_code == 201, enrolled.text
            running.tokens[name] = enrolled.json()["token"]
            if kinds is not None:
                url = f"http://127.0.0.1:{apps.port}/{path}"
                secrets[name] = _register(care, running.tokens[name], url, kinds)["secret"]
        running.process = start_detached(
            [sys.executable, "-m", "alerts.main"],
            log_file=running.log,
            env=env,
            die_with_parent=True,
        )
        try:
            # warm-up: the worker runs and has read the subscriptions once a finding is told
            _open_finding(running, "warm")
            running.posts("warm", 1, timeout=120)
            yield running
        finally:
            stop_process(running.process.pid, timeout=20)
            server.shutdown()
            server.server_close()


def test_the_registration_reads_back_without_its_secret(stack: Stack) -> None:
    shown = httpx.get(
        f"{stack.care_url}/v1/me/feedback",
        headers={"Authorization": f"Bearer {stack.tokens['a']}"},
        timeout=10,
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["patient_id"] == stack.patients["a"]
    assert list(shown.json()["kinds"]) == ["finding_opened"]
    assert "secret" not in shown.json() and stack.secrets["a"] not in shown.text
    unregistered = httpx.get(
        f"{stack.care_url}/v1/me/feedback",
        headers={"Authorization": f"Bearer {stack.tokens['d']}"},
        timeout=10,
    )
    assert unregistered.status_code == 404


def test_an_opened_finding_reaches_the_patients_app_once_signed_within_seconds(
    stack: Stack,
) -> None:
    produced = _open_finding(stack, "a")
    (post,) = stack.posts("a", 1, timeout=30)
    latency = post.at - produced
    event = stack.verified("a", post)
    alert = stack.alert_of("a")
    print(f"\nfeedback latency: anomaly produced -> app received {latency:.3f} s")
    assert latency < 5.0, f"{latency:.2f} s from the anomaly to the patient's app"
    assert (event.kind, event.patient_id, event.severity) == (
        Kind.FINDING_OPENED,
        stack.patients["a"],
        Severity.CRITICAL,
    )
    assert event.message.startswith("Your heart rate has been 69 beats per minute above your usual")
    assert post.headers["X-Pghd-Event-Id"] == event.id
    assert event.details.model_dump()["finding_id"] == alert.alert_id

    _open_finding(stack, "a", n=1)  # joins the same finding: nothing new to tell
    stack.caught_up()
    state = stack.settled("a")
    assert event.id in state["settled"]
    assert len(stack.apps.to("a")) == 1, "exactly once"


def test_only_the_kinds_consented_to_are_sent_and_nothing_to_the_unregistered(
    stack: Stack,
) -> None:
    """b consented to finding_resolved only, d never registered: b hears of the resolution
    (the quiet period, seconds here, resolved by the worker's timer), not of the opening; d
    hears nothing, and nothing of d's is even written."""
    opened = {name: _open_finding(stack, name) for name in ("b", "d")}
    (post,) = stack.posts("b", 1, timeout=30)
    event = stack.verified("b", post)
    assert event.kind is Kind.FINDING_RESOLVED and event.patient_id == stack.patients["b"]
    assert post.at - opened["b"] >= QUIET_S - 0.5, "told when it resolved, not when it opened"
    assert event.message == (
        "Your heart rate is back within your usual range. Your care team has been updated"
        " and will follow up with you if needed."
    )
    stack.resolved("d")  # d's finding opened and resolved too: both transitions were made
    stack.caught_up()
    stack.settled("b")
    assert len(stack.apps.to("b")) == 1 and stack.apps.to("d") == []
    assert stack.feedback_state("d") is None
    written = [
        wire.decode(FeedbackEvent, v)
        for _, v in read_from_start(stack.bootstrap, stack.events_topic)
    ]
    assert [e.kind for e in written if e.patient_id == stack.patients["b"]] == [
        Kind.FINDING_RESOLVED
    ], "the opening was not even written: the worker knew b did not consent to it"
    assert all(e.patient_id != stack.patients["d"] for e in written)


def test_an_app_answering_500_then_200_gets_it_after_one_retry_once(stack: Stack) -> None:
    produced = _open_finding(stack, "flaky")
    (post,) = stack.posts("flaky", 1, timeout=30)
    stack.verified("flaky", post)
    print(f"\nfeedback after a 500 and a retry: {post.at - produced:.3f} s")
    stack.caught_up()
    stack.settled("flaky")
    assert stack.apps.calls["/flaky"] == 2
    assert len(stack.apps.to("flaky")) == 1


def test_a_consenting_patients_refused_reading_is_told(stack: Stack) -> None:
    patient = stack.patients["refused"]
    document = terra_body(REFUSED_ACCOUNT, datetime.now(UTC) - timedelta(minutes=30))
    heart = document["data"][0]["heart_data"]["heart_rate_data"]["detailed"]["hr_samples"]
    heart[1]["bpm"] = 5000  # a sample no heart can have: ingest refuses it, takes the rest
    body = body_of(document)
    pushed = httpx.post(
        f"{stack.ingest_url}/v1/webhooks/terra", content=body, headers=terra_headers(body),
        timeout=30,
    )  # fmt: skip
    assert pushed.status_code == 200, pushed.text
    (post,) = stack.posts("refused", 1, timeout=30)
    event = stack.verified("refused", post)
    assert event.kind is Kind.READING_REFUSED and event.patient_id == patient
    assert "could not be stored: the value is outside the range a reading can have" in event.message
    assert "5000" not in post.body.decode()


def test_a_source_that_went_silent_is_told_once(stack: Stack) -> None:
    patient = stack.patients["quiet"]
    line = (
        f"vitals,device=watch-1,metric=heart_rate,patient_id={patient},source=acme,unit=/min"
        f" value=64 {time.time_ns()}"
    )
    record = json.dumps({"schema_version": 1, "patient_id": patient, "lines": [line]})
    arrived = time.time()
    _produce(stack.bootstrap, topics.POINTS, [(patient.encode(), record.encode())])
    (post,) = stack.posts("quiet", 1, timeout=30)
    event = stack.verified("quiet", post)
    print(f"\ndevice_silent told {post.at - arrived:.3f} s after the last readings arrived")
    assert post.at - arrived >= SILENT_AFTER_S - 0.5
    assert event.kind is Kind.DEVICE_SILENT and event.patient_id == patient
    assert "We have not received any readings from acme since" in event.message
    stack.caught_up()
    time.sleep(SILENT_AFTER_S)  # well past another silence's time: still told once
    stack.settled("quiet")
    assert len(stack.apps.to("quiet")) == 1


def _bp_lines(patient: str, at_ns: int) -> list[str]:
    """One blood pressure reading: two lines (channels), one reading."""
    return [
        f"vitals,channel={channel},device=cuff-1,metric=blood_pressure,patient_id={patient},"
        f"source=acme,unit=mmHg value={value} {at_ns}"
        for channel, value in (("systolic", 120), ("diastolic", 80))
    ]


def test_a_consenting_patient_gets_one_signed_weekly_summary_of_the_readings_posted(
    stack: Stack,
) -> None:
    weekly, unweekly = stack.patients["weekly"], stack.patients["unweekly"]
    # both registered before this week began: start just after a boundary, so every record
    # below arrives within one week
    now = datetime.now(UTC)
    boundary = week_start(now, period_s=WEEK_S) + timedelta(seconds=WEEK_S)
    time.sleep((boundary - now).total_seconds() + 0.3)
    week = week_start(datetime.now(UTC), period_s=WEEK_S)
    ns = time.time_ns()
    records: list[tuple[bytes, bytes | None]] = []
    for patient in (weekly, unweekly):
        batches = [
            _bp_lines(patient, ns) + _bp_lines(patient, ns + 1),  # 2 readings, 4 lines
            [
                f"vitals,channel=heart_rate,device=watch-1,metric=heart_rate,"
                f"patient_id={patient},source=acme,unit=/min value=64 {ns}"
            ],
        ]
        for lines in batches:
            body = {"schema_version": 1, "patient_id": patient, "lines": lines}
            records.append((patient.encode(), json.dumps(body).encode()))
    _produce(stack.bootstrap, topics.POINTS, records)
    assert datetime.now(UTC) < week + timedelta(seconds=WEEK_S), "posted within the week"

    (post,) = stack.posts("weekly", 1, timeout=30)
    event = stack.verified("weekly", post)
    print(f"\nweekly_summary told {post.at - (week.timestamp() + WEEK_S):.3f} s after its week")
    assert event.kind is Kind.WEEKLY_SUMMARY and event.patient_id == weekly
    assert event.details.model_dump() == {
        "week_start": week,
        "week_end": week + timedelta(seconds=WEEK_S),
        "readings": 3,
        "days": 1,
        "findings_opened": 0,
        "findings_resolved": 0,
    }
    assert event.message == (
        "Your week: readings came in on 1 of the last 7 days (3 in all). No new findings this week."
    )
    assert unweekly not in post.body.decode()

    # sync point: the worker has decided a later week for the patient (with no readings: no
    # summary) and nothing of theirs is pending; still the one summary, none for the other
    later = week + timedelta(seconds=2 * WEEK_S)

    def decided() -> dict[str, Any] | None:
        state = stack.feedback_state("weekly")
        if state is None or state["pending"] or state.get("summary_done") is None:
            return None
        return state if datetime.fromisoformat(state["summary_done"]) >= later else None

    wait_for(decided, timeout=30, what="a later week decided", diagnostics=stack.diagnostics)
    stack.caught_up()
    assert len(stack.apps.to("weekly")) == 1
    assert stack.apps.to("unweekly") == []
    state = stack.feedback_state("unweekly")
    assert state is None or not state.get("weeks"), "not counted without consent"


def test_an_erasure_takes_the_subscription_and_the_feedback_state_with_it(stack: Stack) -> None:
    patient = stack.patients["a"]
    marker = new_marker(patient, at=datetime.now(UTC), by="admin")
    _produce(stack.bootstrap, topics.ANOMALIES, [(patient.encode(), wire.encode(marker))])

    def report() -> AuditEvent | None:
        for _, value in read_from_start(stack.bootstrap, topics.AUDIT):
            try:
                event = wire.decode(AuditEvent, value)
            except ValueError:
                continue
            if event.request_id == marker.erasure_id and event.patients == [patient]:
                return event
        return None

    found = wait_for(
        report, timeout=60, what="the alerts worker's erasure report", diagnostics=stack.diagnostics
    )
    assert found.removed is not None and found.removed["feedback_subscriptions"] == 1
    assert patient.encode() not in read_table(stack.bootstrap, topics.FEEDBACK_SUBSCRIPTIONS)
    assert stack.feedback_state("a") is None
    mine = {"Authorization": f"Bearer {stack.tokens['a']}"}
    wait_for(
        lambda: (
            httpx.get(f"{stack.care_url}/v1/me/feedback", headers=mine, timeout=10).status_code
            == 404
            or None
        ),
        timeout=30,
        what="the care-team API to read the subscription's tombstone",
    )
