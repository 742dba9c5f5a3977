"""The guarded use of aiokafka's internals (pghd/service/aiokafka_internals.py), on a real
AIOKafkaProducer with no broker: why it is needed, that it works on the installed aiokafka,
and that it touches nothing on a version it was not checked against.

When aiokafka is upgraded these tests say whether :func:`abandon` still does its job; list
the new version in ``VERIFIED_AIOKAFKA`` only once they pass (and the outage integration
tests, ``test_zz_kafka_outage.py`` and ``test_zz_broker_restart.py``, too).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import aiokafka
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pghd.service.aiokafka_internals import VERIFIED_AIOKAFKA, abandon, can_abandon

A = TopicPartition("pghd.test", 0)
B = TopicPartition("pghd.test", 1)


def _producer() -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", acks="all", enable_idempotence=True)


async def _stuck_with_two_batches(producer: AIOKafkaProducer) -> tuple[Any, Any, Any]:
    """What a broker outage leaves behind: a batch still queued, a batch the sender drained
    and put back for another try, and a sender task that retries for ever."""
    accumulator = producer._message_accumulator
    queued = await accumulator.add_message(A, b"k", b"queued", timeout=1.0)
    retried = await accumulator.add_message(B, b"k", b"retried", timeout=1.0)
    producer._txn_manager.set_pid_and_epoch(1, 0)  # as after InitProducerId
    accumulator.reenqueue(accumulator._pop_batch(B))
    sender = asyncio.create_task(asyncio.sleep(3600), name="stuck-sender")
    producer._sender._sender_task = sender
    return queued, retried, sender


def test_the_installed_aiokafka_is_one_abandon_was_checked_against() -> None:
    assert aiokafka.__version__ in VERIFIED_AIOKAFKA, (
        f"aiokafka {aiokafka.__version__}: check pghd/service/aiokafka_internals.py against it"
        " (these tests), then list it in VERIFIED_AIOKAFKA"
    )
    assert can_abandon()


async def test_the_private_attributes_abandon_uses_are_there() -> None:
    producer = _producer()
    try:
        assert hasattr(producer._sender, "sender_task")
        accumulator = producer._message_accumulator
        assert isinstance(accumulator._pending_batches, set)
        assert isinstance(accumulator._batches, dict)
        assert callable(accumulator.fail_all)
        await accumulator.add_message(A, b"k", b"v", timeout=1.0)
        [batch] = accumulator._batches[A]
        assert isinstance(batch._drain_waiter, asyncio.Future)
    finally:
        producer._sender._sender_task = None
        await producer.stop()


async def test_without_it_stop_waits_for_ever_for_a_stuck_sender() -> None:
    producer = _producer()
    _, _, sender = await _stuck_with_two_batches(producer)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(producer.stop(), 0.2)
    assert not sender.done(), "the sender would go on retrying, and deliver later"
    await abandon(producer, timeout_s=1.0)  # clean up


async def test_abandon_stops_the_sender_and_fails_every_record() -> None:
    loop = asyncio.get_running_loop()
    gc.collect()  # what earlier tests left to collect is reported now, not as this test's
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        producer = _producer()
        queued, retried, sender = await _stuck_with_two_batches(producer)
        assert await abandon(producer, timeout_s=1.0)
        assert sender.cancelled()
        for future in (queued, retried):
            with pytest.raises(KafkaError, match="discarded"):
                await future
        await asyncio.wait_for(producer.stop(), 1.0)
        await asyncio.sleep(0)  # let the batches' completion callbacks run
        del producer, queued, retried
        gc.collect()  # unretrieved future exceptions are reported when collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert errors == [], "no callback failed and no future exception went unretrieved"


async def test_on_an_unchecked_version_it_touches_nothing() -> None:
    producer = _producer()
    queued, _, sender = await _stuck_with_two_batches(producer)
    assert not await abandon(producer, timeout_s=1.0, version="0.0.0")
    assert not sender.done() and not queued.done()
    await abandon(producer, timeout_s=1.0)  # clean up
    await producer.stop()
