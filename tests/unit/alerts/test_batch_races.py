"""The alerts worker's batch against a notification settling while the batch is sent.

A first attempt runs in its own task; when it settles (the page was delivered) while a
later batch of the same patient waits for Kafka's ack, the later batch must not put the
delivery back as unsettled: the tick would then page the care team a second time. Kafka is
replaced by a gate here (this is the ordering of two tasks in one worker, no broker is
involved); the integration tests run the same code against a real broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from alerts import agents
from alerts.app import build_app
from alerts.settings import AlertsSettings
from pghd import topics, wire
from pghd.kafka_send import Outgoing

from .conftest import make_anomaly

PATIENT = "p1"


def _event(offset: int, payload: bytes) -> Any:
    message = SimpleNamespace(
        key=PATIENT.encode(), topic=topics.ANOMALIES, partition=0, offset=offset
    )
    return SimpleNamespace(message=message, value=payload)


async def test_a_page_delivered_during_a_later_batch_is_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = AlertsSettings(
        app_id=f"race-{uuid.uuid4().hex[:8]}", notify_urls=["json://127.0.0.1:9/hook"]
    )
    app, alerts = build_app(settings)
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {TP(topics.ANOMALIES, 0)})
    monkeypatch.setattr(alerts.alert_state, "send_changelog", lambda *a, **k: None)
    monkeypatch.setattr(alerts.alerts_topic, "send_soon", lambda *a, **k: None)

    page_answered = asyncio.Event()
    kafka_acked = asyncio.Event()
    kafka_acked.set()
    pages: list[str] = []

    async def notify(url: str, **fields: Any) -> bool:
        pages.append(fields["notification_id"])
        await page_answered.wait()
        return True

    async def send_all(producer: Any, outgoing: Sequence[Outgoing]) -> list[Any]:
        await kafka_acked.wait()
        return [
            SimpleNamespace(partition=p or 0, offset=n) for n, (_, _, _, p) in enumerate(outgoing)
        ]

    monkeypatch.setattr(agents, "send_notification", notify)
    monkeypatch.setattr(agents, "send_all", send_all)
    now = datetime.now(UTC)
    first = make_anomaly(anomaly_id="an-1", detected_at=now, event_ids=["e1"])
    second = make_anomaly(anomaly_id="an-2", detected_at=now, event_ids=["e2"])

    await alerts.handle_batch([_event(0, wire.encode(first))])  # opens the alert; page starts
    await asyncio.sleep(0)
    assert len(pages) == 1
    kafka_acked.clear()
    later = asyncio.ensure_future(alerts.handle_batch([_event(1, wire.encode(second))]))
    await asyncio.sleep(0.01)  # the later batch waits for its ack
    page_answered.set()  # meanwhile the page is delivered and settled
    await asyncio.sleep(0.01)
    kafka_acked.set()
    await later

    state = alerts.load(PATIENT)
    assert state is not None
    (alert,) = state.alerts.values()
    assert alert.anomaly_count == 2
    assert state.pending == {}, "the delivered page is pending again"
    planned = alerts.courier.plan(state, now=datetime.now(UTC))
    assert planned.step.deliveries == []
    assert len(pages) == 1
