"""Bare aiokafka loops: what Kafka alone gives on this machine in this run."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pghd.envelope import decode_readings
from processors.baseline import BaselineState
from processors.detectors.news2_aggregate import News2State
from processors.judge import JudgeParams
from processors.judging import judge
from processors.patient_state import PatientState
from processors.store.influx import InfluxLines
from processors.store.records import to_line

__all__ = ["INGEST_HEADERS", "consume_and_judge", "faust_ceiling", "produce", "round_trips"]


#: The headers ingest sends with each record (:class:`ingest.intake.ReadingsGateway`).
INGEST_HEADERS = [
    ("schema_version", b"2"),
    ("content-type", b"application/json"),
    ("producer", b"pghd-ingest"),
]


async def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes]],
    *,
    compression: str | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> float:
    """Produce ``records`` with acks=all and idempotence (and ``compression``, ``headers``
    on each); return records/s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type=compression,
    )
    await producer.start()
    try:
        began = time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k, headers=headers) for k, v in records]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def consume_and_judge(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    params: JudgeParams,
    influx: InfluxLines | None = None,
    points_per_write: int = 5000,
) -> float:
    """Read ``count`` readings from the start of ``topic`` (either record shape), decode and
    judge them in batches with the processors' own pure functions, and with ``influx``
    also write their points (vitals, baselines, scores, anomalies) as line protocol in
    requests of ``points_per_write``; no state kept anywhere but in memory, no dedup, no
    commits. Return readings/s."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        states: dict[str, BaselineState] = {}
        patients: dict[str, PatientState] = {}
        news2: dict[str, News2State] = {}
        pending: list[str] = []
        seen = 0
        began = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            readings = [
                m
                for messages in batches.values()
                for message in messages
                if message.value is not None
                for m in decode_readings(message.value)
            ]
            result = judge(
                states,
                readings,
                params=params,
                now=datetime.now(UTC),
                patients=patients,
                news2_states=news2,
            )
            states.update(result.states)
            patients.update(result.patients)
            news2.update(result.news2)
            if influx is not None:
                pending += [to_line(point) for point in result.points()]
                if len(pending) >= points_per_write:
                    await influx.write(pending)
                    pending = []
            seen += len(readings)
        if influx is not None and pending:
            await influx.write(pending)
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def faust_ceiling(bootstrap: str, topic: str, *, count: int, workdir: str) -> float:
    """Records/s a Faust agent that does nothing with them drains from the start of
    ``topic``: what Faust's own per-record machinery allows on this machine."""
    import faust

    app = faust.App(
        f"pghd-bench-ceiling-{time.time_ns()}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=workdir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    done = asyncio.Event()
    times: list[float] = []

    @app.agent(source)
    async def drain(stream: faust.StreamT[bytes]) -> None:
        n = 0
        batches = cast("faust.Stream[bytes]", stream).take_events(2000, within=0.02)
        async for events in batches:
            if not times:
                times.append(time.perf_counter())
            n += len(events)
            if n >= count:
                times.append(time.perf_counter())
                done.set()

    async def run() -> float:
        await app.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=600)
        finally:
            await app.stop()
        return count / (times[1] - times[0])

    return await run()


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
