"""The outbox entry: one notification promised to one channel, until it is settled.

A :class:`PendingDelivery` lives in the patient's state (:class:`alerts.state.PatientState`,
a Faust table value with a changelog) from the moment it is planned until it is delivered or
given up. It is written before each attempt starts, which is what lets a restarted worker
tell an attempt whose outcome it never heard (``sending``) from one that failed and waits
for its next try (``next_attempt_at``); :mod:`alerts.outbox` moves it along.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from alerts.lifecycle import Notify
from pghd.contracts import PatientId, Severity, UtcDatetime

__all__ = ["PendingDelivery", "notification_id", "plan_deliveries"]


class PendingDelivery(BaseModel):
    """A notification promised to one channel and not yet settled (delivered or given up).

    The outbox entry: in the table (and its changelog) before each attempt starts, so a
    restarted worker knows whose outcome it never heard (``sending``) and when a failing one
    is next due (``next_attempt_at``). The defaults of the later fields describe an entry
    written before they existed: possibly being sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notification_id: str
    patient_id: PatientId
    alert_id: str
    fingerprint: str
    route: str
    channel: str
    round: Annotated[int, Field(ge=1)]
    severity: Severity
    title: str
    body: str
    queued_at: UtcDatetime
    attempts: Annotated[int, Field(ge=1, description="attempts started, the current one too")] = 1
    sending: bool = Field(
        default=True, description="an attempt started and its outcome is not recorded yet"
    )
    failures: Annotated[int, Field(ge=0, description="attempts that failed")] = 0
    first_failed_at: UtcDatetime | None = None
    next_attempt_at: UtcDatetime | None = Field(
        default=None, description="when not sending: when to try again"
    )
    resent: bool = Field(
        default=False, description="the current attempt re-sends one whose outcome is unknown"
    )
    fallback_for: str | None = Field(
        default=None, description="the failing channel this delivery stands in for"
    )
    fell_back: bool = Field(default=False, description="the route's fallback has been queued")


def notification_id(*, alert_id: str, round: int, route: str, channel: str) -> str:
    """Deterministic id of one notification to one channel: the receiver's dedup key."""
    digest = hashlib.sha256(f"{alert_id}/{round}/{route}/{channel}".encode()).hexdigest()[:24]
    return f"nt-{digest}"


def plan_deliveries(notifies: Iterable[Notify], *, now: datetime) -> list[PendingDelivery]:
    """One delivery per channel of each :class:`~alerts.lifecycle.Notify`, its first attempt
    starting (the intent is flushed to Kafka right before the send)."""
    return [
        PendingDelivery(
            notification_id=notification_id(
                alert_id=n.alert_id, round=n.attempt, route=n.route, channel=channel
            ),
            patient_id=n.patient_id,
            alert_id=n.alert_id,
            fingerprint=n.fingerprint,
            route=n.route,
            channel=channel,
            round=n.attempt,
            severity=n.severity,
            title=title,
            body=body,
            queued_at=now,
        )
        for n in notifies
        for channel in n.channels
        for title, body in [n.text_for(channel)]
    ]
