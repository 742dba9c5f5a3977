"""The alerts worker's work: anomalies and care-team commands in; alerts, pages, annotations out.

:class:`Alerts` owns what one worker needs (topics, the ``alert_state`` table, the courier of
notifications, the Grafana annotation queue, metrics) and registers on a Faust app
(:func:`alerts.app.build_app`):

One agent reads ``pghd.anomalies.v1`` and ``pghd.alert-commands.v1`` (both keyed by patient
id, co-partitioned) in order, a batch at a time (at most ``batch_size`` messages, waiting at
most ``batch_within_s`` for more: :meth:`Alerts.handle_batch`); the ``alert_state`` table
holds each patient's :class:`~alerts.state.PatientState`. Per batch:

1. an undecodable message (or one whose key is not its patient id) becomes a dead letter;
2. each message's pure transition (:func:`~alerts.state.on_anomaly` /
   :func:`~alerts.state.on_command`) steps its patient's state in memory (loaded and
   validated once per patient and batch), giving the changed alerts, the deliveries to
   make and the annotations; an anomaly detected longer ago than ``notify_max_age_s``
   makes its alert ``late``;
3. each changed patient's state (once per batch, to the table's changelog), each changed
   alert (to the compacted ``pghd.alerts.v1``, key = fingerprint) and the dead letters are
   sent together and awaited: the *intents* (outbox entries with deterministic
   notification ids, marked ``sending``) are durable before any send;
4. each first attempt runs in its own task (:meth:`alerts.delivery.Courier.attempt`:
   Apprise, the outcome written to the alert's notification history and published);
   annotations go to the Grafana queue when ``PGHD_ALERTS_GRAFANA_URL`` is set.

The transitions' feedback events for patients' apps (a finding opened or resolved) go to the
feedback events topic with the batch's states and alerts (step 3); another agent sends them
(:mod:`alerts.feedback.worker`), so no patient's app is ever on this agent's path.

An erasure marker (:mod:`pghd.erasure`) on either input (the processors forward it to both,
so that it comes after the patient's anomalies *and* after their commands) ends the batch
before it: :meth:`Alerts.erase` removes the patient's alerts, state and annotations, and
reports. While it waits (Kafka, Grafana) the patient is in ``erasing``: nothing writes their
state or annotates them again (a delivery settling, the timer, an annotation written).

A leader-only timer (every ``digest_check_s``) sends the daily digest of findings held back
by the per-patient budget, once per care team and day (:mod:`alerts.digest_sender`).

A timer (every ``tick_s``) runs :func:`~alerts.state.on_tick` (escalations, repeats,
auto-resolve) over the patients of this worker's partitions, then the outbox
(:meth:`alerts.delivery.Courier.plan`): retries that are due, fallbacks, and attempts left
unsettled by a restart or rebalance (re-sent per :func:`alerts.delivery.resume_policy`);
it refreshes the ``alerts_undelivered`` gauge.

Table writes outside an event (timer, delivery tasks) name the partition explicitly: each
state remembers the partition of its patient's messages, which is the changelog partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import faust
import orjson
from faust.types import TP, EventT
from pydantic import ValidationError

from alerts import outbox
from alerts.delivery import Courier
from alerts.digest_sender import read_compacted, send_due_digests
from alerts.feedback.worker import Feedback, events_topic
from alerts.grafana import AnnotationQueue, GrafanaAnnotator
from alerts.lifecycle import Annotate
from alerts.metrics import AlertsMetrics, install_metrics
from alerts.notify import send_notification
from alerts.pending import PendingDelivery
from alerts.settings import AlertsSettings
from alerts.state import (
    PatientState,
    Step,
    Where,
    decode,
    on_anomaly,
    on_command,
    on_tick,
    remember_annotation,
)
from pghd import stall_watchdog, topics, wire
from pghd.alert_commands import AlertCommand
from pghd.alerting import Alert, DigestRecord
from pghd.contracts import Anomaly, DeadLetter, Severity
from pghd.erasure import ErasureMarker, decode_marker, is_marker, stage_event
from pghd.feedback.events import FeedbackEvent
from pghd.kafka_send import Outgoing, send_all
from pghd.pseudonym import pseudonym
from pghd.table_partition import in_partition

__all__ = ["Alerts", "where_of"]

logger = logging.getLogger(__name__)

#: Erasures remembered (counts so far, whether one failed), for the marker's second copy: one
#: comes on each input topic.
_ERASURES_KEPT = 1024


def _alert_patient(raw: bytes) -> str | None:
    """The patient of an alert record of ``pghd.alerts.v1`` (its ``labels.patient_id``);
    None for a record that is not one."""
    try:
        labels = orjson.loads(raw).get("labels")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    patient = labels.get("patient_id") if isinstance(labels, dict) else None
    return patient if isinstance(patient, str) else None


def where_of(event: EventT[Any]) -> tuple[Where, bytes | None]:
    """Where ``event`` came from, and its raw key."""
    message = event.message
    key = message.key if isinstance(message.key, bytes) else None
    where = Where(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=None if key is None else key.decode("utf-8", errors="backslashreplace"),
    )
    return where, key


class Alerts:
    """One alerts worker's topics, state, courier and agents, registered on ``app``."""

    def __init__(self, app: faust.App, settings: AlertsSettings) -> None:
        self.app = app
        self.settings = settings
        self.config = settings.routing_config()
        self.policy = settings.grouping_policy(self.config)
        if self.config is None:
            logger.warning("no routing file or notify URLs: alerts are tracked, nobody is notified")
        self.inputs = app.topic(
            topics.ANOMALIES, topics.ALERT_COMMANDS, key_type=bytes, value_type=bytes
        )
        self.alerts_topic = app.topic(topics.ALERTS, key_type=bytes, value_type=bytes)
        self.digests_topic = app.topic(topics.DIGESTS, key_type=bytes, value_type=bytes)
        # Prometheus metrics at /metrics on the Faust web server (alerts.metrics).
        self.metrics: AlertsMetrics = install_metrics(
            app,
            bootstrap=settings.kafka_bootstrap,
            group=settings.app_id,
            # and feedback's inputs: a patient's app never holds them up, so their lag says
            # the feedback agents fell behind (alerts.feedback.worker)
            topics=[
                topics.ANOMALIES,
                topics.ALERT_COMMANDS,
                events_topic(settings.app_id),
                topics.DLQ,
                topics.POINTS,
            ],
            lag_interval_s=settings.metrics_lag_interval_s,
        )
        stall_watchdog.install(
            app,
            topics={topics.ANOMALIES, topics.ALERT_COMMANDS},
            after_s=settings.stall_reseek_after_s,
            clock=time.monotonic,
            on_reseek=lambda topic: self.metrics.partitions_reread.labels(topic=topic).inc(),
        )
        self.alert_state = app.Table(
            "alert_state",
            partitions=settings.topic_partitions,
            key_type=str,
            help="patient_id -> PatientState (alerts, silences, pending deliveries,"
            " annotation ids)",
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self.erasing: set[str] = set()
        """patients whose erasure is under way: their state is not written again"""
        self._erasures: OrderedDict[str, tuple[dict[str, int], bool]] = OrderedDict()
        self.erase_attempts = 3
        """tries of each part of an erasure that can fail (Kafka read, Grafana search)"""
        self.erase_backoff_s = 1.0
        self.courier = Courier(
            send=self._send,
            load=self.load,
            apply=self._apply,
            owned=self._owned,
            policy=settings.retry_policy(),
            metrics=self.metrics,
            config=self.config,
            erasing=self.erasing.__contains__,
        )
        self.annotation_queue = (
            None
            if settings.grafana_url is None
            else AnnotationQueue(
                GrafanaAnnotator(
                    settings.grafana_url,
                    token=None
                    if settings.grafana_token is None
                    else settings.grafana_token.get_secret_value(),
                    dashboard_uid=settings.grafana_dashboard_uid,
                    panel_id=settings.grafana_panel_id,
                    timeout_s=settings.grafana_timeout_s,
                ),
                lookup=self._lookup_annotation,
                remember=self._remember_annotation,
                attempts=settings.grafana_attempts,
                backoff_s=settings.grafana_backoff_s,
                on_outcome=self.metrics.annotation,
                alive=self._alive,
            )
        )
        self.feedback = Feedback(app, settings, self.metrics, erasing=self.erasing)
        app.agent(self.inputs, name="alerts.agents.alert_on_inputs")(self._alert_on_inputs)
        app.timer(interval=settings.tick_s, name="alerts.agents.tick")(self.tick)
        app.timer(interval=settings.digest_check_s, on_leader=True, name="alerts.agents.digest")(
            self.digest_tick
        )
        app.task(self._annotate)

    # -- the table ---------------------------------------------------------------------

    def load(self, patient_id: str) -> PatientState | None:
        """``patient_id``'s state from the table (None if none, or unreadable)."""
        raw = self.alert_state.get(patient_id)
        if raw is None:
            return None
        try:
            return PatientState.model_validate(raw)
        except ValidationError:
            logger.error(
                "alert state of patient %s is unreadable; starting afresh", pseudonym(patient_id)
            )
            return None

    def _store(self, state: PatientState) -> None:
        """Write to the local store and the changelog partition of the patient."""
        value = state.model_dump(mode="json")
        self.alert_state.data[state.patient_id] = value
        self.alert_state.send_changelog(state.partition, state.patient_id, value)

    def _owned(self) -> set[int]:
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == topics.ANOMALIES
        }

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _apply(self, step: Step) -> None:
        """Store the state, publish changed alerts, queue annotations (no waiting); nothing
        for a patient being erased."""
        if not step.dirty or step.state.patient_id in self.erasing:
            return
        self.metrics.alert_changes(self.alert_state.get(step.state.patient_id), step.changed)
        self._store(step.state)
        for alert in step.changed:
            self.alerts_topic.send_soon(key=alert.fingerprint.encode(), value=wire.encode(alert))
        self.feedback.publish_soon(step.feedback)
        for action in step.annotations:
            if self.annotation_queue is not None:
                self.annotation_queue.submit(action)
        self.courier.in_flight.update(d.notification_id for d in step.deliveries)

    # -- notifications and annotations ---------------------------------------------------

    async def _send(self, delivery: PendingDelivery) -> bool:
        url = None if self.config is None else self.config.channels.get(delivery.channel)
        if url is None:
            logger.error(
                "notification %s: channel %s is not configured",
                delivery.notification_id,
                delivery.channel,
            )
            return False
        return await send_notification(
            url,
            title=delivery.title,
            body=delivery.body,
            severity=delivery.severity,
            notification_id=delivery.notification_id,
        )

    async def _flush_and_send(self, deliveries: list[PendingDelivery]) -> None:
        """Wait until the outbox entries (and alert states) are in Kafka, then send (not
        to patients erased meanwhile)."""
        await self.app.producer.flush()
        for delivery in deliveries:
            if self._alive(delivery.patient_id):
                self._spawn(self.courier.attempt(delivery))
            else:
                self.courier.in_flight.discard(delivery.notification_id)

    def _alive(self, patient_id: str) -> bool:
        """Whether the patient has alert state here and is not being erased."""
        return patient_id not in self.erasing and self.alert_state.get(patient_id) is not None

    def _lookup_annotation(self, action: Annotate) -> int | None:
        state = self.load(action.patient_id)
        return None if state is None else state.annotations.get(action.alert_id)

    def _remember_annotation(self, action: Annotate, annotation_id: int) -> None:
        erasing = action.patient_id in self.erasing
        state = None if erasing else self.load(action.patient_id)
        if state is None and self.annotation_queue is not None:
            # written while the patient was being erased: it must not outlive them
            self._spawn(asyncio.to_thread(self.annotation_queue.annotator.delete, annotation_id))
            return
        if state is not None and state.partition in self._owned():
            new = remember_annotation(state, action.alert_id, annotation_id)
            self._apply(Step(state=new, dirty=new != state))

    async def _annotate(self) -> None:
        if self.annotation_queue is not None:
            await self.annotation_queue.run()

    # -- the input ---------------------------------------------------------------------

    def handle(
        self,
        payload: bytes | None,
        *,
        where: Where,
        now: datetime,
        state_of: Callable[[str], PatientState | None] | None = None,
    ) -> Step | DeadLetter:
        """One input message against its patient's state (``state_of``: the batch's own for
        a patient it already changed; the table's by default)."""
        state_of = state_of or self.load
        if where.topic == topics.ALERT_COMMANDS:
            command = decode(AlertCommand, payload, where=where, now=now)
            if isinstance(command, DeadLetter):
                return command
            state = state_of(command.patient_id) or PatientState(
                patient_id=command.patient_id, partition=where.partition or 0
            )
            step, outcome = on_command(state, command, now=now)
            logger.info(
                "command %s (%s) patient %s alert %s: %s",
                command.command_id,
                command.kind.value,
                pseudonym(command.patient_id),
                command.alert_id,
                outcome,
            )
            return step
        anomaly = decode(Anomaly, payload, where=where, now=now)
        if isinstance(anomaly, DeadLetter):
            return anomaly
        state = state_of(anomaly.patient_id) or PatientState(
            patient_id=anomaly.patient_id, partition=where.partition or 0
        )
        return on_anomaly(
            state,
            anomaly,
            config=self.config,
            policy=self.policy,
            now=now,
            late_after_s=self.settings.notify_max_age_s,
            page_late=self.settings.page_late,
        )

    async def _alert_on_inputs(self, stream: faust.StreamT[Any]) -> None:
        """Anomalies and commands, batch by batch (:meth:`handle_batch`)."""
        batches = cast("faust.Stream[Any]", stream).take_events(
            self.settings.batch_size, within=self.settings.batch_within_s
        )
        async for events in batches:
            run: list[EventT[Any]] = []
            for event in events:
                if is_marker(event.value):  # on either topic (see erase)
                    if run:
                        await self.handle_batch(run)
                        run = []
                    await self.erase(event)
                else:
                    run.append(event)
            if run:
                await self.handle_batch(run)

    async def _delete_annotations(self, ids: Sequence[int], attempts: int = 3) -> list[int]:
        """Delete Grafana annotations, retrying each failure with backoff; the ids left."""
        assert self.annotation_queue is not None
        annotator = self.annotation_queue.annotator
        left = list(ids)
        for attempt in range(1, attempts + 1):
            failed: list[int] = []
            for annotation_id in left:
                try:
                    await asyncio.to_thread(annotator.delete, annotation_id)
                except Exception as exc:
                    logger.warning("annotation %d not deleted (%s)", annotation_id, exc)
                    failed.append(annotation_id)
            left = failed
            if not left or attempt == attempts:
                return left
            await asyncio.sleep(self.settings.grafana_backoff_s * 2 ** (attempt - 1))
        return left

    async def _retried(self, what: str, call: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """``call()``, tried :attr:`erase_attempts` times with backoff; raises the last error."""
        for attempt in range(1, self.erase_attempts + 1):
            try:
                return await call()
            except Exception as exc:
                if attempt == self.erase_attempts:
                    raise
                delay = self.erase_backoff_s * 2 ** (attempt - 1)
                logger.warning(
                    "erasure: %s failed (attempt %d, retry in %.1fs): %s: %s",
                    what,
                    attempt,
                    delay,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def erase(self, event: EventT[Any]) -> None:
        """An erasure marker (:mod:`pghd.erasure`), after every earlier message of its
        patient on its topic: tombstone their alerts on ``pghd.alerts.v1`` (the state's and
        any other the topic holds for them), delete their state (silences and pending
        notifications with it) and their Grafana annotations (those the state names and
        those Grafana finds by the patient's tag); report to ``pghd.audit.v1``.

        Never raises (the agent would stop, and the marker could be committed unreported):
        a part that fails after its retries is named in the report, ``failed``; the rest is
        erased all the same, and asking again finds what is left. The marker comes once on
        each input topic: the second copy erases again (a command read between the two may
        have made new state) and reports only when it removed something, with the counts of
        both."""
        where, key = where_of(event)
        now = datetime.now(UTC)
        try:
            marker = decode_marker(event.value)
        except ValueError as exc:
            letter = DeadLetter(
                stage="alerts",
                reason=str(exc)[:1000],
                topic=where.topic,
                partition=where.partition,
                offset=where.offset,
                key=where.key,
                payload=bytes(event.value).decode("utf-8", "backslashreplace"),
                failed_at=now,
            )
            self.metrics.dead_letter(letter)
            try:
                await send_all(self.app.producer, [(topics.DLQ, key, wire.encode(letter), None)])
            except Exception as send_exc:
                logger.error("invalid erasure marker not sent to the DLQ: %r", send_exc)
            return
        pid = marker.patient_id
        self.erasing.add(pid)  # before any await: nothing writes their state from here
        try:
            await self._erase(marker, where, now)
        except Exception:
            logger.exception(
                "erasure %s of patient %s: unexpected failure", marker.erasure_id, pseudonym(pid)
            )
        finally:
            self.erasing.discard(pid)

    async def _erase(self, marker: ErasureMarker, where: Where, now: datetime) -> None:
        pid = marker.patient_id
        stored = self.alert_state.get(pid) is not None
        state = self.load(pid)  # None when unreadable: the tombstone goes all the same
        # the event's partition is the patient's (both inputs are keyed by patient), also
        # when their state is unreadable; the state's own, should it differ
        partitions = {where.partition or 0} | (set() if state is None else {state.partition})
        store: Any = self.alert_state.data
        for p in partitions:
            with in_partition(p):
                store.pop(pid, None)
        queued = 0 if self.annotation_queue is None else self.annotation_queue.forget(pid)
        failures: list[str] = []
        try:  # what was buffered before (a state, an alert) reaches Kafka before the tombstones
            await self.app.producer.flush()
        except Exception as exc:
            failures.append(f"Kafka producer not flushed ({type(exc).__name__})")
        published: dict[bytes, bytes] = {}
        try:
            published = await self._retried(
                f"reading {topics.ALERTS}", lambda: self._read_compacted(topics.ALERTS)
            )
        except Exception as exc:
            failures.append(
                f"{topics.ALERTS} not read ({type(exc).__name__}: {exc}): only the alerts in"
                " the state were tombstoned"
            )
        deleted_annotations, reason = await self._erase_annotations(pid, state)
        if reason is not None:
            failures.append(reason)
        fingerprints = set() if state is None else set(state.alerts)
        for fingerprint, raw in published.items():
            if _alert_patient(raw) == pid:
                fingerprints.add(fingerprint.decode("utf-8", "replace"))
        changelog = self.alert_state.changelog_topic.get_topic_name()
        outgoing: list[Outgoing] = [(topics.ALERTS, fp.encode(), None, None) for fp in fingerprints]
        outgoing += [(changelog, orjson.dumps(pid), None, p) for p in sorted(partitions)]
        feedback_tombstones, feedback_removed = self.feedback.erase(pid, partitions)
        outgoing += feedback_tombstones
        try:
            await send_all(self.app.producer, outgoing)
        except Exception as exc:
            failures.append(f"tombstones not sent ({type(exc).__name__}: {exc})")
        for p in partitions:
            with in_partition(p):
                store.pop(pid, None)
        removed = {
            "alerts": len(fingerprints),
            "alert_states": int(stored),
            "silences": 0 if state is None else len(state.silences),
            "pending_notifications": 0 if state is None else len(state.pending),
            "annotations": deleted_annotations,
            "queued_annotations": queued,
            **feedback_removed,
        }
        failed = "; ".join(failures)[:500] or None
        await self._report(marker, removed, failed=failed, now=now, topic=where.topic)

    async def _erase_annotations(
        self, pid: str, state: PatientState | None
    ) -> tuple[int, str | None]:
        """Delete the patient's Grafana annotations: those the state names and those Grafana
        finds by their tag; how many, and why some are left (None: none are)."""
        known = set() if state is None else set(state.annotations.values())
        if self.annotation_queue is None:
            if known:
                return 0, f"{len(known)} Grafana annotations kept: no Grafana is configured"
            return 0, None
        annotator = self.annotation_queue.annotator
        reason: str | None = None
        try:
            found = await self._retried(
                "searching Grafana annotations", lambda: asyncio.to_thread(annotator.find, pid)
            )
            known.update(found)
        except Exception as exc:
            reason = f"Grafana annotations not searched ({type(exc).__name__}); ask again"
        ids = sorted(known)
        kept = await self._delete_annotations(ids, attempts=self.erase_attempts)
        if kept:
            left = f"Grafana annotations not deleted (ids {kept}); ask again"
            reason = left if reason is None else f"{reason}; {left}"
        return len(ids) - len(kept), reason

    async def _report(
        self,
        marker: ErasureMarker,
        removed: dict[str, int],
        *,
        failed: str | None,
        now: datetime,
        topic: str | None,
    ) -> None:
        """Append the stage's audit event: the counts of this marker and of its other copy,
        if this worker erased for it already (then only when this one removed more, failed,
        or mends a failure of the first)."""
        pid = marker.patient_id
        counts, failed_before = self._erasures.pop(marker.erasure_id, (None, False))
        total = dict(removed)
        if counts is not None:
            total = {k: counts.get(k, 0) + removed.get(k, 0) for k in {*counts, *removed}}
        self._erasures[marker.erasure_id] = (total, failed is not None)
        while len(self._erasures) > _ERASURES_KEPT:
            self._erasures.popitem(last=False)
        news = failed is not None or failed_before or any(removed.values())
        if counts is not None and not news:
            logger.info(
                "erasure %s of patient %s: its marker on %s found nothing more",
                marker.erasure_id,
                pseudonym(pid),
                topic,
            )
            return
        report = stage_event(
            marker, stage="alerts", resource="alerts", removed=total, recorded=now, failed=failed
        )
        try:
            await send_all(
                self.app.producer, [(topics.AUDIT, pid.encode(), wire.encode(report), None)]
            )
        except Exception as exc:
            logger.error(
                "erasure %s of patient %s: report not sent (%r)",
                marker.erasure_id,
                pseudonym(pid),
                exc,
            )
            return
        log = logger.warning if failed else logger.info
        log(
            "erasure %s of patient %s: %s%s",
            marker.erasure_id,
            pseudonym(pid),
            total,
            f"; FAILED: {failed}" if failed else "",
        )

    async def handle_batch(self, events: Sequence[EventT[Any]]) -> None:
        """A batch of anomalies and commands, in order per patient: each patient's state is
        loaded (and validated) once, stepped through its messages in memory, and written
        once; the batch's states, changed alerts and dead letters go to Kafka together,
        awaited once, and only then are its notifications attempted (their intents are in
        the states)."""
        now = datetime.now(UTC)
        before: dict[str, PatientState | None] = {}
        current: dict[str, PatientState] = {}

        def state_of(patient_id: str) -> PatientState | None:
            if patient_id in current:
                return current[patient_id]
            if patient_id not in before:
                before[patient_id] = self.load(patient_id)
            return before[patient_id]

        changed: dict[str, list[Alert]] = {}
        deliveries: list[PendingDelivery] = []
        annotations: list[Annotate] = []
        feedback: list[FeedbackEvent] = []
        letters: list[tuple[bytes, bytes]] = []
        for event in events:
            where, key = where_of(event)
            result = self.handle(event.value, where=where, now=now, state_of=state_of)
            self.metrics.consumed(where.topic)
            if isinstance(result, DeadLetter):
                logger.warning(
                    "undecodable message at %s[%s]@%s: to the DLQ",
                    where.topic,
                    where.partition,
                    where.offset,
                )
                letters.append((key or b"unkeyed", wire.encode(result)))
                self.metrics.dead_letter(result)
                continue
            if not result.dirty:
                continue
            patient_id = result.state.patient_id
            current[patient_id] = result.state
            changed.setdefault(patient_id, []).extend(result.changed)
            deliveries += result.deliveries
            annotations += result.annotations
            feedback += result.feedback
            for alert in result.changed:
                many = result.deliveries or alert.anomaly_count <= 1
                log = logger.info if many else logger.debug
                log(
                    "alert %s patient %s: %s, %s%s, %d anomalies, %d notifications planned",
                    alert.alert_id,
                    alert.patient_id,
                    alert.status.value,
                    alert.severity.value,
                    " (late)" if alert.late else "",
                    alert.anomaly_count,
                    len(result.deliveries),
                )
        for patient_id, alerts in changed.items():
            previous = before.get(patient_id)
            self.metrics.alert_changes(
                None if previous is None else previous.model_dump(mode="json"), alerts
            )
        changelog = self.alert_state.changelog_topic.get_topic_name()
        values = {pid: state.model_dump(mode="json") for pid, state in current.items()}
        outgoing: list[Outgoing] = [  # keys and values as the table's JSON serializer writes
            (changelog, orjson.dumps(pid), orjson.dumps(values[pid]), current[pid].partition)
            for pid in current
        ]
        outgoing += [
            (topics.ALERTS, alert.fingerprint.encode(), wire.encode(alert), None)
            for alerts in changed.values()
            for alert in alerts
        ]
        outgoing += [(topics.DLQ, key, value, None) for key, value in letters]
        outgoing += self.feedback.records(feedback)
        # The local store and the deliveries in flight change before the await: a delivery
        # of an earlier batch may settle during it (load, change, store), and a state kept
        # aside until after it would overwrite that outcome and send the page again.
        store: Any = self.alert_state.data
        for pid, value in values.items():
            with in_partition(current[pid].partition):
                store[pid] = value
        flying = {d.notification_id for d in deliveries}
        self.courier.in_flight.update(flying)
        try:
            sent = await send_all(self.app.producer, outgoing)
        except BaseException:  # not in Kafka: the batch will be read again
            for pid in current:  # as loaded at the start of the batch
                old = before.get(pid)
                with in_partition(current[pid].partition):
                    if old is None:
                        store.pop(pid, None)
                    else:
                        store[pid] = old.model_dump(mode="json")
            self.courier.in_flight.difference_update(flying)
            raise
        newest: dict[int, int] = {}
        for meta in sent[: len(current)]:
            newest[meta.partition] = max(newest.get(meta.partition, -1), meta.offset)
        for partition, offset in newest.items():  # RocksDB's mark of how far it holds the log
            store.set_persisted_offset(TP(changelog, partition), offset)
        if self.annotation_queue is not None:
            for action in annotations:
                self.annotation_queue.submit(action)
        for delivery in deliveries:
            self._spawn(self.courier.attempt(delivery))

    # -- timers ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Escalate, repeat, auto-resolve; then the outbox: retries, fallbacks, resumed
        sends."""
        if self.app.rebalancing or self.app.in_recovery:
            return
        owned, now = self._owned(), datetime.now(UTC)
        deliveries: list[PendingDelivery] = []
        states: list[PatientState] = []
        for patient_id in list(self.alert_state.data.keys()):
            if patient_id in self.erasing:
                continue
            state = self.load(patient_id)
            if state is None or state.partition not in owned:
                continue
            step = on_tick(state, config=self.config, policy=self.policy, now=now)
            self._apply(step)  # its new deliveries are in flight from here: the outbox skips
            planned = self.courier.plan(step.state, now=now)
            self._apply(planned.step)
            deliveries += [*step.deliveries, *planned.step.deliveries]
            states.append(planned.step.state)
        self.metrics.set_undelivered(outbox.undelivered(states))
        if deliveries:
            await self._flush_and_send(deliveries)

    async def _read_compacted(self, topic: str) -> dict[bytes, bytes]:
        return await read_compacted(self.settings.kafka_bootstrap, topic)

    async def _publish_digest(self, record: DigestRecord) -> None:
        sent = await self.digests_topic.send(key=record.key.encode(), value=wire.encode(record))
        await sent

    async def _send_digest(self, url: str, title: str, body: str, notification_id: str) -> bool:
        delay = self.settings.notify_backoff_s
        for attempt in range(1, self.settings.notify_attempts + 1):
            if await send_notification(
                url,
                title=title,
                body=body,
                severity=Severity.INFO,
                notification_id=notification_id,
            ):
                return True
            if attempt < self.settings.notify_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.notify_max_backoff_s)
        return False

    async def digest_tick(self) -> None:
        """Send the daily digests that are due (leader only: one digest per team, not per
        worker)."""
        if self.config is None or self.config.digest is None or self.app.rebalancing:
            return
        try:
            await send_due_digests(
                read=self._read_compacted,
                config=self.config,
                now=datetime.now(UTC),
                send=self._send_digest,
                publish=self._publish_digest,
            )
        except Exception as exc:  # Kafka away: the next check tries again
            logger.warning("daily digest not sent now (%s: %s); retrying", type(exc).__name__, exc)
