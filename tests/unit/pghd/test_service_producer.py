"""The services' KafkaGateway against a fake aiokafka producer: lazy start, acks, timeouts,
self-healing; and ingest's readings gateway, whose header names the envelope."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, NotLeaderForPartitionError

from ingest.intake import ReadingsGateway
from pghd.service.producer import KafkaGateway, KafkaUnavailable
from pghd.topics import AUDIT, MEASUREMENTS


class FakeAccumulator:
    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []

    def fail_all(self, exc: Exception) -> None:
        for future in self.pending:
            if not future.done():
                future.set_exception(exc)


class FakeClient:
    def __init__(self) -> None:
        self.reachable = True

    async def fetch_all_metadata(self) -> object:
        if not self.reachable:
            raise KafkaError("Unable to get cluster metadata")
        return object()


class FakeProducer:
    """Acks at once, never (``hang``), or fails the delivery with ``error``."""

    def __init__(self, *, start_error: Exception | None = None) -> None:
        self.start_error = start_error
        self.hang = False
        self.error: Exception | None = None
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []
        self.stopped = False
        self.client = FakeClient()
        self._message_accumulator = FakeAccumulator()

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    async def send(
        self, topic: str, *, value: bytes | None, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            future.set_exception(self.error)
        elif not self.hang:
            self.sent.append((topic, key, value, headers))
            future.set_result(None)
        self._message_accumulator.pending.append(future)
        return future

    async def stop(self) -> None:
        self.stopped = True


class Factory:
    """Hands out the producers it was given, then healthy ones."""

    def __init__(self, *producers: FakeProducer) -> None:
        self.queue = list(producers)
        self.made: list[FakeProducer] = []

    def __call__(self) -> FakeProducer:
        producer = self.queue.pop(0) if self.queue else FakeProducer()
        self.made.append(producer)
        return producer


def make_gateway(factory: Callable[[], Any], timeout: float = 0.2) -> KafkaGateway:
    return KafkaGateway(
        bootstrap="unused:0",
        topic=MEASUREMENTS,
        client_id="pghd-test",
        produce_timeout_s=timeout,
        connect_timeout_s=1.0,
        reconnect_backoff_s=(0.01, 0.05),
        producer_factory=factory,
    )


async def wait_connected(gateway: KafkaGateway) -> None:
    async with asyncio.timeout(2):
        while not gateway.connected:
            await asyncio.sleep(0.005)


async def test_send_before_connected_fails_fast() -> None:
    gateway = make_gateway(Factory())
    with pytest.raises(KafkaUnavailable):
        await gateway.send_batch([(b"k", b"v")])
    assert not await gateway.ready()


async def test_start_keeps_retrying_until_kafka_answers() -> None:
    down = KafkaConnectionError("Unable to bootstrap")
    factory = Factory(FakeProducer(start_error=down), FakeProducer(start_error=down))
    gateway = make_gateway(factory)
    await gateway.start()
    await wait_connected(gateway)
    assert len(factory.made) == 3
    assert factory.made[0].stopped and factory.made[1].stopped
    assert await gateway.ready()
    await gateway.stop()
    assert factory.made[2].stopped


async def test_send_batch_produces_keyed_records_with_headers() -> None:
    factory = Factory()
    gateway = make_gateway(factory)
    await gateway.start()
    await wait_connected(gateway)
    await gateway.send_batch([(b"p-1", b"{}"), (b"p-2", b"{}")])
    sent = factory.made[0].sent
    assert [(topic, key) for topic, key, _, _ in sent] == [
        (MEASUREMENTS, b"p-1"),
        (MEASUREMENTS, b"p-2"),
    ]
    assert ("schema_version", b"1") in sent[0][3]
    assert ("producer", b"pghd-test") in sent[0][3]
    await gateway.stop()


async def test_publish_writes_one_record_or_tombstone_to_any_topic() -> None:
    factory = Factory()
    gateway = make_gateway(factory)
    with pytest.raises(KafkaUnavailable):
        await gateway.publish(topic=AUDIT, key=b"k", value=b"{}")  # not connected yet
    await gateway.start()
    await wait_connected(gateway)
    await gateway.publish(topic=AUDIT, key=b"k", value=b"{}")
    await gateway.publish(topic=AUDIT, key=b"k", value=None)
    assert [(t, k, v) for t, k, v, _ in factory.made[0].sent] == [
        (AUDIT, b"k", b"{}"),
        (AUDIT, b"k", None),
    ]
    await gateway.stop()


@pytest.mark.parametrize(("envelope", "version"), [("v2", b"2"), ("v1", b"1")])
async def test_the_readings_gateway_names_its_envelope(envelope: str, version: bytes) -> None:
    factory = Factory()
    gateway = ReadingsGateway(
        bootstrap="unused:0",
        envelope="v2" if envelope == "v2" else "v1",
        producer_factory=factory,
    )
    assert gateway.envelope == envelope and gateway.topic == MEASUREMENTS
    await gateway.start()
    await wait_connected(gateway)
    await gateway.send_batch([(b"p-1", b"{}")])
    headers = factory.made[0].sent[0][3]
    assert ("schema_version", version) in headers  # v2: one record per patient
    assert ("producer", b"pghd-ingest") in headers
    await gateway.stop()


async def test_unacknowledged_send_times_out_and_the_producer_is_replaced() -> None:
    stuck = FakeProducer()
    stuck.hang = True
    factory = Factory(stuck)
    gateway = make_gateway(factory, timeout=0.1)
    await gateway.start()
    await wait_connected(gateway)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KafkaUnavailable, match="acknowledge"):
        await gateway.send_batch([(b"p-1", b"{}")])
    assert loop.time() - started < 0.5
    assert all(f.done() for f in stuck._message_accumulator.pending)

    await wait_connected(gateway)
    await gateway.send_batch([(b"p-1", b"{}")])
    assert stuck.stopped
    assert len(factory.made) == 2 and len(factory.made[1].sent) == 1
    await gateway.stop()


async def test_delivery_error_is_unavailable_and_heals() -> None:
    failing = FakeProducer()
    failing.error = NotLeaderForPartitionError()
    factory = Factory(failing)
    gateway = make_gateway(factory)
    await gateway.start()
    await wait_connected(gateway)
    with pytest.raises(KafkaUnavailable):
        await gateway.send_batch([(b"p-1", b"{}")])
    with pytest.raises(KafkaUnavailable):  # fails fast until a new producer is connected
        await gateway.send_batch([(b"p-1", b"{}")])
    await wait_connected(gateway)
    await gateway.send_batch([(b"p-1", b"{}")])
    await gateway.stop()


async def test_ready_reflects_metadata_requests() -> None:
    factory = Factory()
    gateway = make_gateway(factory)
    await gateway.start()
    await wait_connected(gateway)
    assert await gateway.ready()
    factory.made[0].client.reachable = False
    assert not await gateway.ready()
    await gateway.stop()
    assert not await gateway.ready()
