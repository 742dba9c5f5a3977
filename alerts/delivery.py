"""Delivering promised notifications: the outbox's I/O, and which channels may get a repeat.

A :class:`Courier` makes attempts and reports them to the pure outbox (:mod:`alerts.outbox`;
timing in :mod:`alerts.backoff`). The worker's timer asks it every tick for the due work of
each patient (:meth:`Courier.plan`), stores the result, flushes it to Kafka and only then
sends (:meth:`Courier.attempt`): the outbox entry says ``sending`` in the changelog before
any byte leaves. Each attempt is settled in the table: delivered, retried after a capped
exponential backoff with jitter for ``PGHD_ALERTS_NOTIFY_RETRY_HORIZON_S`` (6 h), or given
up, visibly: a final ``failed`` record in the alert's history, an ERROR log line, the
``notifications_given_up_total`` counter and the ``alerts_undelivered`` gauge.

After a crash (or a lost partition) the entries still ``sending`` are attempts whose outcome
nobody heard. :func:`resume_policy` decides, per channel kind, whether such a notification
is sent again, once per crash, with the same notification id:

- webhooks, ``json``, ``form``, ``xml`` (and ``jsons``, ``forms``, ``xmls``): the id is in
  the body (``notification_id``) and the ``X-Pghd-Notification-Id`` header, so a receiver
  that keys on it drops the repeat: **re-sent**, whatever the severity;
- e-mail, ``mailto``, ``mailtos``: the id is in the ``X-Pghd-Notification-Id`` header, but
  mail clients do not deduplicate on it: warning and critical **re-sent** (a possible
  duplicate), info given up;
- SMS, chat and push (``twilio``, ``sns``, ``slack``, ``msteams``, ``telegram``, ...): no
  field a receiver could deduplicate on: warning and critical **re-sent** (a possible
  duplicate), info given up.

E-mail could deduplicate on its ``Message-ID``, but Apprise (2.3) always adds its own
``Message-ID`` after any header given in the URL, so a message would carry two and servers
keep either; the notification id goes in ``X-Pghd-Notification-Id`` instead, which mail
rules can match.

Why a channel that cannot deduplicate still gets warning and critical pages again: the
alternative is that the page is lost whenever the worker dies between the send and the
answer, and nobody learns of the finding. A duplicate costs a nurse a glance ("already
seen"), a lost critical page can cost the patient; both copies carry the same alert id in
their body. Info notifications (nobody is paged for them) and daily digests
(:mod:`alerts.digest_sender`) are not worth a duplicate and are recorded as failed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from alerts import outbox
from alerts.backoff import RetryPolicy
from alerts.metrics import AlertsMetrics
from alerts.notify import can_deduplicate
from alerts.outbox import UNKNOWN_OUTCOME, Plan, Settled
from alerts.pending import PendingDelivery
from alerts.state import PatientState, Step
from pghd.alerting import NotificationOutcome, RoutingConfig
from pghd.contracts import Severity

__all__ = ["UNKNOWN_OUTCOME", "Courier", "resume_policy"]

logger = logging.getLogger(__name__)

PAGING = frozenset({Severity.WARNING, Severity.CRITICAL})

Send = Callable[[PendingDelivery], Awaitable[bool]]


def resume_policy(
    url: str | None, severity: Severity = Severity.INFO
) -> Literal["resend", "give_up"]:
    """What to do with a notification of unknown outcome to the channel at ``url``: re-send
    where the receiver can drop a repeat, or where a lost page is worse than a duplicate."""
    if url is None:
        return "give_up"
    return "resend" if can_deduplicate(url) or severity in PAGING else "give_up"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Courier:
    """Sends outbox attempts and settles them in the alerts table (the worker's glue)."""

    def __init__(
        self,
        *,
        send: Send,
        load: Callable[[str], PatientState | None],
        apply: Callable[[Step], None],
        owned: Callable[[], set[int]],
        policy: RetryPolicy,
        metrics: AlertsMetrics,
        config: RoutingConfig | None,
        clock: Callable[[], datetime] = _utcnow,
        erasing: Callable[[str], bool] = lambda patient_id: False,
    ) -> None:
        """``erasing``: whether a patient is being erased (an outcome then writes nothing)."""
        self._send, self._load, self._apply, self._owned = send, load, apply, owned
        self._erasing = erasing
        self.policy, self.metrics, self.config, self._clock = policy, metrics, config, clock
        self.in_flight: set[str] = set()
        """notification ids with an attempt under way in this process"""

    def _resend(self, delivery: PendingDelivery) -> bool:
        url = None if self.config is None else self.config.channels.get(delivery.channel)
        return resume_policy(url, delivery.severity) == "resend"

    def plan(self, state: PatientState, *, now: datetime) -> Plan:
        """The outbox work due for one patient (to be applied, flushed, then sent)."""
        planned = outbox.plan(
            state, now=now, config=self.config, busy=self.in_flight, resend=self._resend
        )
        for d in planned.resent:
            logger.warning(
                "notification %s alert %s channel %s: outcome unknown after a restart,"
                " re-sent with the same id",
                d.notification_id,
                d.alert_id,
                d.channel,
            )
        for d in planned.given_up:
            logger.error(
                "notification %s alert %s channel %s: outcome unknown after a restart, not"
                " re-sent (channel cannot deduplicate, %s): recorded as failed",
                d.notification_id,
                d.alert_id,
                d.channel,
                d.severity.value,
            )
            self.metrics.notification(d.channel, NotificationOutcome.FAILED, final=True)
            self.metrics.gave_up(d.channel, "unknown_outcome")
        for d in planned.cancelled:
            logger.info(
                "notification %s alert %s channel %s: not tried again, the alert was taken in hand",
                d.notification_id,
                d.alert_id,
                d.channel,
            )
        for d in planned.fallbacks:
            logger.warning(
                "notification %s alert %s: channel %s failing, fallback to channel %s",
                d.notification_id,
                d.alert_id,
                d.fallback_for,
                d.channel,
            )
        return planned

    async def attempt(self, delivery: PendingDelivery) -> None:
        """One attempt of a delivery whose start is already in Kafka; then settle it."""
        try:
            delivered = await self._send(delivery)
            self.settle(delivery, delivered=delivered)
        finally:
            self.in_flight.discard(delivery.notification_id)

    def settle(self, delivery: PendingDelivery, *, delivered: bool) -> Settled | None:
        """Write the attempt's outcome into the patient's state (None: partition moved)."""
        outcome = NotificationOutcome.DELIVERED if delivered else NotificationOutcome.FAILED
        if self._erasing(delivery.patient_id):  # the state must not come back
            self.metrics.notification(delivery.channel, outcome, final=True)
            logger.info(
                "notification %s alert %s channel %s: %s, not recorded (patient being erased)",
                delivery.notification_id,
                delivery.alert_id,
                delivery.channel,
                outcome.value,
            )
            return None
        state = self._load(delivery.patient_id)
        if state is None or state.partition not in self._owned():
            self.metrics.notification(delivery.channel, outcome, final=delivered)
            return None  # another worker owns the patient now (or it was erased)
        settled = outbox.settle(
            state, delivery, delivered=delivered, at=self._clock(), policy=self.policy
        )
        changed = [] if settled.alert is None else [settled.alert]
        self._apply(Step(state=settled.state, changed=changed, dirty=settled.state != state))
        self.metrics.notification(delivery.channel, outcome, final=settled.kind != "retry")
        self._log(settled)
        return settled

    def _log(self, settled: Settled) -> None:
        d = settled.delivery
        where = (d.notification_id, d.alert_id, d.channel, d.attempts)
        if settled.kind == "delivered":
            logger.info("notification %s alert %s channel %s: delivered (attempt %d)", *where)
        elif settled.kind == "retry":
            due = d.next_attempt_at or self._clock()
            seconds = (due - self._clock()).total_seconds()
            logger.warning(
                "notification %s alert %s channel %s: attempt %d failed, next try in %.0fs",
                *where,
                seconds,
            )
        elif settled.kind == "given_up":
            self.metrics.gave_up(d.channel, "horizon")
            logger.error(
                "notification %s alert %s channel %s: GIVEN UP after %d attempts over the"
                " %.0f s retry horizon; recorded as failed in the alert's history",
                *where,
                self.policy.horizon_s,
            )
        else:
            logger.info(
                "notification %s alert %s channel %s: attempt %d, no longer pending", *where
            )
