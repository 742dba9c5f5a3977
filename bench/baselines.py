"""Bare aiokafka loops: what Kafka alone gives on this machine in this run."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pghd import wire
from pghd.contracts import Measurement
from processors.baseline import BaselineState
from processors.judge import JudgeParams
from processors.judging import judge
from processors.patient_state import PatientState

__all__ = ["consume_and_judge", "produce", "round_trips"]


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Produce ``records`` with acks=all and idempotence; return records/s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        began = time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def consume_and_judge(
    bootstrap: str, topic: str, *, count: int, params: JudgeParams
) -> float:
    """Read ``count`` measurements from the start of ``topic``, decode and judge them in
    batches of 500 with the processors' own pure functions (no tables, no InfluxDB);
    return readings/s."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        states: dict[str, BaselineState] = {}
        patients: dict[str, PatientState] = {}
        seen = 0
        began = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            readings = [
                wire.decode(Measurement, message.value)
                for messages in batches.values()
                for message in messages
                if message.value is not None
            ]
            result = judge(
                states, readings, params=params, now=datetime.now(UTC), patients=patients
            )
            states.update(result.states)
            patients.update(result.patients)
            seen += len(readings)
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def round_trips(bootstrap: str, topic: str, *, samples: int) -> list[float]:
    """Seconds from produce (acks=all) to consume, one message at a time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=1000)  # join and position at the end
        out = []
        for i in range(samples):
            began = time.perf_counter()
            await producer.send_and_wait(topic, value=str(i).encode(), key=b"bench")
            while True:
                got = await consumer.getmany(timeout_ms=1000)
                if any(m.value == str(i).encode() for ms in got.values() for m in ms):
                    break
            out.append(time.perf_counter() - began)
        return out
    finally:
        await consumer.stop()
        await producer.stop()
