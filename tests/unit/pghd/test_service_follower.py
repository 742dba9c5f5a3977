"""The follower of compacted topics against an in-memory log: reads from the beginning, is
ready once caught up, skips unreadable records, and resumes where it stopped after Kafka
went away."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from pghd.service.follower import CompactedFollower, Outcome

TOPIC = "pghd.test.v1"
P0 = TopicPartition(TOPIC, 0)
P1 = TopicPartition(TOPIC, 1)


@dataclass
class Model:
    ready: bool = False
    values: dict[bytes, bytes] = field(default_factory=dict)
    applied: list[tuple[int, bytes]] = field(default_factory=list)

    def apply(self, tp: TopicPartition, record: Any) -> None:
        if record.value == b"bad":
            raise ValueError("unreadable")
        self.values[record.key] = record.value
        self.applied.append((tp.partition, record.offset))


class Log:
    """The topic's records per partition, and the consumers made to read it."""

    def __init__(self, **records: list[bytes]) -> None:
        self.records: dict[TopicPartition, list[Any]] = {P0: [], P1: []}
        self.consumers: list[FakeConsumer] = []
        self.fail_after: int | None = None  # the next consumer fails after this many records
        for name, values in records.items():
            for value in values:
                self.append(P0 if name == "p0" else P1, value)

    def append(self, tp: TopicPartition, value: bytes) -> None:
        offset = len(self.records[tp])
        self.records[tp].append(SimpleNamespace(key=value[:1], value=value, offset=offset))

    def consumer(self) -> FakeConsumer:
        consumer = FakeConsumer(self, fail_after=self.fail_after)
        self.fail_after = None
        self.consumers.append(consumer)
        return consumer

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        assert list(topics) == [TOPIC]
        return [P0, P1]


class FakeConsumer:
    def __init__(self, log: Log, *, fail_after: int | None) -> None:
        self.log = log
        self.fail_after = fail_after
        self.positions: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.positions[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.records[tp]) for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        batches: dict[TopicPartition, list[Any]] = {}
        for tp, position in self.positions.items():
            records = self.log.records[tp][position : position + 1]  # one at a time
            if records:
                if self.fail_after is not None:
                    if self.fail_after == 0:
                        raise ConnectionError("broker gone")
                    self.fail_after -= 1
                batches[tp] = records
                self.positions[tp] = position + len(records)
        if not batches:
            await asyncio.sleep(0.005)
        return batches


def follow(log: Log, model: Model, **options: Any) -> CompactedFollower:
    options.setdefault("partitions", log.partitions)
    return CompactedFollower(
        bootstrap="unused:0",
        topics=[TOPIC],
        model=model,
        apply=model.apply,
        client_id="pghd-test",
        consumer_factory=log.consumer,
        reconnect_backoff_s=(0.01, 0.05),
        **options,
    )


async def eventually(condition: Any) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.005)


async def test_ready_once_caught_up_then_keeps_following() -> None:
    log = Log(p0=[b"a1", b"b1"], p1=[b"c1"])
    model = Model()
    readied: list[int] = []
    outcomes: list[tuple[str, Outcome]] = []
    follower = follow(
        log,
        model,
        on_ready=lambda: readied.append(len(model.applied)),
        on_record=lambda topic, outcome: outcomes.append((topic, outcome)),
    )
    await follower.start()
    await eventually(lambda: model.ready)
    assert readied == [3], "ready only after everything there at startup was read"
    log.append(P0, b"a2")
    await eventually(lambda: model.values.get(b"a") == b"a2")
    assert outcomes == [(TOPIC, "applied")] * 4
    await follower.stop()
    assert log.consumers[0].stopped
    assert readied == [3]


async def test_an_unreadable_record_is_skipped_and_counted() -> None:
    log = Log(p0=[b"a1", b"bad", b"a2"])
    model = Model()
    outcomes: list[Outcome] = []
    follower = follow(log, model, on_record=lambda _topic, outcome: outcomes.append(outcome))
    await follower.start()
    await eventually(lambda: model.ready)
    await follower.stop()
    assert outcomes == ["applied", "invalid", "applied"]
    assert model.values == {b"a": b"a2"}


async def test_after_kafka_went_away_it_resumes_where_it_stopped() -> None:
    log = Log(p0=[b"a1", b"a2", b"a3"])
    log.fail_after = 2
    model = Model()
    follower = follow(log, model)
    await follower.start()
    await eventually(lambda: model.ready)
    await follower.stop()
    assert len(log.consumers) == 2 and log.consumers[0].stopped
    assert log.consumers[1].seeks == [(P0, 2)], "the new consumer starts after what was read"
    assert model.applied == [(0, 0), (0, 1), (0, 2)], "nothing applied twice, nothing lost"


async def test_a_missing_topic_is_retried() -> None:
    log = Log(p0=[b"a1"])
    asked: list[int] = []

    async def partitions(topics: Sequence[str]) -> list[TopicPartition]:
        asked.append(1)
        if len(asked) == 1:
            raise RuntimeError(f"topic {TOPIC} does not exist (yet)")
        return await log.partitions(topics)

    model = Model()
    follower = follow(log, model, partitions=partitions)
    await follower.start()
    await eventually(lambda: model.ready)
    await follower.stop()
    assert len(asked) == 2 and model.values == {b"a": b"a1"}
