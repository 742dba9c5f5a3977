"""Alert lifecycle, pure: anomalies in, alerts and actions for the I/O layer out.

Nothing here reads a clock, Kafka or the network: ``now`` is always an argument, and what
must happen in the world comes back as plain action objects that the alerts agent executes:
:class:`Page` and :class:`Annotate` from here, :class:`Notify` and :class:`Escalate` from
:mod:`alerts.routing`. Per anomaly the agent runs ``apply_anomaly``, then, for each
``Page`` of an alert neither :func:`silenced` nor :func:`inhibited`,
``routing.plan_notifications(reason=page.reason)``; on a timer ``due_escalations`` and
``auto_resolve``; it stores each alert on ``pghd.alerts.v1`` under its fingerprint.

Grouping (Alertmanager's vocabulary): anomalies of one patient and one problem (the
metric, so both blood-pressure channels group together) whose detection times are at most
``group_interval_s`` apart make one alert. Detection time, not observation time, so a
backfilled day of readings makes one alert rather than dozens. A new alert asks to be
routed (``Page("opened")``); an attached anomaly does not, unless it raises the severity
(``Page("severity_raised")``). After a resolve, or a gap longer than the interval, the next
anomaly opens a new alert with a new id.

Episodes (:mod:`processors.episodes`): the processors emit an anomaly when an episode opens,
when its severity rises or as a slow reminder, and when it ends. The alert keys on them: it
lists the open episodes behind it, an anomaly of one of them attaches however long after the
last one it comes (a day-long fever is one alert, not one per group interval), and when the
last of them ends (phase ``resolved``, or ``withdrawn``: a provisional finding that late data
disproved) the alert resolves itself, with the reason, and pages no one. A patient's episode
spans problems (a fever moves temperature and heart rate): each problem's alert lists it, and
its resolution ends it in all of them (:func:`alerts.state.on_anomaly`), while a withdrawal
ends it only in the alert of the withdrawn finding's problem. An ending of an
episode no active alert holds changes nothing. Routing a :class:`Page` into :class:`Notify`
actions is :mod:`alerts.routing`'s work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pghd.alert_commands import Silence
from pghd.alerting import (
    Alert,
    AlertLabels,
    AlertState,
    GroupingPolicy,
    label_fingerprint,
    problem_of,
)
from pghd.contracts import Anomaly, Phase, Severity

__all__ = [
    "SYSTEM_ACTOR",
    "Action",
    "AlertStateError",
    "Annotate",
    "Escalate",
    "GroupingPolicy",
    "Notify",
    "Page",
    "Silence",
    "acknowledge",
    "apply_anomaly",
    "auto_resolve",
    "end_episode",
    "fingerprint",
    "group_key",
    "inhibited",
    "patient_tag",
    "problem_of",
    "resolve",
    "silenced",
]

SYSTEM_ACTOR = "pghd"
"""Who resolves an alert that went quiet or was superseded."""

PageReason = Literal["opened", "severity_raised"]
AnnotationKind = Literal["opened", "severity_raised", "acknowledged", "resolved"]


class AlertStateError(ValueError):
    """The transition is not allowed from the alert's state (e.g. acknowledging a resolved one)."""


@dataclass(frozen=True, slots=True)
class Page:
    """Route the alert to care teams now: :func:`alerts.routing.plan_notifications`."""

    reason: PageReason


@dataclass(frozen=True, slots=True)
class Notify:
    """Send one notification about an alert to the channels of one route."""

    route: str
    channels: tuple[str, ...]
    channel_urls: tuple[str, ...] = field(repr=False)
    reason: str
    alert_id: str
    fingerprint: str
    patient_id: str
    severity: Severity
    level: int
    attempt: int
    title: str
    body: str
    brief_title: str = ""  # for channels not cleared for patient data: severity and link
    brief_body: str = ""
    cleared: frozenset[str] = frozenset()  # the channels that get ``title`` and ``body``

    def text_for(self, channel: str) -> tuple[str, str]:
        """The title and body ``channel`` may be sent."""
        if channel in self.cleared or not self.brief_title:
            return self.title, self.body
        return self.brief_title, self.brief_body


@dataclass(frozen=True, slots=True)
class Escalate:
    """The alert went unacknowledged long enough to reach escalation step ``level``."""

    alert_id: str
    level: int


@dataclass(frozen=True, slots=True)
class Annotate:
    """Mark a Grafana dashboard: a point at ``time``, a region when ``time_end`` is set."""

    alert_id: str
    fingerprint: str
    patient_id: str
    kind: AnnotationKind
    text: str
    time: datetime
    time_end: datetime | None = None
    tags: tuple[str, ...] = ()


Action = Page | Notify | Escalate | Annotate


def fingerprint(labels: AlertLabels | Mapping[str, str]) -> str:
    """Stable hash of an alert's labels: the dedup key and the alerts topic's key."""
    return label_fingerprint(labels)


def group_key(anomaly: Anomaly) -> AlertLabels:
    """The labels of the alert an anomaly belongs to: its patient and its problem."""
    return AlertLabels(patient_id=anomaly.patient_id, problem=problem_of(anomaly.metric.value))


def _alert_id(fp: str, anomaly_id: str) -> str:
    """Deterministic, so a replayed anomaly topic rebuilds the same alert ids."""
    digest = hashlib.sha256(f"{fp}/{anomaly_id}".encode()).hexdigest()[:20]
    return f"al-{digest}"


def patient_tag(patient_id: str) -> str:
    """The tag naming the patient on each of their Grafana annotations: the patient id
    itself, so that an erasure finds every annotation of theirs by it (a pseudonym would be
    found only while its key lasts), in Grafana's search (``tags=patient:<id>``)."""
    return f"patient:{patient_id}"


def _tags(alert: Alert) -> tuple[str, ...]:
    return (
        "pghd",
        "alert",
        patient_tag(alert.patient_id),
        f"problem:{alert.problem}",
        f"severity:{alert.severity.value}",
    )


def _annotate(alert: Alert, kind: AnnotationKind, text: str, now: datetime) -> Annotate:
    resolved = kind == "resolved"
    return Annotate(
        alert_id=alert.alert_id,
        fingerprint=alert.fingerprint,
        patient_id=alert.patient_id,
        kind=kind,
        text=text,
        time=alert.opened_at if resolved else now,
        time_end=now if resolved else None,
        tags=(*_tags(alert), kind),
    )


def _open(anomaly: Anomaly, now: datetime) -> tuple[Alert, list[Action]]:
    labels = group_key(anomaly)
    fp = label_fingerprint(labels)
    alert = Alert(
        alert_id=_alert_id(fp, anomaly.anomaly_id),
        fingerprint=fp,
        labels=labels,
        severity=anomaly.severity,
        summary=anomaly.explanation[:1000],
        opened_at=now,
        updated_at=now,
        anomaly_ids=[anomaly.anomaly_id],
        episode_ids=[] if anomaly.episode_id is None else [anomaly.episode_id],
        anomaly_count=1,
        last_anomaly_at=anomaly.detected_at,
    )
    text = f"[{alert.severity.value}] {alert.problem}: {anomaly.explanation}"
    return alert, [Page("opened"), _annotate(alert, "opened", text, now)]


def _with_episode(episodes: list[str], anomaly: Anomaly, *, policy: GroupingPolicy) -> list[str]:
    if anomaly.episode_id is None or anomaly.episode_id in episodes:
        return episodes
    return [*episodes, anomaly.episode_id][-policy.max_anomaly_ids :]


def end_episode(
    alert: Alert | None, anomaly: Anomaly, *, now: datetime
) -> tuple[Alert | None, list[Action]]:
    """An episode ended: drop it from the alert, and resolve the alert if it was the last."""
    if alert is None or not alert.active or anomaly.episode_id not in alert.episode_ids:
        return alert, []
    remaining = [e for e in alert.episode_ids if e != anomaly.episode_id]
    updated = alert.model_copy(update={"episode_ids": remaining, "updated_at": now})
    if remaining:
        return updated, []
    how = "withdrawn" if anomaly.phase is Phase.WITHDRAWN else "episode resolved"
    return resolve(updated, by=SYSTEM_ACTOR, reason=f"{how}: {anomaly.explanation}", now=now)


def apply_anomaly(
    alert: Alert | None, anomaly: Anomaly, *, policy: GroupingPolicy, now: datetime
) -> tuple[Alert | None, list[Action]]:
    """Attach ``anomaly`` to ``alert`` (the current alert of its fingerprint) or open a new one.

    Returns the alert to store under the anomaly's fingerprint and what to do: a new alert
    pages; an attached anomaly pages again only when it raises the severity; an anomaly id
    the alert already lists (a replay) changes nothing. An active alert whose last anomaly
    is older than the group interval is resolved (its annotation is among the actions) and
    replaced by a new one.
    """
    if alert is not None and alert.fingerprint != fingerprint(group_key(anomaly)):
        raise ValueError("the anomaly does not belong to this alert (fingerprints differ)")
    if alert is not None and anomaly.anomaly_id in alert.anomaly_ids:
        return alert, []
    if anomaly.phase in (Phase.RESOLVED, Phase.WITHDRAWN):
        return end_episode(alert, anomaly, now=now)
    if alert is None or not alert.active:
        return _open(anomaly, now)
    gap = (anomaly.detected_at - alert.last_anomaly_at).total_seconds()
    if gap > policy.group_interval_s and anomaly.episode_id not in alert.episode_ids:
        _closed, actions = resolve(
            alert,
            by=SYSTEM_ACTOR,
            reason="superseded: no anomaly within the group interval",
            now=now,
        )
        new, opened = _open(anomaly, now)
        return new, [*actions, *opened]
    raised = anomaly.severity.rank > alert.severity.rank
    ids = [*alert.anomaly_ids, anomaly.anomaly_id][-policy.max_anomaly_ids :]
    updated = alert.model_copy(
        update={
            "episode_ids": _with_episode(alert.episode_ids, anomaly, policy=policy),
            "severity": anomaly.severity if raised else alert.severity,
            "summary": anomaly.explanation[:1000],
            "updated_at": now,
            "anomaly_ids": ids,
            "anomaly_count": alert.anomaly_count + 1,
            "last_anomaly_at": max(alert.last_anomaly_at, anomaly.detected_at),
        }
    )
    if not raised:
        return updated, []
    text = f"severity raised to {anomaly.severity.value}: {anomaly.explanation}"
    return updated, [Page("severity_raised"), _annotate(updated, "severity_raised", text, now)]


def _check_actor(by: str) -> None:
    if not 1 <= len(by) <= 128:
        raise ValueError("by must be 1 to 128 characters (a user or service id)")


def acknowledge(alert: Alert, *, by: str, now: datetime) -> tuple[Alert, list[Action]]:
    """A care team member takes the alert: no more escalation. Idempotent."""
    _check_actor(by)
    if alert.status is AlertState.ACKNOWLEDGED:
        return alert, []
    if alert.status is AlertState.RESOLVED:
        raise AlertStateError(f"alert {alert.alert_id} is resolved and cannot be acknowledged")
    updated = alert.model_copy(
        update={
            "status": AlertState.ACKNOWLEDGED,
            "acknowledged_at": now,
            "acknowledged_by": by,
            "updated_at": now,
            "next_notify_at": None,
        }
    )
    return updated, [_annotate(updated, "acknowledged", f"acknowledged by {by}", now)]


def resolve(alert: Alert, *, by: str, reason: str, now: datetime) -> tuple[Alert, list[Action]]:
    """Close the alert; the next anomaly of its fingerprint opens a new one. Idempotent."""
    _check_actor(by)
    if alert.status is AlertState.RESOLVED:
        return alert, []
    updated = alert.model_copy(
        update={
            "status": AlertState.RESOLVED,
            "resolved_at": now,
            "resolved_by": by,
            "resolved_reason": reason[:500],
            "updated_at": now,
            "next_notify_at": None,
        }
    )
    text = f"resolved by {by}: {reason}"
    return updated, [_annotate(updated, "resolved", text, now)]


def auto_resolve(
    alert: Alert, *, now: datetime, quiet_for: timedelta
) -> tuple[Alert, list[Action]]:
    """Resolve an active alert that has had no anomaly for ``quiet_for``; else no change."""
    if not alert.active or now - alert.last_anomaly_at < quiet_for:
        return alert, []
    minutes = round(quiet_for.total_seconds() / 60)
    return resolve(alert, by=SYSTEM_ACTOR, reason=f"no anomaly for {minutes} min", now=now)


def inhibited(alert: Alert, others: Iterable[Alert]) -> bool:
    """True when another active critical alert of the same patient mutes this lesser one."""
    if alert.severity is Severity.CRITICAL:
        return False
    return any(
        other.active
        and other.severity is Severity.CRITICAL
        and other.patient_id == alert.patient_id
        and other.fingerprint != alert.fingerprint
        for other in others
    )


def silenced(alert: Alert, silences: Sequence[Silence], *, now: datetime) -> bool:
    """True when a silence active at ``now`` matches the alert."""
    return any(s.active_at(now) and s.matches(alert) for s in silences)
