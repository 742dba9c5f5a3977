"""The agent's per-message entry: dead letters and stale anomalies (no Kafka needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.app import alerts
from alerts.state import Step, Where
from pghd import topics, wire
from pghd.contracts import DeadLetter

from .conftest import make_anomaly

WHERE = Where(topic=topics.ANOMALIES, partition=3, offset=42, key="p1")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"anomaly_id": "x"}', "patient_id"),
        (b"", "empty message"),
        (None, "empty message"),
    ],
)
def test_undecodable_anomaly_becomes_a_dead_letter(payload: bytes | None, reason: str) -> None:
    outcome = alerts.handle(payload, where=WHERE, now=datetime.now(UTC))
    assert isinstance(outcome, DeadLetter)
    assert outcome.stage == "alerts" and reason in outcome.reason
    assert (outcome.topic, outcome.partition, outcome.offset, outcome.key) == (
        topics.ANOMALIES,
        3,
        42,
        "p1",
    )
    assert wire.decode(DeadLetter, wire.encode(outcome)) == outcome


def test_undecodable_command_becomes_a_dead_letter() -> None:
    where = Where(topic=topics.ALERT_COMMANDS, partition=3, offset=7, key="p1")
    outcome = alerts.handle(b'{"kind": "acknowledge"}', where=where, now=datetime.now(UTC))
    assert isinstance(outcome, DeadLetter) and outcome.topic == topics.ALERT_COMMANDS


def test_an_anomaly_older_than_the_age_limit_opens_a_late_alert() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    old = make_anomaly(detected_at=now - timedelta(days=2))
    step = alerts.handle(wire.encode(old), where=WHERE, now=now)
    assert isinstance(step, Step) and step.dirty
    (alert,) = step.changed
    assert alert.late and alert.anomaly_ids == [old.anomaly_id]
    timely = alerts.handle(wire.encode(make_anomaly(detected_at=now)), where=WHERE, now=now)
    assert isinstance(timely, Step) and not timely.changed[0].late
