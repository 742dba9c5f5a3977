"""The alerts worker's feedback to patients' apps: its topics, table, agents and timer.

Off the care team's path, by construction:

1. *Events are made where the facts are.* The alerts agent's transitions make
   ``finding_opened`` / ``finding_resolved`` (:mod:`alerts.feedback.findings`) and write them,
   with the batch's states and alerts, to this app's events topic
   ``<app id>-feedback-events`` (keyed by patient id, as many partitions as the anomalies, so
   a patient's events land on the partition number of their anomalies). An agent on
   ``pghd.dlq.v1`` makes ``reading_refused`` (:mod:`alerts.feedback.refusals`) and writes it
   there too. While the subscriptions are known (:class:`~alerts.feedback.book.SubscriptionBook`
   ready), only events a subscription consents to are written. An agent on
   ``pghd.points.v1`` notes when each source's readings last arrived for the patients who
   consented to ``device_silent`` (:mod:`alerts.feedback.silence`; every other patient's
   records are skipped by their key, unread); the timer tells a silence of a day. The same
   agent counts the readings of the patients who consented to ``weekly_summary``, and the
   findings of theirs that reach the events topic are noted per week (a finding event is
   written for such a patient even without consent to its own kind: it is noted, not sent);
   the timer makes each week's summary once it is over (:mod:`alerts.feedback.weekly`).
2. *One agent sends, per patient, from the events topic*: :func:`~alerts.feedback.outbox.admit`
   against the patient's :class:`~alerts.feedback.outbox.FeedbackState` (the ``feedback``
   table: bucket, outbox, ids settled), then each admitted event in its own task
   (:class:`~alerts.feedback.sender.Sender`, after the outbox entry is flushed to Kafka), so
   a slow or dead app holds up nothing but its own events, never the alerts agent or another
   patient's. Retries come from the timer (every ``feedback_tick_s``).
3. *Every worker follows every subscription* (``pghd.feedback-subscriptions.v1``, all
   partitions, no group) into memory; the agents wait until it has been read to its end.

With several workers the Kafka group gives each partition, hence each patient, to one worker:
the events topic and the ``feedback`` table are co-partitioned with the anomalies, so the
worker that opens a patient's alerts also sends their feedback and holds their bucket. After a
crash, an outbox entry whose POST was under way is sent again with the same event id (apps
drop repeats by it); an event made twice (a transition or a dead letter read again) has the
same id and is sent once.

A deleted subscription (``DELETE /v1/me/feedback``) has the timer tombstone the patient's
feedback state (outbox, arrivals, weekly tallies) on the worker that owns it. An erasure
(:meth:`Feedback.erase`, from the alerts worker's) tombstones the patient's subscription and
their feedback state; their events still on the events topic find no
subscription and are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import orjson
from faust.types import EventT
from pydantic import ValidationError

from alerts.feedback.book import SubscriptionBook
from alerts.feedback.outbox import (
    Admission,
    FeedbackPolicy,
    FeedbackState,
    admit,
    due,
    expired,
    settle,
    withdrawn,
)
from alerts.feedback.refusals import refusal_event
from alerts.feedback.sender import Attempt, Sender
from alerts.feedback.silence import seen, silent, sources_of
from alerts.feedback.weekly import counted, noted, readings_of, summary
from alerts.metrics import AlertsMetrics
from pghd import topics, wire
from pghd.erasure import is_marker
from pghd.feedback.events import FeedbackEvent
from pghd.feedback.wording import FINDING_KINDS, Kind
from pghd.kafka_send import Outgoing, send_all
from pghd.pseudonym import pseudonym
from pghd.service.follower import CompactedFollower
from pghd.table_partition import in_partition
from pghd.topics import TopicSpec

__all__ = ["EVENTS_RETENTION_MS", "Feedback", "FeedbackSettings", "events_topic", "topic_specs"]

logger = logging.getLogger(__name__)

EVENTS_RETENTION_MS = 7 * 24 * 3600 * 1000
"""The events topic keeps a week: a worker down longer than that loses older feedback (not
news by then anyway: events older than ``feedback_max_age_s`` are not sent)."""


class FeedbackSettings(Protocol):
    """The fields of the alerts settings feedback reads."""

    @property
    def app_id(self) -> str: ...
    @property
    def kafka_bootstrap(self) -> str: ...
    @property
    def topic_partitions(self) -> int: ...
    @property
    def feedback_timeout_s(self) -> float: ...
    @property
    def feedback_tick_s(self) -> float: ...
    @property
    def feedback_allow_loopback_http(self) -> bool: ...
    @property
    def feedback_silent_after_s(self) -> float: ...
    @property
    def feedback_seen_granularity_s(self) -> float: ...
    @property
    def feedback_week_anchor(self) -> datetime: ...
    @property
    def feedback_week_s(self) -> float: ...

    def feedback_policy(self) -> FeedbackPolicy: ...


def events_topic(app_id: str) -> str:
    """The events topic of the alerts app ``app_id`` (under its prefix, like its changelogs)."""
    return f"{app_id}-feedback-events"


def topic_specs(settings: FeedbackSettings) -> list[TopicSpec]:
    """The topics feedback needs besides the platform's: the events topic."""
    return [
        TopicSpec(
            name=events_topic(settings.app_id),
            partitions=settings.topic_partitions,
            config={"retention.ms": str(EVENTS_RETENTION_MS)},
        )
    ]


class Feedback:
    """Feedback of one alerts worker, registered on ``app``."""

    def __init__(
        self,
        app: faust.App,
        settings: FeedbackSettings,
        metrics: AlertsMetrics,
        *,
        erasing: set[str],
        sender: Sender | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.erasing = erasing
        self.policy = settings.feedback_policy()
        self.book = SubscriptionBook()
        self.topic_name = events_topic(settings.app_id)
        self.events = app.topic(self.topic_name, key_type=bytes, value_type=bytes)
        self.dead_letters = app.topic(topics.DLQ, key_type=bytes, value_type=bytes)
        self.points = app.topic(topics.POINTS, key_type=bytes, value_type=bytes)
        self.table = app.Table(
            "feedback",
            partitions=settings.topic_partitions,
            key_type=str,
            help="patient_id -> FeedbackState (rate-limit bucket, outbox, ids settled)",
        )
        self.sender = sender or Sender(
            timeout_s=settings.feedback_timeout_s,
            allow_loopback=settings.feedback_allow_loopback_http,
        )
        self.in_flight: set[str] = set()
        """event ids whose POST is under way in this process"""
        self._tasks: set[asyncio.Task[Any]] = set()
        app.agent(self.events, name="alerts.feedback.deliver")(self._deliver)
        app.agent(self.dead_letters, name="alerts.feedback.refusals")(self._refusals)
        app.agent(self.points, name="alerts.feedback.arrivals")(self._arrivals)
        app.timer(interval=settings.feedback_tick_s, name="alerts.feedback.tick")(self.tick)
        app.task(self._follow)

    # -- what is written to the events topic --------------------------------------------

    def wanted(self, event: FeedbackEvent) -> bool:
        """Whether ``event`` is worth writing: a subscription consents to it, or the
        subscriptions are not known yet (the sender decides then)."""
        if not self.book.ready:
            return True
        found = self.book.get(event.patient_id)
        if found is None:
            return False
        if event.kind in FINDING_KINDS and found.consents(Kind.WEEKLY_SUMMARY, event.occurred_at):
            return True  # noted for the week's summary
        return found.consents(event.kind, event.occurred_at)

    def records(self, events: Iterable[FeedbackEvent]) -> list[Outgoing]:
        """The events topic's records of the ``events`` worth writing."""
        return [
            (self.topic_name, e.patient_id.encode("utf-8"), wire.encode(e), None)
            for e in events
            if self.wanted(e)
        ]

    def publish_soon(self, events: Iterable[FeedbackEvent]) -> None:
        """Buffer the records of ``events`` (a timer's transitions), as the alerts are."""
        for _, key, value, _ in self.records(events):
            self.events.send_soon(key=key, value=value)

    # -- the subscriptions --------------------------------------------------------------

    async def _follow(self) -> None:
        follower = CompactedFollower(
            bootstrap=self.settings.kafka_bootstrap,
            topics=[topics.FEEDBACK_SUBSCRIPTIONS],
            model=self.book,
            apply=lambda tp, record: self.book.apply_record(record.key, record.value),
            client_id=f"{self.settings.app_id}-feedback",
            on_ready=lambda: logger.info("feedback subscriptions read: %d", len(self.book)),
        )
        await follower.start()
        try:
            await asyncio.Event().wait()  # until the worker stops (the task is cancelled)
        finally:
            await follower.stop()
            await self.sender.close()

    async def _until_ready(self) -> None:
        while not self.book.ready:
            await asyncio.sleep(0.1)

    # -- the table ----------------------------------------------------------------------

    def load(self, patient_id: str) -> FeedbackState | None:
        """``patient_id``'s feedback state (None if none, or unreadable)."""
        raw = self.table.get(patient_id)
        if raw is None:
            return None
        try:
            return FeedbackState.model_validate(raw)
        except ValidationError:
            logger.error(
                "feedback state of %s is unreadable; starting afresh", pseudonym(patient_id)
            )
            return None

    def _store(self, state: FeedbackState) -> None:
        value = state.model_dump(mode="json")
        with in_partition(state.partition):
            self.table.data[state.patient_id] = value
        self.table.send_changelog(state.partition, state.patient_id, value)

    def _owned(self) -> set[int]:
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topic_name
        }

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the agents ---------------------------------------------------------------------

    async def _refusals(self, stream: faust.StreamT[Any]) -> None:
        """Ingest's dead letters: a consenting patient's refused reading to the events topic."""
        await self._until_ready()
        async for event in stream.events():
            message = event.message
            found = refusal_event(event.value, partition=message.partition, offset=message.offset)
            if found is None:
                continue
            outgoing = self.records([found])
            if outgoing:
                await send_all(self.app.producer, outgoing)

    async def _arrivals(self, stream: faust.StreamT[Any]) -> None:
        """The judged readings: when each source's last arrived, for ``device_silent``."""
        await self._until_ready()
        async for event in stream.events():
            self.on_points(event)

    def on_points(self, event: EventT[Any]) -> None:
        """One ``pghd.points.v1`` record: its sources seen at its Kafka time, if its patient
        consented to ``device_silent``; its readings counted in the week, if they consented
        to ``weekly_summary`` (anyone else's is not even read)."""
        message = event.message
        key = message.key if isinstance(message.key, bytes) else b""
        patient_id = key.decode("utf-8", "replace")
        found = self.book.get(patient_id)
        if found is None or patient_id in self.erasing:
            return
        silence, weekly = Kind.DEVICE_SILENT in found.kinds, Kind.WEEKLY_SUMMARY in found.kinds
        if not (silence or weekly) or is_marker(event.value):
            return
        sources = sources_of(event.value) if silence else set()
        readings = readings_of(event.value) if weekly else 0
        if not sources and not readings:
            return
        state = self.load(patient_id) or FeedbackState(
            patient_id=patient_id, partition=message.partition
        )
        stamp = message.timestamp  # when the processors wrote it: when the readings arrived
        at = datetime.fromtimestamp(stamp, UTC) if stamp else datetime.now(UTC)
        moved = seen(state, sources, at=at, granularity_s=self.settings.feedback_seen_granularity_s)
        moved = counted(
            moved,
            readings,
            at=at,
            anchor=self.settings.feedback_week_anchor,
            period_s=self.settings.feedback_week_s,
        )
        if moved != state:
            self._store(moved)

    async def _deliver(self, stream: faust.StreamT[Any]) -> None:
        """The events topic: admit each event, and attempt what was admitted."""
        await self._until_ready()
        async for event in stream.events():
            self.on_event(event, now=datetime.now(UTC))

    def on_event(self, event: EventT[Any], *, now: datetime) -> Admission | None:
        """Admit one record of the events topic (see :func:`alerts.feedback.outbox.admit`);
        a queued event's attempt starts in its own task."""
        try:
            found = wire.decode(FeedbackEvent, event.value)
        except (ValidationError, ValueError):
            logger.warning(
                "unreadable feedback event at %s[%s]@%s: skipped",
                self.topic_name,
                event.message.partition,
                event.message.offset,
            )
            return None
        patient_id = found.patient_id
        if patient_id in self.erasing:
            return None
        subscription = self.book.get(patient_id)
        state = self.load(patient_id)
        if state is None:
            if subscription is None:  # no state is kept for patients without one
                self.metrics.feedback(found.kind.value, "unconsented")
                return "unconsented"
            state = FeedbackState(patient_id=patient_id, partition=event.message.partition)
        before = state
        if subscription is not None and subscription.consents(
            Kind.WEEKLY_SUMMARY, found.occurred_at
        ):
            state = noted(
                state,
                found,
                anchor=self.settings.feedback_week_anchor,
                period_s=self.settings.feedback_week_s,
            )
        new, decision = admit(state, found, subscription, now=now, policy=self.policy)
        self.metrics.feedback(found.kind.value, decision)
        if new != before:
            self._store(new)
        if decision == "queued":
            self._spawn(self.attempt(patient_id, found.id))
        elif decision != "duplicate":
            logger.info(
                "feedback %s (%s) of %s not sent: %s",
                found.id,
                found.kind.value,
                pseudonym(patient_id),
                decision,
            )
        return decision

    # -- delivery -----------------------------------------------------------------------

    async def attempt(self, patient_id: str, event_id: str) -> None:
        """Send one pending event once its outbox entry is in Kafka, and settle it."""
        if event_id in self.in_flight:
            return
        self.in_flight.add(event_id)
        try:
            await self.app.producer.flush()  # the outbox entry reaches Kafka before the POST
            state = self._mine(patient_id)
            if state is None or event_id not in state.pending:
                return
            subscription = self.book.get(patient_id)
            state = self._withdraw(state)
            entry = state.pending.get(event_id)
            if entry is None or subscription is None:
                return
            event = entry.event

            def still() -> bool:  # asked right before the POST: after the wait and the lookup
                current = self.book.get(patient_id)
                return (
                    patient_id not in self.erasing
                    and current is not None
                    and (current.url, current.key) == (subscription.url, subscription.key)
                    and current.consents(event.kind, event.occurred_at)
                )

            try:
                tried = await self.sender.send(
                    subscription.url, subscription.key, event, still=still
                )
            except Exception as exc:
                tried = Attempt(ok=False, detail=f"not sent: {type(exc).__name__}")
            now = datetime.now(UTC)
            latest = self._mine(patient_id)
            if latest is None:  # erased, or its partition moved: the new owner sends it again
                return
            latest = self._withdraw(latest)  # withdrawn meanwhile: dropped, not settled
            settled, outcome = settle(latest, event_id, ok=tried.ok, now=now, policy=self.policy)
            if outcome is None:
                return
            self.metrics.feedback(entry.event.kind.value, outcome)
            after_s = (now - entry.event.occurred_at).total_seconds()
            log = logger.info if tried.ok else logger.warning
            if outcome == "failed":
                log = logger.error
            log(
                "feedback %s (%s) of %s: %s, attempt %d, %.2f s after it happened (%s)",
                event_id,
                entry.event.kind.value,
                pseudonym(patient_id),
                outcome.upper() if outcome == "failed" else outcome,
                entry.attempts + 1,
                after_s,
                tried.detail,
            )
            self._store(settled)
        finally:
            self.in_flight.discard(event_id)

    def _mine(self, patient_id: str) -> FeedbackState | None:
        """``patient_id``'s state if this worker may write it: not being erased, and of a
        partition it owns (after a rebalance the new owner sends what is pending, with the
        same ids, and writes the outcome; a write from here could undo its changes)."""
        if patient_id in self.erasing:
            return None
        state = self.load(patient_id)
        return state if state is not None and state.partition in self._owned() else None

    def _withdraw(self, state: FeedbackState) -> FeedbackState:
        """The state without what its subscription no longer consents to (stored, counted)."""
        kept, dropped = withdrawn(state, self.book.get(state.patient_id))
        for entry in dropped:
            self.metrics.feedback(entry.event.kind.value, "withdrawn")
        if dropped:
            self._store(kept)
        return kept

    def _expire(self, state: FeedbackState, *, now: datetime) -> FeedbackState:
        """The state without the pending events too old to be news (stored, counted stale):
        whatever became of their attempts, nothing is retried past ``max_age_s``."""
        kept, dropped = expired(state, now=now, policy=self.policy)
        for entry in dropped:
            self.metrics.feedback(entry.event.kind.value, "stale")
            logger.warning(
                "feedback %s (%s) of %s given up: older than %.0f s",
                entry.event.id,
                entry.event.kind.value,
                pseudonym(state.patient_id),
                self.policy.max_age_s,
            )
        if dropped:
            self._store(kept)
        return kept

    def _silences(self, state: FeedbackState, *, now: datetime) -> FeedbackState:
        """Admit the silences of ``state``'s sources (a day without readings); the state."""
        after = self.settings.feedback_silent_after_s
        told, events = silent(state, now=now, after_s=after)
        subscription = self.book.get(state.patient_id)
        for event in events:
            told, decision = admit(told, event, subscription, now=now, policy=self.policy)
            self.metrics.feedback(event.kind.value, decision)
            if decision == "queued":
                self._spawn(self.attempt(state.patient_id, event.id))
        if told != state:
            self._store(told)
        return told

    def _weekly(self, state: FeedbackState, *, now: datetime) -> FeedbackState:
        """Admit the summary of the week just over, once; the state."""
        subscription = self.book.get(state.patient_id)
        consented = None if subscription is None else subscription.kinds.get(Kind.WEEKLY_SUMMARY)
        done, event = summary(
            state,
            now=now,
            consented_at=consented,
            anchor=self.settings.feedback_week_anchor,
            period_s=self.settings.feedback_week_s,
        )
        if event is not None:
            done, decision = admit(done, event, subscription, now=now, policy=self.policy)
            self.metrics.feedback(event.kind.value, decision)
            if decision == "queued":
                self._spawn(self.attempt(state.patient_id, event.id))
            else:
                logger.info(
                    "weekly summary of %s not sent: %s", pseudonym(state.patient_id), decision
                )
        if done != state:
            self._store(done)
        return done

    async def tick(self) -> None:
        """Silences to tell, retries that are due, and entries a restart left unsent, on this
        worker's partitions; the ``feedback_pending`` gauge."""
        if self.app.rebalancing or self.app.in_recovery or not self.book.ready:
            return
        owned, now = self._owned(), datetime.now(UTC)
        pending = 0
        tombstones: list[Outgoing] = []
        for patient_id in list(self.table.data.keys()):
            if patient_id in self.erasing:
                continue
            state = self.load(patient_id)
            if state is None or state.partition not in owned:
                continue
            if self.book.get(patient_id) is None:  # unsubscribed (DELETE): nothing is kept
                tombstones += self._unsubscribed(state)
                continue
            state = self._silences(self._expire(self._withdraw(state), now=now), now=now)
            state = self._weekly(state, now=now)
            pending += len(state.pending)
            for entry in due(state, now=now, busy=frozenset(self.in_flight)):
                self._spawn(self.attempt(patient_id, entry.event.id))
        self.metrics.feedback_pending.set(pending)
        if tombstones:
            await send_all(self.app.producer, tombstones)

    def _unsubscribed(self, state: FeedbackState) -> list[Outgoing]:
        """Forget the feedback state of a patient whose subscription was deleted (its
        pending events counted withdrawn; arrivals and weekly tallies dropped); the
        changelog's tombstone to send."""
        for entry in state.pending.values():
            self.metrics.feedback(entry.event.kind.value, "withdrawn")
        store: Any = self.table.data
        with in_partition(state.partition):
            store.pop(state.patient_id, None)
        logger.info("feedback state of %s forgotten: unsubscribed", pseudonym(state.patient_id))
        changelog = self.table.changelog_topic.get_topic_name()
        return [(changelog, orjson.dumps(state.patient_id), None, state.partition)]

    # -- erasure ------------------------------------------------------------------------

    def erase(
        self, patient_id: str, partitions: Iterable[int]
    ) -> tuple[list[Outgoing], dict[str, int]]:
        """Forget ``patient_id``'s subscription and feedback state here; the tombstones to
        send (subscription, the table's changelog in ``partitions``) and the counts."""
        state = self.load(patient_id)
        had = self.book.forget(patient_id)
        store: Any = self.table.data
        parts = sorted(set(partitions) | (set() if state is None else {state.partition}))
        for partition in parts:
            with in_partition(partition):
                store.pop(patient_id, None)
        changelog = self.table.changelog_topic.get_topic_name()
        outgoing: list[Outgoing] = [
            (topics.FEEDBACK_SUBSCRIPTIONS, patient_id.encode(), None, None)
        ]
        outgoing += [(changelog, orjson.dumps(patient_id), None, p) for p in parts]
        removed = {
            "feedback_subscriptions": int(had),
            "feedback_pending": 0 if state is None else len(state.pending),
        }
        return outgoing, removed
