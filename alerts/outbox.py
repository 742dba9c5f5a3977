"""The outbox, pure: what becomes of each promised notification until it is settled.

Each :class:`~alerts.pending.PendingDelivery` in a patient's state is one outbox entry. The
worker (:mod:`alerts.delivery`) starts an attempt only once the entry says so in the table
(``sending``, flushed to the changelog), and reports each attempt to :func:`settle`:

- delivered: the entry leaves the outbox; the alert's history gets a final ``delivered``
  record;
- failed before the retry horizon: the entry waits until ``next_attempt_at``
  (:mod:`alerts.backoff`); the history gets a ``failed`` record. The first
  :data:`AUDITED_FAILURES` failures of a delivery get one record each; later ones update a
  single record that counts them, so an outage of hours does not push the alert's earlier
  history out of its 500 records;
- failed at or after the horizon: given up, with a final ``failed`` record ("given up").

On every tick :func:`plan` goes through the entries no task of this process is sending:

- acknowledged or resolved by a person since the entry was queued: not tried again (final
  ``failed`` record saying so). Resolved by the system (quiet, superseded) does not count:
  the finding still has to reach someone;
- ``sending``, yet nobody here sends it: the process that started the attempt died (or lost
  the partition) before it heard the outcome. ``resend(entry)`` decides: send it again now
  with the same notification id (one more send per crash), or give it up
  (:data:`UNKNOWN_OUTCOME`); see :func:`alerts.delivery.resume_policy`;
- due (``next_attempt_at`` has come): the next attempt starts;
- failing for its route's ``fallback_after_s`` and the route has ``fallback`` channels: each
  of them not already told in that round gets the notification too (once, its own
  notification id, title marked), while the failing channel goes on being retried.

:func:`undelivered` counts what the ``alerts_undelivered`` gauge shows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from alerts.audit import record_attempt
from alerts.backoff import RetryPolicy, fallback_due, next_attempt_at
from alerts.lifecycle import SYSTEM_ACTOR
from alerts.pending import PendingDelivery, notification_id
from alerts.routing import brief
from alerts.state import PatientState, Step
from pghd.alerting import Alert, AlertState, NotificationOutcome, Route, RoutingConfig

__all__ = [
    "AUDITED_FAILURES",
    "UNKNOWN_OUTCOME",
    "Plan",
    "Settled",
    "plan",
    "record_attempt",
    "settle",
    "undelivered",
]

AUDITED_FAILURES = 5
"""Failed attempts of one delivery recorded one by one; later ones share one record."""
UNKNOWN_OUTCOME = (
    "outcome unknown after a restart; not re-sent: the channel cannot deduplicate"
    " and the notification is not a warning or critical page"
)
_FAILED = NotificationOutcome.FAILED

Resend = Callable[[PendingDelivery], bool]
SettledKind = Literal["delivered", "retry", "given_up", "stale"]


@dataclass(frozen=True, slots=True)
class Settled:
    """The state after one attempt, the alert that changed and what became of the delivery.

    ``stale``: the delivery was no longer pending (only the history was written)."""

    state: PatientState
    alert: Alert | None
    kind: SettledKind
    delivery: PendingDelivery


@dataclass(frozen=True, slots=True)
class Plan:
    """What a tick does to the outbox; ``step.deliveries`` are the attempts to start now."""

    step: Step
    resent: list[PendingDelivery] = field(default_factory=list)
    given_up: list[PendingDelivery] = field(default_factory=list)
    cancelled: list[PendingDelivery] = field(default_factory=list)
    fallbacks: list[PendingDelivery] = field(default_factory=list)


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"


def settle(
    state: PatientState,
    delivery: PendingDelivery,
    *,
    delivered: bool,
    at: datetime,
    policy: RetryPolicy,
) -> Settled:
    """Record the outcome of the attempt just made to ``delivery`` (see the module docstring)."""
    entry = state.pending.get(delivery.notification_id)
    outcome = NotificationOutcome.DELIVERED if delivered else _FAILED
    if entry is None:
        new, alert = record_attempt(
            state, delivery, outcome=outcome, at=at, detail="no longer pending", final=True
        )
        return Settled(new, alert, "stale", delivery)
    note = "re-sent after a restart (outcome unknown), " if entry.resent else ""
    if delivered:
        detail = f"{note}attempt {entry.attempts}"
        new, alert = record_attempt(state, entry, outcome=outcome, at=at, detail=detail, final=True)
        return Settled(new, alert, "delivered", entry)
    failures = entry.failures + 1
    key = entry.notification_id
    nxt = next_attempt_at(
        failed_at=at, failures=failures, queued_at=entry.queued_at, policy=policy, key=key
    )
    failed = entry.model_copy(
        update={
            "sending": False,
            "failures": failures,
            "first_failed_at": entry.first_failed_at or at,
            "next_attempt_at": nxt,
            "resent": False,
        }
    )
    if nxt is None:
        detail = (
            f"{note}given up: attempt {entry.attempts} failed after the"
            f" {_span(policy.horizon_s)} retry horizon ({failures} failed attempts)"
        )
        new, alert = record_attempt(state, entry, outcome=_FAILED, at=at, detail=detail, final=True)
        return Settled(new, alert, "given_up", failed)
    wait = f"next try in {(nxt - at).total_seconds():.0f} s"
    detail = f"{note}attempt {entry.attempts} failed; {wait}"
    if failures >= AUDITED_FAILURES:
        detail = (
            f"{note}attempt {entry.attempts} failed ({failures} failed attempts so far); {wait}"
        )
    base = state.model_copy(update={"pending": {**state.pending, key: failed}})
    new, alert = record_attempt(
        base,
        entry,
        outcome=_FAILED,
        at=at,
        detail=detail,
        final=False,
        replace=failures > AUDITED_FAILURES,
    )
    return Settled(new, alert, "retry", failed)


def _handled(alert: Alert | None, *, since: datetime) -> str | None:
    """Who took the alert in hand after ``since`` (acknowledged, or resolved by a person)."""
    if alert is None:
        return None
    if alert.acknowledged_at is not None and alert.acknowledged_at > since:
        return f"acknowledged by {alert.acknowledged_by}"
    by_person = alert.resolved_by is not None and alert.resolved_by != SYSTEM_ACTOR
    if by_person and alert.resolved_at is not None and alert.resolved_at > since:
        return f"resolved by {alert.resolved_by}"
    return None


def _route(config: RoutingConfig | None, entry: PendingDelivery) -> Route | None:
    if config is None or entry.fallback_for is not None or entry.fell_back:
        return None
    route = next((r for r in config.routes if r.name == entry.route), None)
    return route if route is not None and route.fallback else None


def _told(state: PatientState, entry: PendingDelivery) -> set[str]:
    """Channels of the entry's route already notified in its round (it too: it is failing)."""
    alert = state.alerts.get(entry.fingerprint)
    records = () if alert is None or alert.alert_id != entry.alert_id else alert.notifications
    return {entry.channel} | {
        r.channel
        for r in records
        if (r.route, r.attempt, r.outcome) == (entry.route, entry.round, NotificationOutcome.QUEUED)
    }


def _fallback_of(
    entry: PendingDelivery, channel: str, *, now: datetime, config: RoutingConfig
) -> PendingDelivery:
    since = entry.first_failed_at or now
    failing_s = max(0.0, (now - since).total_seconds())
    note = f" (fallback: {entry.channel} failing for {int(failing_s // 60)} min)"
    title, body = entry.title + note, entry.body
    if channel not in config.cleared_channels:  # told the severity and a link only
        title, body = brief(entry.severity, entry.alert_id, config=config, note=note)
    ident = notification_id(
        alert_id=entry.alert_id, round=entry.round, route=f"{entry.route}/fallback", channel=channel
    )
    return entry.model_copy(
        update={
            "notification_id": ident,
            "channel": channel,
            "title": title,
            "body": body,
            "queued_at": now,
            "attempts": 1,
            "sending": True,
            "failures": 0,
            "first_failed_at": None,
            "next_attempt_at": None,
            "resent": False,
            "fallback_for": entry.channel,
        }
    )


def plan(
    state: PatientState,
    *,
    now: datetime,
    config: RoutingConfig | None,
    busy: Collection[str],
    resend: Resend,
) -> Plan:
    """The tick's work on the patient's outbox (see the module docstring)."""
    current, changed = state, dict[str, Alert]()
    starts: list[PendingDelivery] = []
    resent: list[PendingDelivery] = []
    given_up: list[PendingDelivery] = []
    cancelled: list[PendingDelivery] = []
    fallbacks: list[PendingDelivery] = []

    def put(entry: PendingDelivery) -> None:
        nonlocal current
        pending = {**current.pending, entry.notification_id: entry}
        current = current.model_copy(update={"pending": pending})

    def write(
        entry: PendingDelivery, outcome: NotificationOutcome, detail: str, final: bool
    ) -> None:
        nonlocal current
        current, alert = record_attempt(
            current, entry, outcome=outcome, at=now, detail=detail, final=final
        )
        if alert is not None:
            changed[alert.fingerprint] = alert

    for entry in state.pending.values():
        if entry.notification_id in busy:
            continue
        alert = current.alerts.get(entry.fingerprint)
        if alert is not None and alert.alert_id != entry.alert_id:
            alert = None  # superseded: the finding is still delivered, not recorded
        handled = _handled(alert, since=entry.queued_at)
        if handled is not None:
            write(entry, _FAILED, f"not tried again: alert {handled}", True)
            cancelled.append(entry)
            continue
        if entry.sending and not resend(entry):
            write(entry, _FAILED, UNKNOWN_OUTCOME, True)
            given_up.append(entry)
            continue
        if entry.sending or entry.next_attempt_at is None or now >= entry.next_attempt_at:
            entry = entry.model_copy(
                update={
                    "attempts": entry.attempts + 1,
                    "sending": True,
                    "next_attempt_at": None,
                    "resent": entry.sending,
                }
            )
            put(entry)
            starts.append(entry)
            if entry.resent:
                resent.append(entry)
        route = _route(config, entry)
        if (
            route is None
            or config is None
            or not fallback_due(
                first_failed_at=entry.first_failed_at, now=now, after_s=route.fallback_after_s
            )
        ):
            continue
        put(entry.model_copy(update={"fell_back": True}))
        told = _told(current, entry)
        for channel in route.fallback or ():
            backup = _fallback_of(entry, channel, now=now, config=config)
            if channel in told or backup.notification_id in current.pending:
                continue
            put(backup)
            write(backup, NotificationOutcome.QUEUED, f"fallback for {entry.channel}", False)
            starts.append(backup)
            fallbacks.append(backup)
    step = Step(
        state=current, changed=list(changed.values()), deliveries=starts, dirty=current != state
    )
    return Plan(step, resent, given_up, cancelled, fallbacks)


def undelivered(states: Iterable[PatientState]) -> dict[str, int]:
    """``retrying``: entries past their first attempt and not delivered; ``given_up``: final
    failed records of open (unacknowledged) alerts."""
    retrying = given_up = 0
    for state in states:
        retrying += sum(1 for d in state.pending.values() if d.failures or d.attempts > 1)
        given_up += sum(
            1
            for alert in state.alerts.values()
            if alert.status is AlertState.OPEN
            for r in alert.notifications
            if r.final and r.outcome is _FAILED
        )
    return {"retrying": retrying, "given_up": given_up}
