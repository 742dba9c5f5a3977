"""Feedback events from a patient's alert transitions: a finding opened, a finding resolved.

:func:`finding_events` compares the alerts of a transition (:mod:`alerts.state`) with the
patient's alerts before it, so each event comes from the transition itself, once:

- ``finding_opened``: an alert that is new (no alert of its fingerprint before, or another
  one), opened by the anomaly of this transition; worded with that anomaly's value against
  the patient's usual range and the time its reading was taken. It says the care team has
  been told only when the transition planned a notification to them; a finding that pages
  no one (silenced or inhibited, no routing, late and not paged) reads the ``untold``
  template ("your care team can see this in your record");
- ``finding_resolved``: an alert of the same id now resolved *by the system* because the
  patient's readings say so (the episode resolved or was withdrawn, or no anomaly came for
  the quiet period). The message says "back within your usual range", which a care-team
  member's resolve does not establish (they may resolve after calling the patient), and an
  alert resolved because a new one superseded it is followed by that one's
  ``finding_opened``: neither makes a ``finding_resolved``.

A re-applied transition (a batch read again after a crash, an anomaly already grouped)
changes nothing in the state and so makes no event; where the same transition is made twice
(a crash before the state was written), its event has the same id
(:func:`~pghd.feedback.events.event_id` of the alert id and the kind), which the sender
drops. Events are made for every patient; whether one is sent (a subscription, consent to the
kind, the rate limit) is the sender's decision (:mod:`alerts.feedback.outbox`).

Pure: alerts and the anomaly in, events out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alerts.lifecycle import SYSTEM_ACTOR
from pghd.alerting import Alert, AlertState
from pghd.contracts import Anomaly
from pghd.feedback.events import FeedbackEvent, FindingDetails, at_words, event_id
from pghd.feedback.wording import Kind, finding_change, metric_name, render

__all__ = ["SUPERSEDED", "finding_events", "opened_event", "resolved_event"]

SUPERSEDED = "superseded"
"""How the lifecycle's reason for an alert replaced by a new one begins."""


def opened_event(alert: Alert, anomaly: Anomaly, *, paged: bool) -> FeedbackEvent:
    """``finding_opened`` of ``alert``, opened by ``anomaly``; ``paged``: whether the
    transition planned a notification to the care team (if not, the message does not say
    they were told)."""
    baseline = anomaly.baseline
    usual = None if baseline is None else (baseline.low, baseline.high)
    metric = anomaly.metric.value
    fields = {
        "metric": metric_name(metric),
        "change": finding_change(metric, anomaly.value, usual),
        "since": f"since {at_words(anomaly.observed_at)}",
    }
    return FeedbackEvent(
        id=event_id(alert.alert_id, Kind.FINDING_OPENED.value),
        kind=Kind.FINDING_OPENED,
        patient_id=alert.patient_id,
        occurred_at=alert.opened_at,
        severity=alert.severity,
        message=render(Kind.FINDING_OPENED, alert.severity, fields, told=paged),
        details=FindingDetails(
            finding_id=alert.alert_id,
            metric=metric,
            opened_at=alert.opened_at,
            observed_at=anomaly.observed_at,
            value=anomaly.value,
            unit=anomaly.unit,
            usual_low=None if usual is None else usual[0],
            usual_high=None if usual is None else usual[1],
        ),
    )


def resolved_event(alert: Alert) -> FeedbackEvent:
    """``finding_resolved`` of the resolved ``alert``."""
    assert alert.resolved_at is not None
    return FeedbackEvent(
        id=event_id(alert.alert_id, Kind.FINDING_RESOLVED.value),
        kind=Kind.FINDING_RESOLVED,
        patient_id=alert.patient_id,
        occurred_at=alert.resolved_at,
        severity=alert.severity,
        message=render(
            Kind.FINDING_RESOLVED, alert.severity, {"metric": metric_name(alert.problem)}
        ),
        details=FindingDetails(
            finding_id=alert.alert_id,
            metric=alert.problem,
            opened_at=alert.opened_at,
            resolved_at=alert.resolved_at,
        ),
    )


def _resolved_by_the_readings(alert: Alert) -> bool:
    return (
        alert.status is AlertState.RESOLVED
        and alert.resolved_by == SYSTEM_ACTOR
        and not (alert.resolved_reason or "").startswith(SUPERSEDED)
    )


def finding_events(
    before: Mapping[str, Alert],
    changed: Sequence[Alert],
    *,
    anomaly: Anomaly | None = None,
    paged: bool,
) -> list[FeedbackEvent]:
    """The events of one transition: ``changed`` alerts against the patient's alerts
    ``before`` it (by fingerprint); ``anomaly``, the one the transition applied, if any;
    ``paged``, whether it planned any notification to the care team."""
    events: list[FeedbackEvent] = []
    for alert in changed:
        previous = before.get(alert.fingerprint)
        same = previous is not None and previous.alert_id == alert.alert_id
        if not same and alert.status is AlertState.OPEN:
            if anomaly is not None and anomaly.anomaly_id in alert.anomaly_ids:
                events.append(opened_event(alert, anomaly, paged=paged))
        elif (
            same
            and previous is not None
            and previous.status is not AlertState.RESOLVED
            and _resolved_by_the_readings(alert)
        ):
            events.append(resolved_event(alert))
    return events
