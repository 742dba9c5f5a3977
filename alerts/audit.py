"""The alert's notification history: what was planned, tried, delivered or given up.

Every attempt of a delivery is written into its alert's ``notifications`` (the audit trail
on ``pghd.alerts.v1`` and in the care-team API), named by channel and route (never by URL:
URLs hold tokens). A record with ``final`` settles its delivery. ``replace`` overwrites the
delivery's latest non-final failure record instead of adding one, which
:func:`alerts.outbox.settle` uses for the long tail of a delivery failing for hours.
"""

from __future__ import annotations

from datetime import datetime

from alerts.pending import PendingDelivery
from alerts.state import PatientState
from pghd.alerting import MAX_NOTIFICATIONS, Alert, NotificationOutcome, NotificationRecord

__all__ = ["record_attempt"]


def _with_record(
    state: PatientState,
    delivery: PendingDelivery,
    record: NotificationRecord,
    *,
    replace: bool = False,
) -> tuple[PatientState, Alert | None]:
    """Append (or, with ``replace``, overwrite this delivery's rolling failure record)."""
    alert = state.alerts.get(delivery.fingerprint)
    if alert is None or alert.alert_id != delivery.alert_id:
        return state, None
    history = list(alert.notifications)
    same = [
        i
        for i, r in enumerate(history)
        if (r.channel, r.route, r.attempt) == (delivery.channel, delivery.route, delivery.round)
        and r.outcome is NotificationOutcome.FAILED
        and not r.final
    ]
    if replace and same:
        history[same[-1]] = record
    else:
        history.append(record)
    alert = alert.model_copy(update={"notifications": history[-MAX_NOTIFICATIONS:]})
    return state.model_copy(update={"alerts": {**state.alerts, alert.fingerprint: alert}}), alert


def record_attempt(
    state: PatientState,
    delivery: PendingDelivery,
    *,
    outcome: NotificationOutcome,
    at: datetime,
    detail: str | None = None,
    final: bool,
    replace: bool = False,
) -> tuple[PatientState, Alert | None]:
    """Add one record to the alert's notification history; ``final`` settles the delivery.

    Returns the new state and the alert that changed (None when the alert is gone)."""
    pending = dict(state.pending)
    if final:
        pending.pop(delivery.notification_id, None)
    record = NotificationRecord(
        channel=delivery.channel,
        route=delivery.route,
        attempt=delivery.round,
        at=at,
        outcome=outcome,
        detail=None if detail is None else detail[:500],
        final=final,
    )
    base = state.model_copy(update={"pending": pending})
    return _with_record(base, delivery, record, replace=replace)
