"""The agent's per-message logic: dead letters, dedup, staleness and delivery."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest

from alerts.app import Where, handle_anomaly
from alerts.notify import Notifier, RecentIds
from pghd import wire
from pghd.contracts import DeadLetter

from .conftest import Receiver, make_anomaly

WHERE = Where(topic="pghd.anomalies.v1", partition=3, offset=42, key="p1")


async def test_anomaly_is_notified_once_per_run(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    notifier = Notifier([receiver.json_url()], backoff_s=0)
    recent = RecentIds()
    payload = wire.encode(make_anomaly())
    outcomes = [
        await handle_anomaly(
            payload, where=WHERE, notifier=notifier, recent=recent, now=datetime.now(UTC)
        )
        for _ in range(2)
    ]
    assert outcomes == ["notified", "duplicate"]
    assert len(receiver.bodies) == 1
    assert "an-1" in caplog.text and "151" not in caplog.text, "logs carry ids, not values"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"anomaly_id": "x"}', "patient_id"),
        (b"", "empty message"),
        (None, "empty message"),
    ],
)
async def test_undecodable_becomes_a_dead_letter(
    payload: bytes | None, reason: str, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    outcome = await handle_anomaly(
        payload,
        where=WHERE,
        notifier=Notifier([receiver.json_url()]),
        recent=RecentIds(),
        now=now,
    )
    assert isinstance(outcome, DeadLetter)
    assert outcome.stage == "alerts" and reason in outcome.reason
    assert (outcome.topic, outcome.partition, outcome.offset, outcome.key) == (
        "pghd.anomalies.v1",
        3,
        42,
        "p1",
    )
    assert wire.decode(DeadLetter, wire.encode(outcome)) == outcome
    assert receiver.bodies == []


async def test_stale_anomaly_is_not_notified(receiver: Receiver) -> None:
    now = datetime.now(UTC)
    old = make_anomaly(detected_at=now - timedelta(days=2))
    outcome = await handle_anomaly(
        wire.encode(old),
        where=WHERE,
        notifier=Notifier([receiver.json_url()]),
        recent=RecentIds(),
        now=now,
        max_age=timedelta(days=1),
    )
    assert outcome == "stale" and receiver.bodies == []


async def test_undeliverable_is_reported_failed_and_acked() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"json://127.0.0.1:{sock.getsockname()[1]}/hook"
    notifier = Notifier([dead], attempts=2, backoff_s=0.01)
    outcome = await handle_anomaly(
        wire.encode(make_anomaly()),
        where=WHERE,
        notifier=notifier,
        recent=RecentIds(),
        now=datetime.now(UTC),
    )
    assert outcome == "failed"
