"""The processors worker judges a batch while the batch before it is made durable.

Kafka is replaced by a gate here: this is the ordering of the agent loop and its batch in
flight inside one worker, no broker is involved (the integration tests run the same loop
against a real broker). What must hold:

* the next batch is judged while the one before still waits for Kafka;
* nothing of the next batch is sent, and nothing of either is acked, before the batch
  before it is durable (so offsets never commit ahead of what is stored);
* the next batch reads its patients' records as the batch in flight left them, even when
  the cache has no room for them and the table does not hold them yet.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from pghd import topics
from pghd.catalogue import Metric
from pghd.contracts import Measurement
from pghd.kafka_send import Outgoing
from processors import outbox, state_store
from processors.agents import Processors
from processors.app import build_app
from processors.settings import ProcessorSettings

from .conftest import MakeReading


class _Stream:
    """Hands the agent loop prepared batches, as ``noack_take`` does, and records acks."""

    def __init__(self, batches: Sequence[list[Any]]) -> None:
        self.batches = batches
        self.acked: list[int] = []

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        for batch in self.batches:
            yield batch
        await asyncio.Event().wait()  # a stream ends only when the worker stops

    async def wait_acked(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.acked) < count:
                await asyncio.sleep(0.01)

    async def ack(self, event: Any) -> bool:
        self.acked.append(event.message.offset)
        return True


class _Kafka:
    """Stands in for ``send_all``: records what is sent, answers once the gate opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.offset = 0

    async def send_all(self, producer: Any, messages: Sequence[Outgoing]) -> list[Any]:
        self.sent.extend((topic, key, value) for topic, key, value, _ in messages)
        await self.gate.wait()
        metas = []
        for _topic, _key, _value, partition in messages:
            self.offset += 1
            metas.append(SimpleNamespace(partition=partition or 0, offset=self.offset))
        return metas


class _Event:
    """A Faust event of one record holding ``value`` (Faust refers to events weakly)."""

    def __init__(self, message: SimpleNamespace, value: list[Measurement]) -> None:
        self.message = message
        self.value = value


def _event(offset: int, reading: Measurement) -> Any:
    message = SimpleNamespace(
        key=reading.patient_id.encode(),
        topic=topics.MEASUREMENTS,
        partition=0,
        offset=offset,
        value=b"",
    )
    return _Event(message, [reading])


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> tuple[Processors, _Kafka]:
    settings = ProcessorSettings(
        app_id=f"overlap-{uuid.uuid4().hex[:8]}",
        influx_token=SecretStr("unused"),
        state_cache_patients=1,  # the cache cannot hold a batch's two patients
        store_in_worker=False,
    )
    _app, processors = build_app(settings)
    kafka = _Kafka()
    monkeypatch.setattr(outbox, "send_all", kafka.send_all)
    monkeypatch.setattr(state_store, "send_all", kafka.send_all)
    return processors, kafka


def _vitals(kafka: _Kafka, patient: str) -> list[str]:
    """The InfluxDB ``vitals`` lines sent for ``patient`` (one per judged reading)."""
    return [
        line
        for topic, key, value in kafka.sent
        if topic == topics.POINTS and key == patient.encode() and value
        for line in json.loads(value)["lines"]
        if line.startswith("vitals,")
    ]


async def test_the_next_batch_is_judged_while_the_one_before_waits_for_kafka(
    worker: tuple[Processors, _Kafka], make_reading: MakeReading
) -> None:
    processors, kafka = worker
    first = [make_reading(70, patient_id="p-1"), make_reading(71, patient_id="p-2")]
    second = [make_reading(72, patient_id="p-1")]
    stream = _Stream([[_event(0, first[0]), _event(1, first[1])], [_event(2, second[0])]])
    prepared: list[int] = []
    prepare = processors.prepare

    async def counting(events: Sequence[Any]) -> Any:
        out = await prepare(events)
        prepared.append(len(kafka.sent))
        return out

    processors.prepare = counting  # type: ignore[method-assign]
    loop = asyncio.create_task(processors._judge_measurements(stream))  # type: ignore[arg-type]
    for _ in range(50):
        await asyncio.sleep(0)
    sent_by_first = len(kafka.sent)
    assert len(prepared) == 2, "the second batch waited for the first to be durable"
    assert stream.acked == [], "a batch was acked before Kafka acknowledged it"
    assert sent_by_first > 0
    assert [line.split(" ")[1] for line in _vitals(kafka, "p-1")] == ['event_id="e-0",value=70']

    kafka.gate.set()
    await stream.wait_acked(3)
    loop.cancel()
    assert stream.acked == [0, 1, 2]
    later = kafka.sent[sent_by_first:]
    assert any(topic == topics.POINTS and key == b"p-1" for topic, key, _ in later)


async def test_a_batch_reads_the_records_the_batch_in_flight_left(
    worker: tuple[Processors, _Kafka], make_reading: MakeReading
) -> None:
    processors, kafka = worker
    one, two = make_reading(70, patient_id="p-1"), make_reading(71, patient_id="p-2")
    three = make_reading(72, patient_id="p-1")
    # Kafka hands p-1's first record again (a redelivery) with the next one; the table
    # does not hold p-1's new record yet and the cache only has room for p-2.
    stream = _Stream([[_event(0, one), _event(1, two)], [_event(0, one), _event(2, three)]])
    loop = asyncio.create_task(processors._judge_measurements(stream))  # type: ignore[arg-type]
    for _ in range(50):
        await asyncio.sleep(0)
    kafka.gate.set()
    await stream.wait_acked(4)
    loop.cancel()
    assert len(_vitals(kafka, "p-1")) == 2, "the redelivered reading was judged twice"


async def test_the_next_batch_does_not_resend_the_anomalies_of_the_batch_in_flight(
    worker: tuple[Processors, _Kafka], make_reading: MakeReading
) -> None:
    processors, kafka = worker

    async def already_sent(*args: Any, **kwargs: Any) -> set[str]:
        raise AssertionError("the batch in flight's anomalies were settled as if left over")

    processors.outbox.already_sent = already_sent  # type: ignore[method-assign]
    low = make_reading(84, metric=Metric.SPO2, patient_id="p-1")  # critical on its own
    later = make_reading(96, metric=Metric.SPO2, patient_id="p-1")
    stream = _Stream([[_event(0, low)], [_event(1, later)]])
    loop = asyncio.create_task(processors._judge_measurements(stream))  # type: ignore[arg-type]
    for _ in range(50):
        await asyncio.sleep(0)
    kafka.gate.set()
    await stream.wait_acked(2)
    loop.cancel()
    assert len([t for t, key, _ in kafka.sent if t == topics.ANOMALIES and key == b"p-1"]) == 1
    records = [
        json.loads(value)
        for topic, key, value in kafka.sent
        if topic.endswith("-state-changelog") and key == b"p-1" and value
    ]
    assert [bool(r.get("intents")) for r in records] == [True, False, False]
