"""Routing and escalation, pure: which care team channels hear about an alert, and when.

A :class:`RoutingConfig` (a contract in :mod:`pghd.alerting`, re-exported here with its
parts and read by :func:`load_routing_config`) names Apprise channels (name → URL; only
names reach logs and the alerts topic: URLs may hold tokens), maps patients to care teams
and lists routes. A route
matches an alert by team, severity and time-of-day window; *every* matching route is
notified. Each route has an escalation policy: step 1 is the first notification, step
``k`` follows ``after_s`` seconds after the route's first one while nobody acknowledged, and
after the last step the route repeats every ``repeat_interval_s``. Acknowledged and
resolved alerts never escalate. An alert that no route takes at the moment (all out of
hours) waits, checked every :data:`RECHECK`, for the first window to open.

A route may name ``fallback`` channels: a notification of the route whose channel has been
failing for ``fallback_after_s`` (900 s) is also sent there (:mod:`alerts.outbox`).

A per-patient budget caps notification rounds per 24 h; beyond it, findings below critical
are recorded for the daily digest (:mod:`alerts.digest`) instead of paging anyone.

Every function returns the updated alert (notification records, escalation level,
``next_notify_at``) with the :class:`~alerts.lifecycle.Notify` actions to execute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from alerts.lifecycle import Escalate, Notify
from pghd.alerting import (
    MAX_NOTIFICATIONS,
    Alert,
    AlertState,
    Budget,
    EscalationStep,
    NotificationOutcome,
    NotificationRecord,
    Route,
    RoutingConfig,
    TimeWindow,
)
from pghd.contracts import Severity

__all__ = [
    "RECHECK",
    "Budget",
    "EscalationStep",
    "Route",
    "RoutingConfig",
    "TimeWindow",
    "due_escalations",
    "late_note",
    "load_routing_config",
    "matching_routes",
    "notification_rounds",
    "plan_notifications",
]

RECHECK = timedelta(minutes=5)
"""When an escalation is due but no route matches now (a closed time window), look again."""

_QUEUED = NotificationOutcome.QUEUED


def load_routing_config(path: Path) -> RoutingConfig:
    """Read and validate a routing config JSON file; raises ``pydantic.ValidationError``."""
    return RoutingConfig.model_validate_json(path.read_bytes())


def matching_routes(alert: Alert, *, config: RoutingConfig, now: datetime | None) -> list[Route]:
    """Routes for the alert's care team and severity, in time at ``now`` (None: any time)."""
    team = config.team_of(alert.patient_id)
    return [route for route in config.routes if route.matches(alert, team=team, now=now)]


def notification_rounds(alerts: Iterable[Alert], *, patient_id: str, since: datetime) -> int:
    """Notification rounds (one per alert and attempt) sent to a patient's teams since then."""
    return len(
        {
            (alert.alert_id, record.attempt)
            for alert in alerts
            if alert.patient_id == patient_id
            for record in alert.notifications
            if record.outcome is _QUEUED and record.at >= since
        }
    )


def _over_budget(
    alert: Alert, *, config: RoutingConfig, now: datetime, patient_alerts: Sequence[Alert]
) -> bool:
    if config.budget is None or alert.severity is Severity.CRITICAL:
        return False
    alerts = {a.alert_id: a for a in patient_alerts} | {alert.alert_id: alert}
    since = now - timedelta(seconds=config.budget.window_s)
    used = notification_rounds(alerts.values(), patient_id=alert.patient_id, since=since)
    return used >= config.budget.max_notifications


def _anchor(alert: Alert, route: Route) -> datetime:
    """Escalation delays count from the route's first notification (or the alert's opening)."""
    times = [r.at for r in alert.notifications if r.route == route.name and r.outcome is _QUEUED]
    return min(times, default=alert.opened_at)


def _next_notify_at(alert: Alert, *, config: RoutingConfig, now: datetime) -> datetime | None:
    """When the alert next escalates or repeats, if it stays open."""
    if alert.status is not AlertState.OPEN or alert.escalation_level == 0:
        return None
    level, times = alert.escalation_level, []
    for route in matching_routes(alert, config=config, now=None):
        if len(route.escalation) > level:
            times.append(_anchor(alert, route) + timedelta(seconds=route.escalation[level].after_s))
        elif route.repeat_interval_s is not None:
            times.append(now + timedelta(seconds=route.repeat_interval_s))
    return min(times, default=None)


def late_note(alert: Alert, *, now: datetime) -> str:
    """`` (late: detected 26 h ago)`` for a late alert (its latest anomaly's age), else ``""``."""
    if not alert.late:
        return ""
    age_s = max(0.0, (now - alert.last_anomaly_at).total_seconds())
    age = f"{int(age_s // 3600)} h" if age_s >= 3600 else f"{int(age_s // 60)} min"
    return f" (late: detected {age} ago)"


def _message(alert: Alert, reason: str, level: int, *, now: datetime) -> tuple[str, str]:
    suffix = {
        "opened": "",
        "severity_raised": " (severity raised)",
        "escalation": f" (escalated: step {level}, unacknowledged)",
        "repeat": " (still unacknowledged)",
    }.get(reason, f" ({reason})") + late_note(alert, now=now)
    title = f"[{alert.severity.value}] patient {alert.patient_id} {alert.problem}{suffix}"
    opened = alert.opened_at.strftime("%Y-%m-%d %H:%M:%SZ")
    body = "\n".join(
        [
            alert.summary,
            f"{alert.anomaly_count} anomalies since {opened} · status {alert.status.value}",
            f"alert_id: {alert.alert_id}",
            *([f"latest anomaly_id: {alert.anomaly_ids[-1]}"] if alert.anomaly_ids else []),
        ]
    )
    return title, body


def brief(
    severity: Severity, alert_id: str, *, config: RoutingConfig, note: str = ""
) -> tuple[str, str]:
    """Title and body for a channel not cleared for patient data (``cleared_channels``):
    the severity, ``note`` (why now: escalated, repeated, a fallback) and a link to the
    alert, where only a care-team member who signs in sees who and what it is about."""
    title = f"[{severity.value}] pghd alert{note}"
    body = f"A {severity.value} alert needs a care-team member: {config.link_to(alert_id)}"
    return title, body


def _send(
    alert: Alert,
    steps: Sequence[tuple[Route, int]],
    *,
    reason: str,
    level: int,
    config: RoutingConfig,
    now: datetime,
    patient_alerts: Sequence[Alert],
) -> tuple[Alert, list[Notify]]:
    """Notify each route's step (0-based index) or, over budget, record the digest entry."""
    attempt = max((r.attempt for r in alert.notifications), default=0) + 1
    if _over_budget(alert, config=config, now=now, patient_alerts=patient_alerts):
        record = NotificationRecord(
            channel="digest",
            route="budget",
            attempt=attempt,
            at=now,
            outcome=NotificationOutcome.DIGEST,
            detail=f"over the patient's budget; {reason}",
        )
        history = [*alert.notifications, record][-MAX_NOTIFICATIONS:]
        return alert.model_copy(update={"notifications": history, "next_notify_at": None}), []
    title, body = _message(alert, reason, level, now=now)
    note = {"escalation": f" (escalated: step {level})", "repeat": " (still unacknowledged)"}
    brief_title, brief_body = brief(
        alert.severity,
        alert.alert_id,
        config=config,
        note=note.get(reason, "") + late_note(alert, now=now),
    )
    cleared = frozenset(config.cleared_channels)
    actions, records = [], []
    for route, index in steps:
        names = tuple(route.escalation[index].channels)
        actions.append(
            Notify(
                route=route.name,
                channels=names,
                channel_urls=tuple(config.channels[n] for n in names),
                reason=reason,
                alert_id=alert.alert_id,
                fingerprint=alert.fingerprint,
                patient_id=alert.patient_id,
                severity=alert.severity,
                level=level,
                attempt=attempt,
                title=title,
                body=body,
                brief_title=brief_title,
                brief_body=brief_body,
                cleared=cleared,
            )
        )
        records += [
            NotificationRecord(
                channel=n, route=route.name, attempt=attempt, at=now, outcome=_QUEUED
            )
            for n in names
        ]
    history = [*alert.notifications, *records][-MAX_NOTIFICATIONS:]
    updated = alert.model_copy(update={"notifications": history, "escalation_level": level})
    nxt = _next_notify_at(updated, config=config, now=now)
    return updated.model_copy(update={"next_notify_at": nxt}), actions


def plan_notifications(
    alert: Alert,
    *,
    config: RoutingConfig,
    now: datetime,
    reason: Literal["opened", "severity_raised"] = "opened",
    patient_alerts: Sequence[Alert] = (),
) -> tuple[Alert, list[Notify]]:
    """Route a :class:`~alerts.lifecycle.Page`: one :class:`Notify` per matching route.

    ``opened`` sends step 1 of an open alert; ``severity_raised`` re-sends the current step
    (acknowledged alerts too: the team should know it got worse). ``patient_alerts`` are the
    patient's other alerts, for the budget.
    """
    if not alert.active or (reason == "opened" and alert.status is not AlertState.OPEN):
        return alert, []
    level = max(1, alert.escalation_level)
    steps = [
        (route, min(level, len(route.escalation)) - 1)
        for route in matching_routes(alert, config=config, now=now)
    ]
    if not steps:  # out of hours for every route now: look again later if one may open
        waiting = alert.status is AlertState.OPEN and alert.escalation_level == 0
        if waiting and matching_routes(alert, config=config, now=None):
            return alert.model_copy(update={"next_notify_at": now + RECHECK}), []
        return alert, []
    return _send(
        alert,
        steps,
        reason=reason,
        level=level,
        config=config,
        now=now,
        patient_alerts=patient_alerts,
    )


def due_escalations(
    alert: Alert,
    *,
    config: RoutingConfig,
    now: datetime,
    patient_alerts: Sequence[Alert] = (),
) -> tuple[Alert, list[Notify | Escalate]]:
    """Escalate or repeat an open alert whose ``next_notify_at`` has come; else no change."""
    if alert.status is not AlertState.OPEN:
        return (
            alert.model_copy(update={"next_notify_at": None}) if alert.next_notify_at else alert
        ), []
    if alert.next_notify_at is None or now < alert.next_notify_at:
        return alert, []
    level, routes = alert.escalation_level, matching_routes(alert, config=config, now=now)
    escalating = [
        (route, level)
        for route in routes
        if len(route.escalation) > level
        and now >= _anchor(alert, route) + timedelta(seconds=route.escalation[level].after_s)
    ]
    if escalating:
        updated, notifies = _send(
            alert,
            escalating,
            reason="escalation" if level else "opened",  # level 0: first route window opened
            level=level + 1,
            config=config,
            now=now,
            patient_alerts=patient_alerts,
        )
        escalate = [Escalate(alert_id=alert.alert_id, level=level + 1)] if level else []
        return updated, [*escalate, *notifies]
    last = max((r.at for r in alert.notifications if r.outcome is _QUEUED), default=alert.opened_at)
    repeating = [
        (route, min(level, len(route.escalation)) - 1)
        for route in routes
        if len(route.escalation) <= level
        and route.repeat_interval_s is not None
        and now >= last + timedelta(seconds=route.repeat_interval_s)
    ]
    if not repeating:
        return alert.model_copy(update={"next_notify_at": now + RECHECK}), []
    updated, notifies = _send(
        alert,
        repeating,
        reason="repeat",
        level=level,
        config=config,
        now=now,
        patient_alerts=patient_alerts,
    )
    return updated, list(notifies)
