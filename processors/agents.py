"""The processors' work: readings in, judged batch by batch; anomalies, points and state out.

:class:`Processors` owns what one worker needs (topics, the ``state`` table, care plans,
metrics) and registers on the Faust app, for each batch of records (``stream.noack_take``,
at most ``batch_size`` records, waiting at most ``batch_within_s`` for more):

1. **Triage.** Records that fail the contract (undecodable, not a valid measurement, a value
   outside the channel's possible range: :mod:`processors.codec`), and readings whose key is
   not their patient id, are dropped: each becomes a :class:`~pghd.contracts.DeadLetter` for
   ``pghd.dlq.v1`` (sent in step 5) and is counted in ``dead_letters_total{reason}``
   (:mod:`processors.metrics`); the rest of the batch goes on.
2. **Load.** Each patient's record (:mod:`processors.state`) from the cache or the
   ``state`` table (:mod:`processors.state_store`); a record that still lists anomaly
   *intents* (a crash fell between writing it and sending them) is settled first: the
   anomalies not found on ``pghd.anomalies.v1`` are sent (:mod:`processors.outbox`).
3. **Skip what was judged.** A reading at or before the Kafka position its patient's record
   holds (``through``) is in the record already (a replay after a crash); a reading whose
   digest the record holds is a repeat a client sent again (:func:`processors.dedup.is_repeat`).
4. **Judge** (:func:`processors.judging.judge`) with the records' baselines, NEWS2 vitals and
   patient state, and the patients' care plans.
5. **Make it durable, together:** the dead letters, the InfluxDB points (``pghd.points.v1``,
   one record per patient; the store stage writes them to InfluxDB, so judging never waits
   on InfluxDB) and one new state record per patient (with ``through``, the new digests and
   the anomalies about to be sent as intents) are sent at once and awaited once.
6. **Send the anomalies** and await them; then the records that listed them as intents are
   written again without them.

An erasure marker (:mod:`pghd.erasure`) splits its batch: the records before it are judged
and made durable first; then the patient's record and dedup buckets are deleted, the marker
is forwarded to ``pghd.points.v1`` and ``pghd.anomalies.v1`` (behind the patient's earlier
points and anomalies) and the deletion is reported to ``pghd.audit.v1``.

Steps 1-4 run while the batch before is still in steps 5-6 (judging is CPU, making durable
is waiting on Kafka), but a batch's sends start only once the batch before is durable, so
what reaches Kafka keeps the order of the readings. A batch's records are acked once its
steps 5-6 are done, so their offsets commit (every ``commit_interval_s``) only after
everything above is durable; until then the next batch reads its patients' new records from
memory (:meth:`StateStore.keep`). When partitions move, the batch in flight is finished
first. A crash anywhere replays the
batch: a patient whose new record was written skips the readings it holds (step 3) and its
anomalies are settled from the intents (step 2); a patient whose record was not written is
judged again from the old one, with the same ids for the same anomalies. An anomaly is
therefore sent once: only a send whose reply a crash cut off and that the leader had not yet
replicated when the check read the topic can still show up twice, so consumers keep
deduplicating on ``anomaly_id`` (the alerts service does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
import faust.streams
from faust.types import EventT

from pghd import stall_watchdog, topics, wire
from pghd.contracts import Anomaly, DeadLetter, Measurement
from pghd.erasure import ErasureMarker, stage_event
from pghd.table_partition import on_behalf_of
from processors.baseline import BaselineState
from processors.care_plans import CarePlanBook
from processors.codec import CODEC_NAME, Undecodable
from processors.dedup import is_repeat
from processors.judging import judge
from processors.metrics import ProcessorMetrics, install_metrics
from processors.outbox import AnomalyOutbox, deliver
from processors.settings import ProcessorSettings
from processors.state import (
    PatientRecord,
    bucket_key,
    bucket_partition,
    digest,
    encode_bucket,
    encode_record,
    is_bucket_key,
    record_partition,
)
from processors.state_store import StateStore, Write
from processors.store.records import encode_records
from processors.store.service import store_service

__all__ = ["STAGE", "Erasing", "Processors", "split_at_erasures"]

logger = logging.getLogger(__name__)

STAGE = "processors"
Reading = tuple[EventT[Any], Measurement]


@dataclass(frozen=True)
class _Outgoing:
    """What one judged batch must make durable (steps 5 and 6), and what to report."""

    events: Sequence[EventT[Any]]
    items: int
    letters: list[tuple[bytes, bytes]]
    points: list[tuple[bytes, bytes]]
    writes: list[Write]
    anomalies: Sequence[Anomaly]
    cleared: list[Write]  # the records of ``writes`` that list intents, without them
    readings: list[Measurement]
    judged: int
    repeats: Sequence[str]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def dead_letter(
    event: EventT[Any], reason: str, *, now: datetime, payload: bytes | None = None
) -> tuple[bytes, bytes]:
    """The ``pghd.dlq.v1`` message for ``event`` (or ``payload``, one reading of it),
    refused for ``reason``."""
    message = event.message
    if payload is None:
        payload = message.value if isinstance(message.value, bytes) else b""
    key = message.key if isinstance(message.key, bytes) else None
    letter = DeadLetter(
        stage=STAGE,
        reason=reason,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=None if key is None else key.decode("utf-8", errors="backslashreplace"),
        payload=payload.decode("utf-8", errors="backslashreplace"),
        failed_at=now,
    )
    return key or b"unkeyed", wire.encode(letter)


def triage(
    events: Sequence[EventT[Any]], *, now: datetime
) -> tuple[list[Reading], list[tuple[bytes, bytes]]]:
    """Split a batch into readings and dead letters (a record may hold several readings:
    :mod:`pghd.envelope`)."""
    readings: list[Reading] = []
    letters: list[tuple[bytes, bytes]] = []
    for event in events:
        values = event.value if isinstance(event.value, list) else [event.value]
        for value in values:
            if isinstance(value, Undecodable):
                letters.append(dead_letter(event, value.reason, now=now, payload=value.payload))
            elif not isinstance(value, Measurement):
                reason = f"unexpected {type(value).__name__}"
                letters.append(dead_letter(event, reason, now=now))
            elif event.message.key != value.patient_id.encode():
                reason = "message key must be the reading's patient_id"
                letters.append(dead_letter(event, reason, now=now, payload=wire.encode(value)))
            else:
                readings.append((event, value))
    return readings, letters


@dataclass(frozen=True)
class Erasing:
    """An event whose record is an erasure marker."""

    event: EventT[Any]
    marker: ErasureMarker


def split_at_erasures(events: Sequence[EventT[Any]]) -> list[Sequence[EventT[Any]] | Erasing]:
    """``events`` in order, as runs of ordinary events and erasure markers on their own."""
    parts: list[Sequence[EventT[Any]] | Erasing] = []
    run: list[EventT[Any]] = []
    for event in events:
        value = event.value
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], ErasureMarker):
            if run:
                parts.append(run)
                run = []
            parts.append(Erasing(event=event, marker=value[0]))
        else:
            run.append(event)
    if run:
        parts.append(run)
    return parts


def last_event_of_each_patient(readings: Sequence[Reading]) -> dict[str, EventT[Any]]:
    """Each patient's event with the highest offset (a patient's readings share a partition)."""
    last: dict[str, EventT[Any]] = {}
    for event, reading in readings:
        held = last.get(reading.patient_id)
        if held is None or event.message.offset > held.message.offset:
            last[reading.patient_id] = event
    return last


class Processors:
    """One processors worker's topics, state and agent, registered on ``app``."""

    def __init__(self, app: faust.App, settings: ProcessorSettings) -> None:
        self.app = app
        self.settings = settings
        self.params = settings.judge_params()
        self.policy = settings.episode_policy()
        self.window_ms = int(settings.dedup_window_s * 1000)
        self.measurements = app.topic(
            topics.MEASUREMENTS, key_type=bytes, key_serializer="raw", value_serializer=CODEC_NAME
        )
        self.anomalies_topic = app.topic(topics.ANOMALIES, key_type=bytes, value_type=bytes)
        self.points_topic = app.topic(topics.POINTS, key_type=bytes, value_type=bytes)
        self.dlq_topic = app.topic(topics.DLQ, key_type=bytes, value_type=bytes)
        self.audit_topic = app.topic(topics.AUDIT, key_type=bytes, value_type=bytes)
        self.commands_topic = app.topic(topics.ALERT_COMMANDS, key_type=bytes, value_type=bytes)
        self.state = StateStore(
            app, partitions=settings.topic_partitions, cache_size=settings.state_cache_patients
        )
        # Prometheus metrics at /metrics on the Faust web server (processors.metrics).
        self.metrics: ProcessorMetrics = install_metrics(
            app,
            bootstrap=settings.kafka_bootstrap,
            group=settings.app_id,
            topics=[topics.MEASUREMENTS],
            lag_interval_s=settings.metrics_lag_interval_s,
            more_groups=(
                [(settings.store_group_id, [topics.POINTS])] if settings.store_in_worker else []
            ),
        )
        # Care plans (pghd.care-plans.v1 -> table, own agent); what is not one is counted.
        self.care_plans = CarePlanBook(
            app,
            partitions=settings.topic_partitions,
            dlq=self.dlq_topic,
            deliver=deliver,
            count=self.metrics.dead_lettered,
        )
        self.outbox = AnomalyOutbox(
            bootstrap=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-verify",
            lookback_s=settings.verify_lookback_s,
        )
        self._lock = asyncio.Lock()
        self._flight: asyncio.Task[None] | None = None  # the batch being made durable
        self._flight_generation = -1
        self._settled_generation = -1
        stall_watchdog.install(
            app,
            topics={topics.MEASUREMENTS, topics.CARE_PLANS},
            after_s=settings.stall_reseek_after_s,
            clock=time.monotonic,
            on_reseek=lambda topic: self.metrics.partitions_reread.labels(topic=topic).inc(),
        )
        # The store stage (pghd.points.v1 -> InfluxDB), its own consumer group, this process.
        if settings.store_in_worker:
            app.service(store_service(settings, counters=self.metrics))
        app.agent(self.measurements, name="processors.agents.judge_measurements")(
            self._judge_measurements
        )
        app.timer(interval=settings.dedup_sweep_s, name="processors.agents.sweep")(self._sweep)
        app.timer(interval=settings.intent_check_s, name="processors.agents.settle")(
            self._settle_after_assignment
        )

    async def _judge_measurements(self, stream: faust.StreamT[Any]) -> None:
        """Judge readings batch by batch (the module docstring's steps), one batch judged
        while the one before it is made durable."""
        faust_stream = cast("faust.Stream[Any]", stream)
        batches = faust_stream.noack_take(
            self.settings.batch_size, within=self.settings.batch_within_s
        )
        try:
            async for events in batches:
                for part in split_at_erasures(events):
                    if isinstance(part, Erasing):
                        await self._erase(part, faust_stream)
                    else:
                        await self._take(part, faust_stream)
        finally:
            flight, self._flight = self._flight, None
            if flight is not None and not flight.done():
                flight.cancel()  # its readings were not acked: they are judged again
                self.state.forget()

    async def _take(self, events: Sequence[EventT[Any]], stream: faust.Stream[Any]) -> None:
        """Judge ``events`` and start making them durable (the batch before is drained)."""
        async with self._lock:
            if self.state.generation != self._flight_generation:
                await self._drain()  # partitions moved: judge from durable state
            generation = self.state.generation  # before prepare, which may await
            try:
                outgoing = await self.prepare(events)
                await self._drain()
            except BaseException:
                self.state.forget()  # judged records may be ahead of the table now
                raise
            self._flight_generation = generation
            self._flight = asyncio.create_task(self._send(outgoing, stream))

    async def _erase(self, erasing: Erasing, stream: faust.Stream[Any] | None) -> None:
        """An erasure marker (:mod:`pghd.erasure`), once every batch before it is durable:
        delete the patient's state record and dedup buckets, forward the marker to the
        points and anomalies topics (behind the patient's earlier records), report."""
        event, marker = erasing.event, erasing.marker
        now = datetime.now(UTC)
        async with self._lock:
            await self._drain()
            key = marker.patient_id.encode()
            if event.message.key != key:
                letter = dead_letter(
                    event,
                    "message key must be the erasure marker's patient_id",
                    now=now,
                    payload=wire.encode(marker),
                )
                await deliver(self.dlq_topic, [letter])
                self.metrics.observe_batch(events=1, readings=[], repeats=[], letters=[letter])
            else:
                removed = await self.state.erase(marker.patient_id, event.message.partition)
                forwarded = wire.encode(marker)
                await asyncio.gather(
                    deliver(self.points_topic, [(key, forwarded)]),
                    deliver(self.anomalies_topic, [(key, forwarded)]),
                    deliver(self.commands_topic, [(key, forwarded)]),
                    # again: a care plan set while ingest's tombstone was on its way
                    deliver(self.care_plans.topic, [(key, None)]),
                )
                report = stage_event(
                    marker, stage=STAGE, resource="processors/state", removed=removed, recorded=now
                )
                await deliver(self.audit_topic, [(key, wire.encode(report))])
                logger.info(
                    "erasure %s of patient %s: %s", marker.erasure_id, marker.patient_id, removed
                )
            if stream is not None:
                await stream.ack(event)

    async def _drain(self) -> None:
        """Wait until the batch in flight is durable and acked (raises what it raised)."""
        flight, self._flight = self._flight, None
        if flight is None:
            return
        try:
            await flight
        finally:
            self.state.settled()

    # -- step 2: records with intents ----------------------------------------------------

    async def _settle(self, records: Mapping[str, PatientRecord]) -> list[str]:
        """Send the intents of ``records`` not found on the topic; return the patients
        whose records must be written again (their intents are cleared here)."""
        pending = {pid: rec for pid, rec in records.items() if rec.intents}
        if not pending:
            return []
        anomalies = [wire.decode(Anomaly, raw) for rec in pending.values() for raw in rec.intents]
        since = min(rec.intent_ms for rec in pending.values())
        found = await self.outbox.already_sent({a.anomaly_id for a in anomalies}, intent_ms=since)
        missing = [a for a in anomalies if a.anomaly_id not in found]
        await deliver(
            self.anomalies_topic, [(a.patient_id.encode(), wire.encode(a)) for a in missing]
        )
        self.metrics.anomalies_sent(missing)
        logger.info(
            "replay: %d anomalies were sent before a restart; %d sent now",
            len(anomalies) - len(missing),
            len(missing),
        )
        for rec in pending.values():
            rec.intents = []
        return list(pending)

    async def _settle_after_assignment(self) -> None:
        """Once per assignment, after recovery: settle the intents of every record of the
        active partitions (a patient may send nothing more for a long time)."""
        generation = self.state.generation
        if generation == self._settled_generation or not self._recovered():
            return
        active = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == topics.MEASUREMENTS
        }
        async with self._lock:
            await self._drain()
            if self.state.generation != generation:
                return
            partition_of: dict[str, int] = {}
            for key, raw in self.state.items():
                if is_bucket_key(key) or b'"intents"' not in raw:
                    continue
                partition = record_partition(raw)
                if partition is not None and partition in active:
                    partition_of[key] = partition
            records = self.state.load(partition_of)
            settled = await self._settle(records)
            await self.state.write(
                [
                    (partition_of[p], p, encode_record(records[p], partition=partition_of[p]))
                    for p in settled
                ]
            )
            self._settled_generation = generation

    def _recovered(self) -> bool:
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]
        return bool(recovery.completed.is_set()) and not self.app.rebalancing

    # -- the batch ---------------------------------------------------------------------

    async def prepare(self, events: Sequence[EventT[Any]]) -> _Outgoing:
        """Steps 1-4 for one batch: what step 5 and 6 must make durable. The new records
        are cached as pending (the next batch reads them) until :meth:`_send` wrote them."""
        now = datetime.now(UTC)
        now_ms = _ms(now)
        decoded, letters = triage(events, now=now)
        items = len(decoded) + len(letters)
        first_events = last_event_of_each_patient(decoded)
        records = self.state.load({p: e.message.partition for p, e in first_events.items()})
        rewrite = set(await self._settle(records))

        readings: list[Reading] = []
        digests: dict[str, list[bytes]] = defaultdict(list)
        for event, reading in decoded:
            record = records[reading.patient_id]
            mark = digest(reading)
            message = event.message
            if is_repeat(
                partition=message.partition,
                offset=message.offset,
                through=record.patient.through,
                known=record.is_known(mark),
            ):
                continue
            readings.append((event, reading))
            digests[reading.patient_id].append(mark)
        judged = {reading.patient_id for _, reading in readings}
        result = judge(
            {k: s for pid in judged for k, s in records[pid].baselines.items()},
            [r for _, r in readings],
            params=self.params,
            now=now,
            plans=self.care_plans.plans_for(readings, within=on_behalf_of),
            news2_states={pid: n for pid in judged if (n := records[pid].news2) is not None},
            patients={pid: records[pid].patient for pid in judged},
            policy=self.policy,
        )
        if result.failed:
            by_id = {reading.event_id: (event, reading) for event, reading in readings}
            for eid, why in result.failed:
                event, reading = by_id[eid]
                letters.append(dead_letter(event, why, now=now, payload=wire.encode(reading)))
            failed = {eid for eid, _ in result.failed}
            readings = [(e, r) for e, r in readings if r.event_id not in failed]

        patient_event = last_event_of_each_patient(readings)
        anomalies_of: dict[str, list[Anomaly]] = defaultdict(list)
        for anomaly in result.anomalies:
            anomalies_of[anomaly.patient_id].append(anomaly)
        states_of: dict[str, dict[str, BaselineState]] = defaultdict(dict)
        for key, state in result.states.items():  # state keys begin with the patient id
            states_of[key.split("|", 1)[0]][key] = state
        writes: list[Write] = []
        cleared: list[Write] = []
        for pid, event in patient_event.items():
            record = records[pid]
            record.patient = result.patients.get(pid, record.patient)
            record.patient.through = (event.message.partition, event.message.offset)
            record.baselines.update(states_of.get(pid, {}))
            if pid in result.news2:
                record.news2 = result.news2[pid]
            sealed = record.remember(digests[pid], now_ms=now_ms)
            partition = event.message.partition
            for number in record.expire(now_ms=now_ms, window_ms=self.window_ms):
                writes.append((partition, bucket_key(pid, number), None))
            for number, bucket in sealed.items():
                bucket_value = encode_bucket(bucket, partition=partition)
                writes.append((partition, bucket_key(pid, number), bucket_value))
            record.intents = [wire.encode(a).decode() for a in anomalies_of.get(pid, [])]
            record.intent_ms = now_ms
            writes.append((partition, pid, encode_record(record, partition=partition)))
            if record.intents:  # written again once the anomalies are sent (step 6)
                record.intents = []
                cleared.append((partition, pid, encode_record(record, partition=partition)))
        for pid in rewrite - patient_event.keys():
            partition = first_events[pid].message.partition
            writes.append((partition, pid, encode_record(records[pid], partition=partition)))

        self.state.keep({pid: records[pid] for pid in patient_event.keys() | rewrite})
        return _Outgoing(
            events=events,
            items=items,
            letters=letters,
            points=encode_records(result.points()),
            writes=writes,
            anomalies=result.anomalies,
            cleared=cleared,
            readings=[r for _, r in readings],
            judged=len(readings) - len(result.duplicates),
            repeats=result.duplicates,
        )

    async def _send(self, out: _Outgoing, stream: faust.Stream[Any] | None) -> None:
        """Steps 5 and 6 for a prepared batch; then ack its events (when ``stream``)."""
        await asyncio.gather(
            deliver(self.dlq_topic, out.letters),
            deliver(self.points_topic, out.points),
            self.state.write(out.writes),
        )
        if out.anomalies:
            await deliver(
                self.anomalies_topic,
                [(a.patient_id.encode(), wire.encode(a)) for a in out.anomalies],
            )
            self.metrics.anomalies_sent(out.anomalies)
            await self.state.write(out.cleared)
        if stream is not None:
            for event in out.events:
                await stream.ack(event)
        self.metrics.observe_batch(
            events=out.items, readings=out.readings, repeats=out.repeats, letters=out.letters
        )
        log = logger.info if out.letters or out.anomalies else logger.debug
        log(
            "batch: %d records, %d readings, %d judged, %d already seen, %d repeated,"
            " %d dead letters, %d anomalies sent",
            len(out.events),
            out.items,
            out.judged,
            out.items - len(out.readings) - len(out.letters),
            len(out.repeats),
            len(out.letters),
            len(out.anomalies),
        )

    async def _sweep(self) -> None:
        """Delete sealed dedup buckets older than the window (local store and changelog)."""
        owned = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == topics.MEASUREMENTS
        }
        now_ms = _ms(datetime.now(UTC))
        stale: list[tuple[int, str]] = []
        for key, raw in self.state.items():
            if not is_bucket_key(key):
                continue
            try:
                last_ms, partition = bucket_partition(raw)
            except (KeyError, TypeError, ValueError):
                continue
            if now_ms - last_ms >= self.window_ms and partition in owned:
                stale.append((partition, key))
        async with self._lock:
            await self._drain()
            await self.state.delete(stale)
        if stale:
            logger.info(
                "dedup sweep: %d buckets older than %.0fs deleted",
                len(stale),
                self.settings.dedup_window_s,
            )
