"""The command producer: key = patient id, acknowledged sends, 503-worthy failures
(the gateway it is built on: tests/unit/pghd/test_service_producer.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from alerts.api.commands import KafkaCommandProducer
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind
from pghd.service.producer import KafkaUnavailable
from pghd.topics import ALERT_COMMANDS

COMMAND = AlertCommand(
    command_id="c1",
    kind=CommandKind.ACKNOWLEDGE,
    patient_id="patient-001",
    alert_id="al-1",
    by="nurse",
    issued_at=datetime.now(UTC),
)


class FakeProducer:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.sent: list[dict[str, Any]] = []
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, **record: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            future.set_exception(self.failure)
        else:
            self.sent.append({"topic": topic, **record})
            future.set_result(None)
        return future


async def _connected(producer: KafkaCommandProducer) -> None:
    await producer.start()
    for _ in range(100):
        if producer.connected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never connected")


async def test_sends_keyed_by_patient() -> None:
    fake = FakeProducer()
    producer = KafkaCommandProducer(
        bootstrap="unused:1", client_id="t", producer_factory=lambda: fake
    )
    with pytest.raises(KafkaUnavailable):
        await producer.send(COMMAND)  # not connected yet
    await _connected(producer)
    await producer.send(COMMAND)
    [record] = fake.sent
    assert record["topic"] == ALERT_COMMANDS
    assert record["key"] == b"patient-001"
    assert wire.decode(AlertCommand, record["value"]) == COMMAND
    await producer.stop()
    assert fake.stopped


async def test_a_failed_send_discards_the_producer_and_reconnects() -> None:
    made = [FakeProducer(KafkaTimeoutError()), FakeProducer()]
    factory = iter(made)
    producer = KafkaCommandProducer(
        bootstrap="unused:1", client_id="t", producer_factory=lambda: next(factory)
    )
    await _connected(producer)
    with pytest.raises(KafkaUnavailable, match="KafkaTimeoutError"):
        await producer.send(COMMAND)
    await _connected(producer)
    await producer.send(COMMAND)
    assert len(made[1].sent) == 1
    await producer.stop()
    assert made[0].stopped
