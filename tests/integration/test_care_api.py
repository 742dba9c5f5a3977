"""The care-team API on real Kafka, run as its own process (``python -m alerts.api.main``).

Alerts are produced to the compacted ``pghd.alerts.v1`` as the worker would, the API reads
them (from the beginning, then following), lists them over HTTP with filters, and its
commands land on ``pghd.alert-commands.v1`` keyed by patient id. ``pghd alerts list`` prints
them too. The silenced patient is enrolled (an enrollment record on ``pghd.enrollments.v1``,
as ingest writes it): the API lists silences of enrolled patients only. Patient ids are
unique per run: the session's Kafka is shared with other tests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from deploy.local.harness import running_care_api
from deploy.local.process import log_tail
from pghd import topics, wire
from pghd.access import hash_token
from pghd.alert_commands import AlertCommand, CommandKind
from pghd.alerting import Alert, AlertLabels, AlertState, label_fingerprint
from pghd.cli import app as cli
from pghd.contracts import Severity
from pghd.enrollment import Action, Change, Enrollment, EnrollmentStatus

TOKEN = "care-integration-token"
USER = "nurse-ward-3"
RUN = uuid.uuid4().hex[:8]
T = TypeVar("T")


def patient(n: int) -> str:
    return f"care-{RUN}-{n}"


@dataclass
class CareApi:
    url: str
    log: Path
    bootstrap: str

    def get(self, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=10)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=10)

    def wait(self, check: Callable[[], T | None], what: str, timeout: float = 20) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{what} within {timeout:.0f} s\n{log_tail(self.log)}")


def make_alert(patient_id: str, *, problem: str = "heart_rate", **changes: Any) -> Alert:
    labels = AlertLabels(patient_id=patient_id, problem=problem)
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "alert_id": f"al-{uuid.uuid4().hex[:12]}",
        "fingerprint": label_fingerprint(labels),
        "labels": labels,
        "severity": Severity.WARNING,
        "summary": f"{problem} far above this patient's usual",
        "opened_at": now - timedelta(minutes=10),
        "updated_at": now,
        "last_anomaly_at": now,
        "anomaly_ids": ["an-1"],
        "anomaly_count": 1,
    }
    fields.update(changes)
    return Alert(**fields)


def publish(bootstrap: str, *records: tuple[str, Alert | None]) -> None:
    """Put alert states (or tombstones) on the alerts topic, keyed by fingerprint."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for fingerprint, alert in records:
            value = None if alert is None else wire.encode(alert)
            producer.send(topics.ALERTS, key=fingerprint.encode(), value=value).get(timeout=10)
    finally:
        producer.close()


def enroll(bootstrap: str, patient_id: str) -> None:
    """Put the patient's enrollment on the enrollments topic, as ingest would."""
    now = datetime.now(UTC)
    enrollment = Enrollment(
        patient_id=patient_id,
        status=EnrollmentStatus.ENROLLED,
        enrolled_at=now,
        revision=1,
        change=Change(
            change_id=f"ch-{uuid.uuid4().hex[:12]}", action=Action.ENROLL, at=now, by="test"
        ),
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(
            topics.ENROLLMENTS, key=patient_id.encode(), value=enrollment.to_record()
        ).get(timeout=10)
    finally:
        producer.close()


def find_command(bootstrap: str, command_id: str) -> tuple[bytes, AlertCommand]:
    """The record of ``command_id`` on the commands topic, as (key, command)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topics.ALERT_COMMANDS) or set()
        consumer.assign([TopicPartition(topics.ALERT_COMMANDS, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    command = wire.decode(AlertCommand, record.value)
                    if command.command_id == command_id:
                        return record.key, command
    finally:
        consumer.close()
    raise AssertionError(f"command {command_id} not on {topics.ALERT_COMMANDS}")


FIRST = make_alert(patient(1), severity=Severity.CRITICAL)
SECOND = make_alert(patient(2), problem="spo2")
GONE = make_alert(patient(3))


@pytest.fixture(scope="module")
def care_api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CareApi]:
    """The API process, started after some alerts were already on the topic."""
    publish(kafka_bootstrap, *((a.fingerprint, a) for a in (FIRST, SECOND, GONE)))
    publish(kafka_bootstrap, (GONE.fingerprint, None))
    enroll(kafka_bootstrap, patient(2))  # silenced below
    workdir = tmp_path_factory.mktemp("care-api")
    routing = workdir / "routing.json"
    routing.write_text(
        json.dumps(
            {
                "channels": {"ward": "json://127.0.0.1:1/hook"},
                "patient_teams": {patient(1): "cardio"},
                "routes": [{"name": "all", "escalation": [{"after_s": 0, "channels": ["ward"]}]}],
            }
        )
    )
    log = workdir / "care-api.log"
    env = {
        "PGHD_CARE_API_TOKENS": json.dumps({USER: hash_token(TOKEN)}),
        "PGHD_CARE_API_ROUTING_FILE": str(routing),
    }
    with running_care_api(kafka_bootstrap=kafka_bootstrap, log=log, env=env) as url:
        yield CareApi(url=url, log=log, bootstrap=kafka_bootstrap)


def test_alerts_on_the_topic_are_listed_with_filters(care_api: CareApi) -> None:
    mine = [
        item
        for item in care_api.get("/v1/alerts", limit=1000).json()["items"]
        if item["patient_id"].startswith(f"care-{RUN}-")
    ]
    assert sorted(i["alert_id"] for i in mine) == sorted([FIRST.alert_id, SECOND.alert_id])
    critical = care_api.get("/v1/alerts", severity="critical", patient_id=patient(1)).json()
    assert [i["alert_id"] for i in critical["items"]] == [FIRST.alert_id]
    assert (
        care_api.get("/v1/alerts", severity="critical", patient_id=patient(2)).json()["items"] == []
    )
    cardio = care_api.get("/v1/alerts", team="cardio").json()["items"]
    assert [(i["alert_id"], i["team"]) for i in cardio] == [(FIRST.alert_id, "cardio")]
    shown = care_api.get(f"/v1/alerts/{SECOND.alert_id}").json()
    assert (shown["summary"], shown["anomaly_ids"]) == (SECOND.summary, ["an-1"])
    # a tombstone deleted it before the API started
    assert care_api.get(f"/v1/alerts/{GONE.alert_id}").status_code == 404
    assert care_api.get("/v1/alerts").status_code == 200
    assert httpx.get(f"{care_api.url}/v1/alerts", timeout=5).status_code == 401


def test_acknowledge_puts_the_command_on_kafka_keyed_by_patient(care_api: CareApi) -> None:
    response = care_api.post(f"/v1/alerts/{FIRST.alert_id}/acknowledge", {"comment": "seen"})
    assert response.status_code == 202, response.text
    key, command = find_command(care_api.bootstrap, response.json()["command_id"])
    assert key == patient(1).encode()
    assert command.kind is CommandKind.ACKNOWLEDGE
    assert (command.alert_id, command.patient_id, command.by, command.reason) == (
        FIRST.alert_id,
        patient(1),
        USER,
        "seen",
    )


def test_a_later_alert_version_replaces_the_earlier(care_api: CareApi) -> None:
    now = datetime.now(UTC)
    acked = FIRST.model_copy(
        update={
            "status": AlertState.ACKNOWLEDGED,
            "acknowledged_at": now,
            "acknowledged_by": USER,
            "updated_at": now,
        }
    )
    publish(care_api.bootstrap, (FIRST.fingerprint, acked))

    def acknowledged() -> list[Any] | None:
        items = care_api.get("/v1/alerts", patient_id=patient(1)).json()["items"]
        return items if items and items[0]["status"] == "acknowledged" else None

    [item] = care_api.wait(acknowledged, "the acknowledged version is listed")
    assert (item["alert_id"], item["acknowledged_by"]) == (FIRST.alert_id, USER)
    assert care_api.get("/v1/alerts", state="open", patient_id=patient(1)).json()["count"] == 0


def test_silence_is_issued_listed_and_expired(care_api: CareApi) -> None:
    ends_at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = care_api.post("/v1/silences", {"patient_id": patient(2), "ends_at": ends_at})
    assert response.status_code == 202, response.text
    silence_id = response.json()["silence_id"]
    key, command = find_command(care_api.bootstrap, response.json()["command_id"])
    assert key == patient(2).encode()
    assert command.silence is not None
    assert command.silence.silence_id == silence_id
    listed = care_api.get("/v1/silences", patient_id=patient(2)).json()["items"]
    assert [(s["silence_id"], s["state"]) for s in listed] == [(silence_id, "active")]
    expired = httpx.delete(
        f"{care_api.url}/v1/silences/{silence_id}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert expired.status_code == 202
    assert care_api.get("/v1/silences", state="expired", patient_id=patient(2)).json()["count"] == 1


def test_cli_lists_the_alert(care_api: CareApi) -> None:
    result = CliRunner().invoke(
        cli,
        ["alerts", "list", "--url", care_api.url, "--patient", patient(2)],
        env={"PGHD_CARE_TOKEN": TOKEN},
    )
    assert result.exit_code == 0, result.output
    assert SECOND.alert_id in result.output
    assert "spo2" in result.output
    shown = CliRunner().invoke(
        cli,
        ["alerts", "show", SECOND.alert_id, "--url", care_api.url, "--token", TOKEN],
    )
    assert shown.exit_code == 0, shown.output
    assert SECOND.summary in shown.output
