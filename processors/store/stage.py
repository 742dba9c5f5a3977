"""The store stage's consumer loop: ``pghd.points.v1`` → InfluxDB, offsets after durability.

:class:`StoreStage` reads ``pghd.points.v1`` in its own consumer group (``store_group``), so
it falls behind alone: the judging agent, in the processors group, never waits for it.
For each polled batch it:

1. decodes the records; one that is not a points record (or a malformed erasure marker)
   goes to ``pghd.dlq.v1`` and is counted (``dead_letters_total``);
2. writes their lines with :func:`~processors.store.isolate.write_isolating`: a line
   InfluxDB refuses for good (beyond retention, field type conflict, malformed) goes to
   ``pghd.dlq.v1`` with InfluxDB's reason, and the others are stored;
3. retries a transient failure (no answer, timeout, 429, 5xx; also 401/403/404, which an
   operator must mend) with capped exponential backoff and jitter, for as long as it takes:
   between attempts it pauses its partitions and keeps polling, so it stays in its group
   (``max.poll.interval.ms``) and hands partitions over cleanly on a rebalance;
   An erasure marker (:mod:`pghd.erasure`) among the records is handled in its place: the
   lines before it are written, then every point of its patient is deleted from InfluxDB
   (retried like a write) and the deletion reported to ``pghd.audit.v1``;
4. waits until Kafka acknowledged the dead letters, then commits the batch's offsets
   (only for partitions it still owns; a partition that moved is re-read by its new
   owner, and re-writing points is harmless).

A crash anywhere before the commit re-reads the batch: points are stored at least once,
and a point written twice is one point (same series, field and time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from pghd import kafka_security, topics, wire
from pghd.contracts import DeadLetter
from pghd.erasure import ErasureMarker, decode_marker, is_marker, stage_event
from pghd.kafka_security import KafkaSecurity
from processors.store.isolate import Refused, Write, write_isolating
from processors.store.outcome import Outcome, classify, describe
from processors.store.records import decode_record

__all__ = ["STAGE", "Erase", "StoreCounters", "StoreStage", "backoff_s"]

logger = logging.getLogger(__name__)

STAGE = "store"

T = TypeVar("T")

#: Deletes every point of a patient from InfluxDB; returns what it removed, counted.
Erase = Callable[[str], Awaitable[dict[str, int]]]


class _Stopped(Exception):
    """Raised out of a retry loop when the stage is asked to stop."""


class StoreCounters(Protocol):
    """What the stage counts (:class:`processors.metrics.ProcessorMetrics` implements it)."""

    def store_written(self, *, lines: int, seconds: float) -> None: ...
    def store_failed(self, *, outcome: str) -> None: ...
    def store_refused(self, *, lines: int) -> None: ...
    def dead_lettered(self, letters: Sequence[tuple[bytes, bytes]]) -> None: ...


def backoff_s(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Delay before retry ``attempt`` (1-based): ``base * 2**(attempt-1)`` capped at
    ``cap``, scaled by ``jitter`` (a factor drawn from [0.8, 1.2])."""
    return float(min(cap_s, base_s * 2.0 ** min(attempt - 1, 30)) * jitter)


@dataclass(slots=True)
class _Origin:
    tp: TopicPartition
    offset: int
    key: str | None


@dataclass(slots=True)
class _Batch:
    lines: list[str] = field(default_factory=list)
    origins: list[_Origin] = field(default_factory=list)
    letters: list[tuple[bytes, bytes]] = field(default_factory=list)
    # (how many lines come before it, where it came from, the marker)
    erasures: list[tuple[int, _Origin, ErasureMarker]] = field(default_factory=list)


class StoreStage:
    """One store consumer; run it with :meth:`run`, stop it with :meth:`stop`."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group: str,
        write: Write,
        counters: StoreCounters,
        erase: Erase | None = None,
        max_records: int = 500,
        chunk: int = 5000,
        base_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        client_id: str = "pghd-store",
        security: KafkaSecurity | None = None,
    ) -> None:
        self._bootstrap = bootstrap.split(",")
        self._security = security or kafka_security.current()
        self._group = group
        self._write = write
        self._erase = erase
        self._counters = counters
        self._max_records = max_records
        self._chunk = chunk
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._client_id = client_id
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (its offsets committed)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`. Any failure of the Kafka clients (the broker gone,
        a commit refused mid-rebalance) closes them and starts afresh after a backoff, from
        the last committed offsets: the stage never stops while the worker runs."""
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            try:
                await self._session()
                return
            except _Stopped:
                logger.info("store stage stopped with a batch unwritten; it is re-read later")
                return
            except Exception as exc:
                delay = self._delay(min(attempt, 8))
                logger.error(
                    "store stage lost its Kafka clients (%r); starting them again in %.1fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        auth = self._security.aiokafka()
        self._consumer = consumer = AIOKafkaConsumer(
            topics.POINTS,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._max_records,
            **auth,
        )
        self._producer = producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-dlq",
            acks="all",
            enable_idempotence=True,
            **auth,
        )
        try:
            await producer.start()
            await consumer.start()
            while not self._stopping.is_set():
                got = await consumer.getmany(timeout_ms=500)
                if got:
                    await self._store(got)
        finally:
            for client in (consumer, producer):
                with contextlib.suppress(Exception):
                    await client.stop()

    def _delay(self, attempt: int) -> float:
        jitter = random.uniform(0.8, 1.2)
        return backoff_s(
            attempt, base_s=self._base_backoff_s, cap_s=self._max_backoff_s, jitter=jitter
        )

    async def _store(self, got: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        batch = _collect(got)
        if batch.letters:  # records that are not what the topic's contract says
            self._counters.dead_lettered(batch.letters)
        started = time.perf_counter()
        refused: list[Refused] = []
        done = 0
        for before, origin, marker in batch.erasures:  # the lines before each, then it
            segment = await self._write_until_done(batch.lines[done:before])
            refused += [replace(item, index=item.index + done) for item in segment]
            done = before
            await self._erase_patient(origin, marker)
        segment = await self._write_until_done(batch.lines[done:])
        refused += [replace(item, index=item.index + done) for item in segment]
        if refused:
            now = datetime.now(UTC)
            for item in refused:
                origin = batch.origins[item.index]
                reason = f"InfluxDB refused the point: {item.reason}"
                batch.letters.append(_letter(origin, payload=item.line, reason=reason, now=now))
                logger.error(
                    "point from %s[%d]@%d refused by InfluxDB, sent to %s: %s",
                    origin.tp.topic,
                    origin.tp.partition,
                    origin.offset,
                    topics.DLQ,
                    item.reason,
                )
            self._counters.store_refused(lines=len(refused))
        self._counters.store_written(
            lines=len(batch.lines) - len(refused), seconds=time.perf_counter() - started
        )
        await self._dead_letter(batch.letters)
        await self._commit(got)

    async def _write_until_done(self, lines: Sequence[str]) -> list[Refused]:
        if not lines:
            return []
        return await self._until_done(
            lambda: write_isolating(lines, write=self._write, chunk=self._chunk),
            what=f"InfluxDB write of {len(lines)} points",
        )

    async def _until_done(self, call: Callable[[], Awaitable[T]], *, what: str) -> T:
        """``call()`` until it succeeds: a failure is counted, logged (an error when an
        operator must mend it, or from the fifth attempt) and retried after a backoff spent
        polling paused partitions; raises :class:`_Stopped` if the stage stops meanwhile."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except Exception as exc:
                outcome = classify(exc)
                self._counters.store_failed(outcome=outcome.value)
                delay = self._delay(attempt)
                level = (
                    logging.ERROR
                    if outcome is Outcome.CONFIGURATION or attempt >= 5
                    else logging.WARNING
                )
                logger.log(
                    level,
                    "%s failed (%s, attempt %d, retry in %.1fs): %s",
                    what,
                    outcome.value,
                    attempt,
                    delay,
                    describe(exc),
                )
                await self._idle(delay)
                if self._stopping.is_set():
                    raise _Stopped from exc

    async def _erase_patient(self, origin: _Origin, marker: ErasureMarker) -> None:
        """Delete the patient's points (retrying like a write), then report it on
        ``pghd.audit.v1``; a stage without an eraser reports that it could not."""
        now = datetime.now(UTC)
        if origin.key != marker.patient_id:
            reason = "message key must be the erasure marker's patient_id"
            letter = _letter(origin, payload=wire.encode(marker).decode(), reason=reason, now=now)
            await self._send_all(topics.DLQ, [letter])
            self._counters.dead_lettered([letter])
            return
        failed: str | None = None
        removed: dict[str, int] = {}
        if self._erase is None:
            failed = "this store stage has no eraser configured"
        else:
            erase = self._erase
            removed = await self._until_done(
                lambda: erase(marker.patient_id),
                what=f"erasure {marker.erasure_id}: InfluxDB delete",
            )
        report = stage_event(
            marker,
            stage=STAGE,
            resource="influxdb",
            removed=removed,
            recorded=datetime.now(UTC),
            failed=failed,
        )
        await self._send_all(topics.AUDIT, [(marker.patient_id.encode(), wire.encode(report))])
        logger.info("erasure %s: %s", marker.erasure_id, failed or removed)

    async def _idle(self, delay_s: float) -> None:
        """Wait ``delay_s`` while polling paused partitions, so the group keeps us."""
        consumer = self._consumer
        assert consumer is not None
        held = list(consumer.assignment())
        consumer.pause(*held)
        deadline = time.monotonic() + delay_s
        try:
            while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                got = await consumer.getmany(timeout_ms=max(1, int(min(left, 1.0) * 1000)))
                for tp, records in got.items():  # newly assigned while paused: read them later
                    consumer.seek(tp, records[0].offset)
                    consumer.pause(tp)
                    held.append(tp)
        finally:
            consumer.resume(*[tp for tp in consumer.paused() if tp in held])

    async def _dead_letter(self, letters: Sequence[tuple[bytes, bytes]]) -> None:
        await self._send_all(topics.DLQ, letters)

    async def _send_all(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Send ``records`` to ``topic`` and wait for their acknowledgements, retrying."""
        if not records:
            return
        producer = self._producer
        assert producer is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                sent = [await producer.send(topic, key=k, value=v) for k, v in records]
                await asyncio.gather(*sent)
                return
            except KafkaError as exc:
                delay = self._delay(attempt)
                logger.warning(
                    "send of %d records to %s failed (%r); retry in %.1fs",
                    len(records),
                    topic,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _commit(self, got: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        owned = consumer.assignment()
        offsets = {tp: records[-1].offset + 1 for tp, records in got.items() if tp in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            logger.warning(
                "store offsets not committed (partitions moved: %r); re-read by their owner", exc
            )


def _collect(got: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> _Batch:
    batch = _Batch()
    now = datetime.now(UTC)
    for tp, records in got.items():
        for record in records:
            key = None if record.key is None else record.key.decode("utf-8", "backslashreplace")
            origin = _Origin(tp=tp, offset=record.offset, key=key)
            if is_marker(record.value):
                try:
                    batch.erasures.append((len(batch.lines), origin, decode_marker(record.value)))
                except ValueError as exc:
                    payload = (record.value or b"").decode("utf-8", "backslashreplace")
                    batch.letters.append(_letter(origin, payload=payload, reason=str(exc), now=now))
                continue
            try:
                decoded = decode_record(record.value)
            except ValueError as exc:
                payload = (record.value or b"").decode("utf-8", "backslashreplace")
                reason = f"not a points record: {' '.join(str(exc).split())[:300]}"
                batch.letters.append(_letter(origin, payload=payload, reason=reason, now=now))
                continue
            batch.lines.extend(decoded.lines)
            batch.origins.extend([origin] * len(decoded.lines))
    return batch


def _letter(origin: _Origin, *, payload: str, reason: str, now: datetime) -> tuple[bytes, bytes]:
    letter = DeadLetter(
        stage=STAGE,
        reason=reason,
        topic=origin.tp.topic,
        partition=origin.tp.partition,
        offset=origin.offset,
        key=origin.key,
        payload=payload,
        failed_at=now,
    )
    return (origin.key or "unkeyed").encode(), wire.encode(letter)
