"""Records that fail their topic's contract are dropped, dead-lettered and counted.

Each input of the processors: a reading on ``pghd.measurements.v1`` (triage, after the
codec), a care plan on ``pghd.care-plans.v1`` (the care-plans agent), a points record on
``pghd.points.v1`` (the store stage). Whatever is wrong with one record, the others go on,
the bad one is on ``pghd.dlq.v1`` with its reason, and ``dead_letters_total{reason}`` counts
it under a bounded kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from pghd import topics, wire
from pghd.contracts import DeadLetter
from processors.agents import triage
from processors.care_plans import CarePlanBook
from processors.codec import decode_record
from processors.metrics import DEAD_LETTER_KINDS, ProcessorMetrics
from processors.points import InfluxPoint
from processors.store.records import encode_records
from processors.store.stage import StoreStage
from tests.unit.processors.conftest import MakeReading

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _count(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("dead_letters_total", {"reason": reason}) or 0.0


def _event(key: bytes | None, value: bytes | None, offset: int) -> Any:
    message = SimpleNamespace(
        key=key, value=value, topic=topics.MEASUREMENTS, partition=0, offset=offset
    )
    return SimpleNamespace(message=message, value=decode_record(value))


def _reasons(letters: Sequence[tuple[bytes, bytes]]) -> list[str]:
    return [wire.decode(DeadLetter, value).reason for _, value in letters]


def test_readings_failing_the_contract_are_dropped_dead_lettered_and_counted(
    make_reading: MakeReading,
) -> None:
    good = make_reading(70.0)
    impossible = make_reading(999.0)  # a heart rate no body has
    records = [
        (b"p-1", wire.encode(good)),
        (b"p-1", b"{not json"),
        (b"p-1", b'{"patient_id": "p-1", "metric": "heart_rate"}'),
        (b"p-1", wire.encode(impossible)),
        (b"p-2", wire.encode(make_reading(71.0))),  # keyed by another patient
        (b"p-1", None),  # a tombstone
        (b"p-1", b'{"kind":"erasure","patient_id":"p-1"}'),  # a malformed erasure marker
    ]
    events = [_event(key, value, offset) for offset, (key, value) in enumerate(records)]
    readings, letters = triage(events, now=NOW)

    assert [reading for _, reading in readings] == [good]
    assert len(letters) == len(records) - 1
    letter = wire.decode(DeadLetter, letters[0][1])
    assert (letter.stage, letter.topic, letter.offset) == ("processors", topics.MEASUREMENTS, 1)
    assert letter.payload == "{not json"

    metrics = ProcessorMetrics()
    metrics.observe_batch(events=len(records), readings=[good], repeats=[], letters=letters)
    kinds = {
        kind: _count(metrics.registry, kind)
        for kind in DEAD_LETTER_KINDS
        if _count(metrics.registry, kind)
    }
    assert kinds == {
        "undecodable": 1,
        "invalid": 1,
        "out_of_range": 1,
        "key_mismatch": 1,
        "tombstone": 1,
        "invalid_marker": 1,
    }, _reasons(letters)


def test_a_record_that_is_not_a_care_plan_is_dead_lettered_and_counted() -> None:
    app = faust.App("test-contract-care-plans", broker="kafka://127.0.0.1:1", store="memory://")
    sent: list[tuple[bytes, bytes]] = []

    async def deliver(topic: Any, messages: Sequence[tuple[bytes, bytes]]) -> None:
        sent.extend(messages)

    metrics = ProcessorMetrics()
    book = CarePlanBook(
        app, partitions=1, dlq=app.topic("dlq"), deliver=deliver, count=metrics.dead_lettered
    )
    book.table = {}  # type: ignore[assignment]
    for key, value in [(b"p-1", b'{"patient_id": "p-1", "spo2_scale": 5}'), (None, b"{}")]:
        message = SimpleNamespace(
            key=key, value=value, topic=topics.CARE_PLANS, partition=0, offset=7
        )
        asyncio.run(book.apply(SimpleNamespace(message=message, value=value)))

    assert book.table == {}
    assert len(sent) == 2
    assert _count(metrics.registry, "invalid_care_plan") == 1
    assert _count(metrics.registry, "key_mismatch") == 1


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, *, key: bytes | None, value: bytes | None) -> Any:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Consumer:
    def __init__(self, owned: set[TopicPartition]) -> None:
        self.owned = owned
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)


def _record(tp: TopicPartition, offset: int, key: bytes, value: bytes) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=(),
    )


def test_the_store_stage_dead_letters_and_counts_what_is_not_a_points_record() -> None:
    tp = TopicPartition(topics.POINTS, 0)
    point = InfluxPoint(
        "vitals", {"patient_id": "p-1", "metric": "heart_rate"}, {"value": 70.0}, NOW
    )
    ((key, good),) = encode_records([point])
    written: list[list[str]] = []

    async def write(lines: Sequence[str]) -> None:
        written.append(list(lines))

    metrics = ProcessorMetrics()
    stage = StoreStage(bootstrap="127.0.0.1:1", group="g", write=write, counters=metrics)
    producer, consumer = _Producer(), _Consumer({tp})
    stage._producer = producer  # type: ignore[assignment]
    stage._consumer = consumer  # type: ignore[assignment]
    got = {tp: [_record(tp, 10, b"p-1", b"not a points record"), _record(tp, 11, key, good)]}

    asyncio.run(stage._store(got))

    assert len(written) == 1 and len(written[0]) == 1  # the good record's point is stored
    ((topic, _, value),) = producer.sent
    assert topic == topics.DLQ
    letter = wire.decode(DeadLetter, value or b"")
    assert (letter.stage, letter.offset) == ("store", 10)
    assert letter.reason.startswith("not a points record")
    assert _count(metrics.registry, "invalid_points") == 1
    assert consumer.committed == {tp: 12}  # the partition moves on
