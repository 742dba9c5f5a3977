"""The processors Faust app: topics, tables and the agent, in that order.

Start a worker with ``python -m processors.main`` (or ``faust -A processors.app worker``).

The agent takes readings in batches (``stream.take_events``) and for each batch:

1. sends undecodable messages, and readings whose key is not their patient id, to
   ``pghd.dlq.v1`` as :class:`~pghd.contracts.DeadLetter` and awaits delivery;
2. drops readings already judged: the ``seen`` table holds each reading's key (patient,
   source vendor and device, ``event_id``: :mod:`processors.dedup`) for
   ``dedup_window_s`` (3 days), after which a sweep deletes it, and each patient's state
   records the Kafka position it holds readings up to (below);
3. loads the baselines the readings need, the patients' care plans (``care_plans`` table,
   fed by its own agent, :mod:`processors.care_plans`), latest NEWS2 vitals (``news2``
   table, :mod:`processors.news2_table`) and the rest of what judging remembers per patient
   (``patients`` table: steps and sleep timelines, open episodes, provisional findings,
   resting heart rates; :mod:`processors.patient_state`), and calls
   :func:`~processors.judging.judge` (readings repeated within the batch are judged once);
4. sends the anomalies the episodes emitted to ``pghd.anomalies.v1`` (key = patient id)
   and awaits delivery, each one only once (below);
5. publishes the batch's InfluxDB points (vitals, baselines, NEWS2 scores, anomalies) to
   ``pghd.points.v1``, one record per patient, and awaits Kafka's acknowledgement; the
   store stage (:mod:`processors.store`, its own consumer group) writes them to InfluxDB.
   Judging never waits on InfluxDB: with InfluxDB down or hung, anomalies still go out
   within a batch, and the points wait durably on the topic until it returns;
6. only then updates the ``baselines``, ``news2``, ``patients`` and ``seen`` tables, in that
   order (one record per patient in each of ``news2`` and ``patients``, whatever the batch
   held).

Faust acks the events of a batch, and so lets their offsets commit, only when the loop body
for that batch returns; every Kafka send retries until it succeeds, so nothing is acked
before its output is durable. A crash before step 6 (or before the offsets commit, every
``commit_interval_s``) replays the batch against the old baselines and republishes the same
points (InfluxDB overwrites a point with the same series and time).

The four table writes of a batch are not one atomic step either: a crash between them (or,
with the memory store, a changelog flushed for one table and not another) leaves a reading's
``seen`` mark without its effect on the patient's state, or the reverse. Skipping such a
reading as "seen" would lose its effect (an episode would end a reading late); judging it
again would count it twice. So each patient's record carries ``through``, the partition and
offset of the last reading it holds, and a replayed reading is skipped when it is at or
before that position, and judged again when its only mark is its own (same partition and
offset) beyond it (:func:`processors.dedup.is_repeat`). The patient's record is written
after the baselines and NEWS2 vitals and before the marks, so with the RocksDB store (whose
local writes are in that order) a crash between writes can at worst count one batch's
readings twice in a baseline (never twice in the patient's episode).

Anomalies are not re-emitted after a crash. Kafka cannot make "sent to the anomalies topic"
and "recorded in a table" one atomic step without transactions (which every consumer would
then have to read with ``read_committed``), so step 5 writes an *intent* per anomaly to the
``seen`` table (key ``anomaly|<anomaly_id>``, value ``{"intent_ms": ...}``; event ids
cannot contain ``|``), waits until the producer has flushed it to the changelog, and only
then sends; after Kafka acknowledged, it marks the intent ``"sent"``. (The ``seen`` table
and not a table of its own: each table adds a changelog topic, and a topic Faust creates
while a fresh group forms can be missing from the first assignment, which crashes the
agent with ``PartitionsMismatch``.) When a replayed batch yields an anomaly again:

- ``sent``: it went out before the crash; it is not sent again;
- an intent without ``sent``: the crash fell between the intent and the mark, so whether
  it went out is read from the anomalies topic itself (its partitions from
  ``intent_ms - verify_lookback_s`` to their end); it is sent only if it is not there;
- no intent: it was never sent (intents precede sends); it is sent.

An anomaly is thus never lost (a crash before the send leaves at most an intent, which is
checked) and never sent twice by this service; the price is one producer flush per batch
that has anomalies, and a topic read only on a replay that meets an unconfirmed intent.
A send whose reply the crash cut off is found by the check once the broker committed it;
only a write the leader had not yet replicated to the other in-sync replicas when the check
read the topic (invisible to readers until then) can still show up twice, so consumers
keep deduplicating on ``anomaly_id`` (the alerts service does). Decided against: Kafka
transactions (Faust's ``exactly_once`` guarantee; every reader of the anomalies topic would
need ``read_committed``, and InfluxDB writes stay outside any transaction anyway), and
leaving the dedup to consumers alone (the topic is the record other services and people
read, and the issue asks that it carry each anomaly once).

Consumer group membership: a worker that dies without leaving the group (SIGKILL, a lost
host) keeps its partitions until ``session_timeout_s`` passes; set it low (it must stay at
least the broker's ``group.min.session.timeout.ms``, 6 s by default) where fast takeover
matters more than tolerance of long pauses.

Table keys and values travel as JSON (plain dicts; no value_type, so Faust returns them as
they are). Tables write to the changelog partition (and local store) of the *current
event*; with a batch spanning several partitions each table access is therefore made on
behalf of the event that carried the reading (:func:`_on_behalf_of`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import faust
import faust.streams
from faust.types import EventT
from kafka import KafkaConsumer, TopicPartition

from pghd import stall_watchdog, topics, wire
from pghd.contracts import Anomaly, DeadLetter, Measurement
from pghd.faust_fixes import apply as apply_faust_fixes
from processors.baseline import BaselineState
from processors.care_plans import CarePlanBook
from processors.codec import CODEC_NAME, Undecodable
from processors.dedup import (
    ANOMALY_PREFIX,
    entry,
    expired_entries,
    is_current,
    is_repeat,
    reading_key,
)
from processors.judge import state_keys
from processors.judging import judge
from processors.metrics import install_metrics
from processors.news2_table import News2Table
from processors.patient_state import PatientState
from processors.settings import ProcessorSettings
from processors.store.records import encode_records
from processors.store.service import store_service

__all__ = [
    "STAGE",
    "anomalies_topic",
    "app",
    "baselines",
    "dlq_topic",
    "emitted_key",
    "measurements",
    "seen",
]

logger = logging.getLogger(__name__)

STAGE = "processors"
MAX_SEND_BACKOFF_S = 30.0
VERIFY_TIMEOUT_S = 120.0

apply_faust_fixes()  # faust-streaming #596: seek after recovery; pghd/faust_fixes.py
settings = ProcessorSettings()  # type: ignore[call-arg]  # influx_token comes from env
params = settings.judge_params()
episode_policy = settings.episode_policy()
DEDUP_WINDOW_MS = int(settings.dedup_window_s * 1000)

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
    store=settings.store,
    datadir=settings.data_dir,
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.replication_factor,
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    broker_commit_every=settings.batch_size,
    broker_commit_interval=settings.commit_interval_s,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.heartbeat_interval_s,
    stream_wait_empty=True,
    web_port=settings.web_port,
    web_host=settings.web_host,
    web_bind=settings.web_host,
)

measurements = app.topic(
    topics.MEASUREMENTS, key_type=bytes, key_serializer="raw", value_serializer=CODEC_NAME
)
anomalies_topic = app.topic(topics.ANOMALIES, key_type=bytes, value_type=bytes)
points_topic = app.topic(topics.POINTS, key_type=bytes, value_type=bytes)
dlq_topic = app.topic(topics.DLQ, key_type=bytes, value_type=bytes)

baselines = app.Table(
    "baselines",
    partitions=settings.topic_partitions,
    key_type=str,
    help="patient_id|channel -> BaselineState.to_dict()",
)
seen = app.Table(
    "seen",
    partitions=settings.topic_partitions,
    key_type=str,
    help='<patient_id>|<digest of source, device, event_id> -> {"t": ms, "p": partition},'
    ' for readings already judged; anomaly|<anomaly_id> -> {"intent_ms": ms, "p": partition'
    '[, "sent": true]}, for anomalies being or already sent; both expire (processors.dedup)',
)
# Care plans (pghd.care-plans.v1 -> table, own agent) and latest NEWS2 vitals per patient.
care_plans = CarePlanBook(
    app,
    partitions=settings.topic_partitions,
    dlq=dlq_topic,
    deliver=lambda topic, messages: _deliver(topic, messages),
)
news2_states = News2Table(app, partitions=settings.topic_partitions)
patients = app.Table(
    "patients",
    partitions=settings.topic_partitions,
    key_type=str,
    help="patient_id -> PatientState.to_dict(): steps and sleep timelines, open episodes,"
    " provisional findings, recent heart rates, nightly resting heart rates",
)
# Prometheus metrics at /metrics on the Faust web server (processors.metrics).
metrics = install_metrics(
    app,
    bootstrap=settings.kafka_bootstrap,
    group=settings.app_id,
    topics=[topics.MEASUREMENTS],
    lag_interval_s=settings.metrics_lag_interval_s,
    more_groups=[(settings.store_group_id, [topics.POINTS])] if settings.store_in_worker else [],
)
stall_watchdog.install(
    app,
    topics={topics.MEASUREMENTS, topics.CARE_PLANS},
    after_s=settings.stall_reseek_after_s,
    clock=time.monotonic,
    on_reseek=lambda topic: metrics.partitions_reread.labels(topic=topic).inc(),
)
# The store stage (pghd.points.v1 -> InfluxDB), in its own consumer group, in this process.
if settings.store_in_worker:
    app.service(store_service(settings, counters=metrics))


@contextmanager
def _on_behalf_of(event: EventT[Any]) -> Iterator[None]:
    """Make ``event`` current, so table reads and writes use its partition."""
    # Faust keeps the current event in this context variable; its public setter lives on
    # Stream and also rebinds Stream.current_event, which take_events() relies on.
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


async def _deliver(topic: faust.TopicT, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Send ``(key, value)`` messages and wait until Kafka acknowledged all, retrying."""
    attempt = 0
    while messages:
        attempt += 1
        try:
            futures = [await topic.send(key=key, value=value) for key, value in messages]
            await asyncio.gather(*futures)
            return
        except Exception as exc:
            delay = min(MAX_SEND_BACKOFF_S, 0.2 * 2 ** min(attempt, 10))
            logger.warning(
                "sending %d messages to %s failed (attempt %d, retry in %.1fs): %r",
                len(messages),
                topic.get_topic_name(),
                attempt,
                delay,
                exc,
            )
            await asyncio.sleep(delay)


def _dead_letter(event: EventT[Any], reason: str, *, now: datetime) -> tuple[bytes, bytes]:
    message = event.message
    value = event.value
    payload = value.payload if isinstance(value, Undecodable) else (message.value or b"")
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


def _triage(
    events: Sequence[EventT[Any]], *, now: datetime
) -> tuple[list[tuple[EventT[Any], Measurement]], list[tuple[bytes, bytes]]]:
    """Split a batch into readings and dead letters."""
    readings: list[tuple[EventT[Any], Measurement]] = []
    letters: list[tuple[bytes, bytes]] = []
    for event in events:
        value = event.value
        if isinstance(value, Undecodable):
            letters.append(_dead_letter(event, value.reason, now=now))
        elif not isinstance(value, Measurement):
            letters.append(_dead_letter(event, f"unexpected {type(value).__name__}", now=now))
        elif event.message.key != value.patient_id.encode():
            reason = "message key must be the reading's patient_id"
            letters.append(_dead_letter(event, reason, now=now))
        else:
            readings.append((event, value))
    return readings, letters


def _unseen(
    readings: Sequence[tuple[EventT[Any], Measurement]],
    states: Mapping[str, PatientState],
    *,
    now: datetime,
) -> list[tuple[EventT[Any], Measurement]]:
    """``readings`` without those judged already (:func:`processors.dedup.is_repeat`)."""
    kept: list[tuple[EventT[Any], Measurement]] = []
    for event, reading in readings:
        with _on_behalf_of(event):
            mark = seen.get(reading_key(reading))
        if not is_repeat(
            mark,
            partition=event.message.partition,
            offset=event.message.offset,
            through=states[reading.patient_id].through,
            now_ms=_ms(now),
            window_ms=DEDUP_WINDOW_MS,
        ):
            kept.append((event, reading))
    return kept


def _load_states(readings: Sequence[tuple[EventT[Any], Measurement]]) -> dict[str, BaselineState]:
    states: dict[str, BaselineState] = {}
    for event, reading in readings:
        with _on_behalf_of(event):
            for key in state_keys(reading):
                if key in states:
                    continue
                raw = baselines.get(key)
                if raw is None:
                    continue
                try:
                    states[key] = BaselineState.from_dict(raw)
                except (KeyError, TypeError, ValueError):
                    logger.warning("baseline %s is unreadable; starting it afresh", key)
    return states


def _load_patients(
    readings: Sequence[tuple[EventT[Any], Measurement]],
) -> dict[str, PatientState]:
    found: dict[str, PatientState] = {}
    for event, reading in readings:
        pid = reading.patient_id
        if pid in found:
            continue
        with _on_behalf_of(event):
            raw = patients.get(pid)
        try:
            found[pid] = PatientState() if raw is None else PatientState.from_dict(raw)
        except (KeyError, TypeError, ValueError):
            logger.warning("patient state of %s is unreadable; starting it afresh", pid)
            found[pid] = PatientState()
    return found


def _last_event_of_each_patient(
    readings: Sequence[tuple[EventT[Any], Measurement]],
) -> dict[str, EventT[Any]]:
    """Each patient's event with the highest offset (a patient's readings share a partition)."""
    last: dict[str, EventT[Any]] = {}
    for event, reading in readings:
        held = last.get(reading.patient_id)
        if held is None or event.message.offset > held.message.offset:
            last[reading.patient_id] = event
    return last


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def emitted_key(anomaly_id: str) -> str:
    """Key of an anomaly's send intent in the ``seen`` table."""
    return f"{ANOMALY_PREFIX}{anomaly_id}"


def _scan_anomaly_ids(wanted: set[str], *, since_ms: int) -> set[str]:
    """Which of ``wanted`` are on the anomalies topic at or after ``since_ms`` (blocking)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        client_id=f"{settings.app_id}-verify",
    )
    try:
        numbers = consumer.partitions_for_topic(topics.ANOMALIES) or set()
        parts = [TopicPartition(topics.ANOMALIES, p) for p in sorted(numbers)]
        consumer.assign(parts)
        starts = consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
        ends = consumer.end_offsets(parts)
        todo = {tp for tp in parts if starts.get(tp) is not None}
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        found: set[str] = set()
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topics.ANOMALIES} not read to its end in time")
            for messages in consumer.poll(timeout_ms=1000).values():
                for message in messages:
                    if message.value is None:
                        continue
                    try:
                        anomaly_id = wire.decode(Anomaly, message.value).anomaly_id
                    except ValueError:
                        continue
                    if anomaly_id in wanted:
                        found.add(anomaly_id)
            todo = {tp for tp in todo if consumer.position(tp) < ends[tp]}
        return found
    finally:
        consumer.close()


async def _read_anomaly_ids(wanted: set[str], *, since_ms: int) -> set[str]:
    """:func:`_scan_anomaly_ids` in a thread, retried until it succeeds."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.to_thread(_scan_anomaly_ids, wanted, since_ms=since_ms)
        except Exception as exc:
            delay = min(MAX_SEND_BACKOFF_S, 0.2 * 2 ** min(attempt, 10))
            logger.warning(
                "reading %s to check %d anomalies failed (attempt %d, retry in %.1fs): %r",
                topics.ANOMALIES,
                len(wanted),
                attempt,
                delay,
                exc,
            )
            await asyncio.sleep(delay)


async def _send_anomalies_once(
    anomalies: Sequence[Anomaly], patient_event: Mapping[str, EventT[Any]]
) -> int:
    """Step 5: send each anomaly not already sent; return how many were held back."""
    if not anomalies:
        return 0
    to_send: list[Anomaly] = []
    unconfirmed: dict[str, int] = {}
    held = 0
    now_ms = _ms(datetime.now(UTC))
    for anomaly in anomalies:
        with _on_behalf_of(patient_event[anomaly.patient_id]):
            mark = seen.get(emitted_key(anomaly.anomaly_id))
        if mark is None or not is_current(mark, now_ms=now_ms, window_ms=DEDUP_WINDOW_MS):
            to_send.append(anomaly)
        elif mark.get("sent"):
            held += 1
        else:
            unconfirmed[anomaly.anomaly_id] = int(mark["intent_ms"])
    if unconfirmed:
        since_ms = min(unconfirmed.values()) - int(settings.verify_lookback_s * 1000)
        out = await _read_anomaly_ids(set(unconfirmed), since_ms=since_ms)
        logger.info(
            "replay: %d anomalies had an unconfirmed send, %d of them are on %s already",
            len(unconfirmed),
            len(out),
            topics.ANOMALIES,
        )
        held += len(out)
        to_send += [a for a in anomalies if a.anomaly_id in unconfirmed.keys() - out]
    if held:
        logger.info("replay: %d anomalies were sent before a restart; not sent again", held)

    intent_ms = _ms(datetime.now(UTC))
    for anomaly in to_send:
        event = patient_event[anomaly.patient_id]
        with _on_behalf_of(event):
            seen[emitted_key(anomaly.anomaly_id)] = _intent(intent_ms, event)
    if to_send:
        await app.producer.flush()  # the intents are in the changelog before any send
    await _deliver(anomalies_topic, [(a.patient_id.encode(), wire.encode(a)) for a in to_send])
    metrics.anomalies_sent(to_send)
    for anomaly in to_send:
        event = patient_event[anomaly.patient_id]
        with _on_behalf_of(event):
            seen[emitted_key(anomaly.anomaly_id)] = {**_intent(intent_ms, event), "sent": True}
    return held


def _intent(intent_ms: int, event: EventT[Any]) -> dict[str, Any]:
    return {"intent_ms": intent_ms, "p": event.message.partition}


async def process_batch(events: Sequence[EventT[Any]]) -> None:
    """Steps 1-6 of the module docstring for one batch of events."""
    now = datetime.now(UTC)
    decoded, letters = _triage(events, now=now)
    loaded = _load_patients(decoded)
    readings = _unseen(decoded, loaded, now=now)
    judged = {reading.patient_id for _, reading in readings}
    result = judge(
        _load_states(readings),
        [r for _, r in readings],
        params=params,
        now=now,
        plans=care_plans.plans_for(readings, within=_on_behalf_of),
        news2_states=news2_states.load(readings, within=_on_behalf_of),
        patients={pid: state for pid, state in loaded.items() if pid in judged},
        policy=episode_policy,
    )
    if result.failed:
        by_id = {reading.event_id: event for event, reading in readings}
        letters += [_dead_letter(by_id[eid], reason, now=now) for eid, reason in result.failed]
        failed = {eid for eid, _ in result.failed}
        readings = [(e, r) for e, r in readings if r.event_id not in failed]
    await _deliver(dlq_topic, letters)
    patient_event = _last_event_of_each_patient(readings)
    held = await _send_anomalies_once(result.anomalies, patient_event)
    await _deliver(points_topic, encode_records(result.points()))

    # The patient's record, which says how far it reaches, goes after the baselines and
    # NEWS2 vitals and before the seen marks: processors.dedup.is_repeat.
    for key, state in result.states.items():
        with _on_behalf_of(patient_event[key.split("|", 1)[0]]):
            baselines[key] = state.to_dict()
    news2_states.store(result.news2, patient_event=patient_event, within=_on_behalf_of)
    for pid, patient in result.patients.items():
        if pid in patient_event:
            event = patient_event[pid]
            patient.through = (event.message.partition, event.message.offset)
            with _on_behalf_of(event):
                patients[pid] = patient.to_dict()
    judged_at = _ms(now)
    for event, reading in readings:
        with _on_behalf_of(event):
            message = event.message
            seen[reading_key(reading)] = entry(
                now_ms=judged_at, partition=message.partition, offset=message.offset
            )

    metrics.observe_batch(
        events=len(events),
        readings=[r for _, r in readings],
        repeats=result.duplicates,
        letters=letters,
    )
    log = logger.info if letters or result.anomalies else logger.debug
    log(
        "batch: %d events, %d judged, %d already seen, %d repeated, %d dead letters,"
        " %d anomalies sent",
        len(events),
        len(readings) - len(result.duplicates),
        len(events) - len(readings) - len(letters),
        len(result.duplicates),
        len(letters),
        len(result.anomalies) - held,
    )


@app.agent(measurements)
async def judge_measurements(stream: faust.StreamT[Any]) -> None:
    """Judge readings batch by batch; see the module docstring for the steps."""
    batches = cast("faust.Stream[Any]", stream).take_events(
        settings.batch_size, within=settings.batch_within_s
    )
    async for events in batches:
        await process_batch(events)


@app.timer(interval=settings.dedup_sweep_s)  # type: ignore[untyped-decorator]
async def sweep_seen() -> None:
    """Delete ``seen`` entries older than the dedup window (local store and changelog)."""
    owned = {
        tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.MEASUREMENTS
    }
    now_ms = _ms(datetime.now(UTC))
    stale = expired_entries(
        list(seen.data.items()), now_ms=now_ms, window_ms=DEDUP_WINDOW_MS, owned=owned
    )
    for key, partition in stale:
        seen.data.pop(key, None)
        seen.send_changelog(partition, key, None, value_serializer="raw")
    if stale:
        logger.info(
            "dedup sweep: %d entries older than %.0fs deleted", len(stale), settings.dedup_window_s
        )
