"""Delivering one promised notification to one channel: retries, backoff, every attempt told.

:func:`deliver` is transport-free: the alerts worker passes the Apprise send
(:func:`alerts.notify.send_notification`) and a ``record`` callback that writes each
attempt into the alert's notification history, so the audit trail shows every try.

After a restart (or a rebalance) the worker finds deliveries that were promised (the intent
is in the table before anything is sent) but never settled: their outcome is unknown.
:func:`resume_policy` decides what happens to them: a channel whose receiver is told the
deterministic notification id (webhooks: ``json``, ``form``, ``xml``) gets it again with the
same id, so a receiver that already has it drops the copy; any other channel (e-mail, SMS,
chat) is *not* re-sent, because it cannot deduplicate and a care team paged twice learns to
ignore pages. The attempt is recorded as failed with the reason, and the alert's escalation
(next step, repeat) goes on as planned, so the alert itself is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from alerts.notify import can_deduplicate
from alerts.state import PendingDelivery
from pghd.alerting import NotificationOutcome

__all__ = ["UNKNOWN_OUTCOME", "deliver", "resume_policy"]

logger = logging.getLogger(__name__)

UNKNOWN_OUTCOME = (
    "outcome unknown after a restart; not re-sent because this channel cannot deduplicate"
)

Send = Callable[[PendingDelivery], Awaitable[bool]]
Record = Callable[[PendingDelivery, NotificationOutcome, str | None, bool], None]


def resume_policy(url: str | None) -> Literal["resend", "give_up"]:
    """What to do with a delivery of unknown outcome to the channel at ``url``."""
    return "resend" if url is not None and can_deduplicate(url) else "give_up"


async def deliver(
    delivery: PendingDelivery,
    *,
    send: Send,
    record: Record,
    attempts: int,
    backoff_s: float,
    max_backoff_s: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    resumed: bool = False,
) -> bool:
    """Try up to ``attempts`` times, waiting ``backoff_s`` doubling (capped) in between;
    ``record(delivery, outcome, detail, final)`` after every try. True when delivered.
    ``resumed``: a re-send of a delivery whose outcome was unknown (said in the detail)."""
    note = "re-sent after a restart (outcome unknown), " if resumed else ""
    for attempt in range(1, attempts + 1):
        ok = await send(delivery)
        final = ok or attempt == attempts
        if ok:
            record(delivery, NotificationOutcome.DELIVERED, f"{note}attempt {attempt}", final)
            logger.info(
                "notification %s alert %s channel %s: delivered (attempt %d)",
                delivery.notification_id,
                delivery.alert_id,
                delivery.channel,
                attempt,
            )
            return True
        record(
            delivery,
            NotificationOutcome.FAILED,
            f"{note}attempt {attempt} of {attempts} failed",
            final,
        )
        if final:
            break
        delay = min(max_backoff_s, backoff_s * 2 ** (attempt - 1))
        logger.warning(
            "notification %s alert %s channel %s: attempt %d of %d failed, retry in %.1fs",
            delivery.notification_id,
            delivery.alert_id,
            delivery.channel,
            attempt,
            attempts,
            delay,
        )
        await sleep(delay)
    logger.error(
        "notification %s alert %s channel %s: not delivered after %d attempts",
        delivery.notification_id,
        delivery.alert_id,
        delivery.channel,
        attempts,
    )
    return False
