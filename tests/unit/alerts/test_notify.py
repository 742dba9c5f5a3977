"""Notification ids on webhook URLs and real delivery through Apprise."""

from __future__ import annotations

import apprise

from alerts.notify import (
    can_deduplicate,
    send_notification,
    with_notification_id,
)
from pghd.contracts import Severity

from .conftest import Receiver


def test_notification_id_rides_on_webhook_urls_and_as_an_email_header() -> None:
    url = with_notification_id("json://127.0.0.1:1/hook", "nt-9")
    assert url == "json://127.0.0.1:1/hook?:notification_id=nt-9&+X-Pghd-Notification-Id=nt-9"
    assert with_notification_id("json://h/x?a=1", "nt-9").startswith("json://h/x?a=1&:")
    mail = with_notification_id("mailto://u:p@example.org?to=lead@example.org", "nt-9")
    assert mail == "mailto://u:p@example.org?to=lead@example.org&+X-Pghd-Notification-Id=nt-9"
    plugin = apprise.Apprise.instantiate(mail)
    assert plugin is not None and plugin.headers == {"X-Pghd-Notification-Id": "nt-9"}
    assert with_notification_id("slack://a/b/c", "nt-9") == "slack://a/b/c"
    assert can_deduplicate("JSONS://h") and not can_deduplicate("slack://token")
    assert not can_deduplicate("mailto://u:p@example.org"), "mail clients do not dedup on it"


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
