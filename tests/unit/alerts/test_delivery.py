"""Delivery of one promised notification: retries, backoff, every attempt recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.delivery import UNKNOWN_OUTCOME, deliver, resume_policy
from alerts.notify import send_notification
from alerts.state import PendingDelivery
from pghd.alerting import NotificationOutcome
from pghd.contracts import Severity

from .conftest import Receiver

DELIVERY = PendingDelivery(
    notification_id="nt-1",
    patient_id="p1",
    alert_id="al-1",
    fingerprint="0123456789abcdef",
    route="r",
    channel="nurses",
    round=1,
    severity=Severity.CRITICAL,
    title="[critical] patient p1 heart_rate",
    body="alert_id: al-1",
    queued_at=datetime(2026, 11, 25, tzinfo=UTC),
)


async def test_fails_three_times_then_delivers_once_with_four_records(receiver: Receiver) -> None:
    receiver.fail_first = 3
    records: list[tuple[NotificationOutcome, bool]] = []
    sleeps: list[float] = []

    async def send(d: PendingDelivery) -> bool:
        return await send_notification(
            receiver.json_url(),
            title=d.title,
            body=d.body,
            severity=d.severity,
            notification_id=d.notification_id,
        )

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    ok = await deliver(
        DELIVERY,
        send=send,
        record=lambda d, outcome, detail, final: records.append((outcome, final)),
        attempts=5,
        backoff_s=1.0,
        max_backoff_s=3.0,
        sleep=sleep,
    )
    assert ok and receiver.calls == 4 and len(receiver.bodies) == 1
    assert receiver.bodies[0]["notification_id"] == "nt-1"
    assert records == [
        (NotificationOutcome.FAILED, False),
        (NotificationOutcome.FAILED, False),
        (NotificationOutcome.FAILED, False),
        (NotificationOutcome.DELIVERED, True),
    ]
    assert sleeps == [1.0, 2.0, 3.0], "exponential, capped"


async def test_gives_up_after_the_attempts() -> None:
    records: list[tuple[NotificationOutcome, bool]] = []

    async def send(d: PendingDelivery) -> bool:
        return False

    async def sleep(seconds: float) -> None:
        return None

    ok = await deliver(
        DELIVERY,
        send=send,
        record=lambda d, outcome, detail, final: records.append((outcome, final)),
        attempts=2,
        backoff_s=0,
        sleep=sleep,
    )
    assert not ok
    assert records == [(NotificationOutcome.FAILED, False), (NotificationOutcome.FAILED, True)]


def test_unknown_outcomes_are_resent_only_where_receivers_can_deduplicate() -> None:
    assert resume_policy("json://host/hook") == "resend"
    assert resume_policy("jsons://host/hook") == "resend"
    assert resume_policy("mailto://user:pw@example.org") == "give_up"
    assert resume_policy(None) == "give_up"
    assert "not re-sent" in UNKNOWN_OUTCOME
