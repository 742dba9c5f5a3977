"""Prometheus metrics of the alerts service, served at ``/metrics`` by Faust's web server.

Like the processors (``processors/metrics.py``; both use ``pghd.service_metrics`` for the
lag probe and the page), the worker serves its metrics as one more page of the Faust web
server it already runs (``PGHD_ALERTS_WEB_HOST:_WEB_PORT``, 6067), from its own registry.

- ``anomalies_consumed_total``: messages read from ``pghd.anomalies.v1`` (dead letters and
  anomalies too old to alert on included);
- ``alerts_opened_total{severity}`` / ``alerts_resolved_total{severity}``: alert lifecycle
  transitions, from the patient's stored state before and after (:func:`transitions`), so a
  replayed message that changes nothing counts nothing;
- ``notifications_total{channel,outcome}``: delivery attempts, ``success``, ``retry`` (failed,
  tried again) or ``failure`` (failed, given up);
- ``alerts_undelivered{state}`` (gauge, this worker's partitions, refreshed every tick):
  ``retrying``, notifications past their first attempt and not delivered yet (the outbox);
  ``given_up``, notifications given up (retry horizon passed, or outcome unknown after a
  crash on a channel not re-sent) of alerts still open, i.e. nobody acknowledged them;
- ``notifications_given_up_total{channel,reason}``: notifications given up, ``horizon`` or
  ``unknown_outcome``;
- ``grafana_annotations_total{outcome}``: annotation writes, ``written``, ``retry``,
  ``failed`` (every attempt failed) or ``dropped`` (queue full);
- ``dead_letters_total{reason}``: messages sent to ``pghd.dlq.v1``, by :func:`dead_letter_kind`;
- ``feedback_events_total{kind,outcome}``: feedback events to patients' apps
  (:mod:`alerts.feedback`), ``sent``, ``retry`` (an attempt failed, tried again), ``failed``
  (given up), ``rate_limited`` (dropped), ``stale``, ``unconsented``, ``duplicate``,
  ``withdrawn`` (unsubscribed before it was sent);
- ``feedback_pending`` (gauge, this worker's partitions): feedback events not settled yet;
- ``kafka_consumer_lag{group,topic,partition}``: as in the processors, for the alerts group
  on ``pghd.anomalies.v1`` and ``pghd.alert-commands.v1``, and on feedback's inputs (its
  events topic, ``pghd.dlq.v1``, ``pghd.points.v1``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
)

from pghd import topics as topic_names
from pghd.alerting import Alert, AlertState, NotificationOutcome
from pghd.contracts import DeadLetter
from pghd.service_metrics import LagProbe, reread_counter, serve_metrics

__all__ = [
    "AlertsMetrics",
    "LagProbe",
    "dead_letter_kind",
    "install_metrics",
    "notification_outcome",
    "transitions",
]

logger = logging.getLogger(__name__)


def dead_letter_kind(reason: str) -> str:
    """The ``reason`` label of an alerts dead letter (texts of :func:`alerts.state.decode`)."""
    if reason == "empty message":
        return "empty"
    if reason.startswith("message key must be"):
        return "key_mismatch"
    if reason.startswith("(message): Invalid JSON"):
        return "undecodable"
    return "invalid"


def notification_outcome(outcome: NotificationOutcome, *, final: bool) -> str:
    """``success``, ``retry`` (a failed attempt that is tried again) or ``failure``."""
    if outcome is NotificationOutcome.DELIVERED:
        return "success"
    return "failure" if final else "retry"


def transitions(
    previous: Mapping[str, Any] | None, changed: Sequence[Alert]
) -> list[tuple[str, Alert]]:
    """``("opened" | "resolved", alert)`` for each alert of ``changed`` that is new to the
    patient's ``previous`` stored state (a table value) or resolved since."""
    before = {
        str(a.get("alert_id")): str(a.get("status"))
        for a in ((previous or {}).get("alerts") or {}).values()
        if isinstance(a, Mapping)
    }
    found: list[tuple[str, Alert]] = []
    for alert in changed:
        status = before.get(alert.alert_id)
        if status is None:
            found.append(("opened", alert))
        resolved = alert.status is AlertState.RESOLVED
        if resolved and status != AlertState.RESOLVED.value:
            found.append(("resolved", alert))
    return found


class AlertsMetrics:
    """The counters and gauge of one alerts worker."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.anomalies_consumed = Counter(
            "anomalies_consumed", "Messages read from pghd.anomalies.v1", registry=self.registry
        )
        self.alerts_opened = Counter(
            "alerts_opened", "Alerts opened, by severity", ["severity"], registry=self.registry
        )
        self.alerts_resolved = Counter(
            "alerts_resolved", "Alerts resolved, by severity", ["severity"], registry=self.registry
        )
        self.notifications = Counter(
            "notifications",
            "Notification attempts, by channel and outcome (success, retry, failure)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.undelivered = Gauge(
            "alerts_undelivered",
            "Notifications not delivered: retrying (failed at least once) or given_up (of open"
            " alerts), on this worker's partitions",
            ["state"],
            registry=self.registry,
        )
        self.given_up = Counter(
            "notifications_given_up",
            "Notifications given up, by channel and reason (horizon, unknown_outcome)",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.grafana_annotations = Counter(
            "grafana_annotations",
            "Grafana annotation writes, by outcome (written, retry, failed, dropped)",
            ["outcome"],
            registry=self.registry,
        )
        self.partitions_reread = reread_counter(self.registry)
        self.dead_letters = Counter(
            "dead_letters",
            "Messages sent to pghd.dlq.v1, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.feedback_events = Counter(
            "feedback_events",
            "Feedback events to patients' apps, by kind and outcome (sent, retry, failed,"
            " rate_limited, stale, unconsented, duplicate, withdrawn)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.feedback_pending = Gauge(
            "feedback_pending",
            "Feedback events not settled yet, on this worker's partitions",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "kafka_consumer_lag",
            "Messages not yet committed by the consumer group (end offset - committed offset)",
            ["group", "topic", "partition"],
            registry=self.registry,
        )

    def consumed(self, topic: str | None) -> None:
        """One input message read from ``topic``."""
        if topic == topic_names.ANOMALIES:
            self.anomalies_consumed.inc()

    def dead_letter(self, letter: DeadLetter) -> None:
        """One message sent to the DLQ."""
        self.dead_letters.labels(reason=dead_letter_kind(letter.reason)).inc()

    def alert_changes(self, previous: Mapping[str, Any] | None, changed: Sequence[Alert]) -> None:
        """Count the openings and resolutions among ``changed`` (see :func:`transitions`)."""
        for kind, alert in transitions(previous, changed):
            counter = self.alerts_opened if kind == "opened" else self.alerts_resolved
            counter.labels(severity=alert.severity.value).inc()

    def notification(self, channel: str, outcome: NotificationOutcome, *, final: bool) -> None:
        """One delivery attempt to ``channel``."""
        label = notification_outcome(outcome, final=final)
        self.notifications.labels(channel=channel, outcome=label).inc()

    def gave_up(self, channel: str, reason: str) -> None:
        """A notification to ``channel`` was given up (``horizon`` or ``unknown_outcome``)."""
        self.given_up.labels(channel=channel, reason=reason).inc()

    def set_undelivered(self, counts: Mapping[str, int]) -> None:
        """The ``alerts_undelivered`` gauge from :func:`alerts.outbox.undelivered`."""
        for state, count in counts.items():
            self.undelivered.labels(state=state).set(count)

    def feedback(self, kind: str, outcome: str) -> None:
        """One feedback event's outcome (:mod:`alerts.feedback.worker`)."""
        self.feedback_events.labels(kind=kind, outcome=outcome).inc()

    def annotation(self, outcome: str) -> None:
        """One Grafana annotation outcome (the ``on_outcome`` of the annotation queue)."""
        self.grafana_annotations.labels(outcome=outcome).inc()


def install_metrics(
    app: Any, *, bootstrap: str, group: str, topics: Sequence[str], lag_interval_s: float
) -> AlertsMetrics:
    """New metrics for the Faust ``app``: ``GET /metrics`` on its web server, and a timer that
    refreshes the consumer lag of ``group`` on ``topics`` every ``lag_interval_s``."""
    metrics = AlertsMetrics()
    probe = LagProbe(bootstrap=bootstrap, group=group, topics=topics, gauge=metrics.consumer_lag)

    serve_metrics(app, metrics.registry, lag=probe, lag_interval_s=lag_interval_s)
    return metrics
