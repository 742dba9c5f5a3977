"""Formatting of notifications, the dedup memory, and real delivery through Apprise."""

from __future__ import annotations

import socket

import apprise
import pytest

from alerts.notify import (
    Notifier,
    RecentIds,
    can_deduplicate,
    format_notification,
    send_notification,
    with_notification_id,
)
from pghd.contracts import Severity

from .conftest import Receiver, make_anomaly


@pytest.mark.parametrize(
    ("severity", "notify_type"),
    [
        (Severity.CRITICAL, apprise.NotifyType.FAILURE),
        (Severity.WARNING, apprise.NotifyType.WARNING),
        (Severity.INFO, apprise.NotifyType.INFO),
    ],
)
def test_format(severity: Severity, notify_type: apprise.NotifyType) -> None:
    anomaly = make_anomaly(severity=severity)
    notification = format_notification(anomaly)
    assert notification.title == f"[{severity.value}] patient p1 heart_rate"
    assert notification.notify_type is notify_type
    assert notification.body.startswith(anomaly.explanation)
    assert "anomaly_id: an-1" in notification.body
    assert "2026-11-25 08:00:00Z" in notification.body


def test_title_names_the_channel_of_blood_pressure() -> None:
    anomaly = make_anomaly(
        metric="blood_pressure", channel="blood_pressure.systolic", unit="mm[Hg]", value=201
    )
    assert format_notification(anomaly).title.endswith("blood_pressure.systolic")


def test_recent_ids_is_a_bounded_lru() -> None:
    recent = RecentIds(maxsize=2)
    assert recent.add("a") and recent.add("b")
    assert not recent.add("a")  # refreshes a
    assert recent.add("c")  # evicts b, the least recently seen
    assert "a" in recent and "c" in recent and "b" not in recent
    assert len(recent) == 2
    with pytest.raises(ValueError):
        RecentIds(0)


def test_invalid_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match=r"#1 \(nonsense://...\)") as info:
        Notifier(["json://127.0.0.1:1/x", "nonsense://secret-token@host"])
    assert "secret-token" not in str(info.value)


async def test_delivers_json_to_a_real_receiver(receiver: Receiver) -> None:
    notifier = Notifier([receiver.json_url("a"), receiver.json_url("b")], backoff_s=0)
    report = await notifier.deliver(format_notification(make_anomaly()))
    assert report.ok and report.delivered == (0, 1)
    assert len(receiver.bodies) == 2
    body = receiver.bodies[0]
    assert body["title"] == "[critical] patient p1 heart_rate"
    assert "anomaly_id: an-1" in body["message"]
    assert body["type"] == "failure"


async def test_failed_channel_is_retried_alone(receiver: Receiver) -> None:
    receiver.fail_first = 1
    notifier = Notifier([receiver.json_url()], attempts=3, backoff_s=0.01)
    report = await notifier.deliver(format_notification(make_anomaly()))
    assert report.ok
    assert receiver.calls == 2 and len(receiver.bodies) == 1


async def test_unreachable_channel_fails_after_the_attempts(receiver: Receiver) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"json://127.0.0.1:{sock.getsockname()[1]}/hook"
    notifier = Notifier([dead, receiver.json_url()], attempts=2, backoff_s=0.01)
    report = await notifier.deliver(format_notification(make_anomaly()))
    assert report.failed == (0,) and report.delivered == (1,)
    assert len(receiver.bodies) == 1, "the working channel is not sent twice"


def test_notification_id_rides_on_webhook_urls_only() -> None:
    url = with_notification_id("json://127.0.0.1:1/hook", "nt-9")
    assert url == "json://127.0.0.1:1/hook?:notification_id=nt-9&+X-Pghd-Notification-Id=nt-9"
    assert with_notification_id("json://h/x?a=1", "nt-9").startswith("json://h/x?a=1&:")
    assert with_notification_id("mailto://u:p@example.org", "nt-9") == "mailto://u:p@example.org"
    assert can_deduplicate("JSONS://h") and not can_deduplicate("slack://token")


async def test_send_notification_carries_the_id_in_body(receiver: Receiver) -> None:
    ok = await send_notification(
        receiver.json_url(), title="t", body="b", severity=Severity.WARNING, notification_id="nt-9"
    )
    assert ok and receiver.bodies == [
        {
            "version": "1.0",
            "title": "t",
            "message": "b",
            "attachments": [],
            "type": "warning",
            "notification_id": "nt-9",
        }
    ]
    assert not await send_notification(
        "nonsense://x", title="t", body="b", severity=Severity.INFO, notification_id="nt-9"
    )
