"""pghd's own figures, measured through the real services over HTTP and Kafka."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from deploy.local.harness import API_KEY, Pipeline, reading
from pghd import topics

__all__ = [
    "OffsetWatch",
    "OpenLoop",
    "ingest_rate",
    "open_loop_latencies",
    "post_to_anomaly_latencies",
]


async def ingest_rate(
    pipeline: Pipeline, readings: list[dict[str, object]], *, batch: int, clients: int
) -> float:
    """POST ``readings`` in batches from ``clients`` concurrent clients; return readings/s."""
    await asyncio.to_thread(pipeline.enroll_for, readings)  # consent is enforced
    batches = [readings[i : i + batch] for i in range(0, len(readings), batch)]
    queue: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=pipeline.ingest_url, headers={"X-API-Key": API_KEY}, timeout=60
        ) as http:
            while not queue.empty():
                body = queue.get_nowait()
                response = await http.post("/v1/measurements", json=body)
                if response.status_code != 202 or response.json()["rejected"]:
                    raise RuntimeError(f"ingest refused a bench batch: {response.text[:300]}")

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(readings) / (time.perf_counter() - began)


class OffsetWatch:
    """Samples a consumer group's committed offsets on a topic in a background thread."""

    def __init__(self, bootstrap: str, group: str, topic: str, every: float = 0.25) -> None:
        self.samples: list[tuple[float, int]] = []
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pghd-bench")
        self._group, self._topic, self._every = group, topic, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OffsetWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._admin.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                offsets = self._admin.list_group_offsets(self._group).get(self._group, {})
            except KafkaError:  # the group does not exist until the worker joins
                self._stop.wait(self._every)
                continue
            total = sum(o.offset for tp, o in offsets.items() if tp.topic == self._topic)
            self.samples.append((time.perf_counter(), int(total)))
            self._stop.wait(self._every)

    def wait_for(self, target: int, *, timeout: float) -> None:
        """Block until the committed offsets reach ``target``."""
        deadline = time.monotonic() + timeout
        while not self.samples or self.samples[-1][1] < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the group did not commit {target} offsets in {timeout} s")
            time.sleep(0.5)

    def first_moving(self) -> float:
        """When the group's first commit was seen (perf_counter seconds)."""
        moving = [t for t, n in self.samples if n > 0]
        if not moving:
            raise RuntimeError("the group never committed")
        return moving[0]

    def rate(self, target: int) -> float:
        """Readings/s between the group's first commit and the commit that reached ``target``."""
        moving = [(t, n) for t, n in self.samples if n > 0]
        done = [(t, n) for t, n in moving if n >= target]
        if not moving or not done:
            raise RuntimeError(f"the group never committed {target} offsets: {self.samples[-3:]}")
        (t0, n0), (t1, n1) = moving[0], done[0]
        if t1 <= t0:
            raise RuntimeError("the backlog was consumed before a second commit: raise it")
        return (n1 - n0) / (t1 - t0)


async def post_to_anomaly_latencies(
    pipeline: Pipeline, *, patients: int, warmup: int
) -> list[float]:
    """Seconds from POSTing an extreme reading to its Anomaly on the topic, per patient.

    Each patient is warmed up first (``warmup`` + 2 normal readings); then one extreme
    reading per patient is posted, one at a time, waiting for its anomaly. The extreme is an
    SpO2 of 84 %: critical on its own (NEWS2 score 3), whatever the context; a lone heart
    rate of 175 with no context is not (it may be exercise, or a motion artefact).
    """
    start = datetime.now(UTC) - timedelta(hours=3)
    names = [f"lat-{time.time_ns()}-{i}" for i in range(patients)]
    warm = [
        reading(name, 70 + (j % 3), start + timedelta(minutes=5 * j), context="rest")
        for name in names
        for j in range(warmup + 2)
    ]
    warm += [reading(name, 97, start, metric="spo2", unit="%") for name in names]
    await asyncio.to_thread(pipeline.enroll_for, warm)  # consent is enforced
    arrivals: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        topics.ANOMALIES, bootstrap_servers=pipeline.kafka_bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
        stop = asyncio.Event()

        async def listen() -> None:
            while not stop.is_set():
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    for m in messages:
                        if m.key is not None:
                            arrivals.setdefault(m.key.decode(), time.perf_counter())

        listener = asyncio.create_task(listen())
        async with httpx.AsyncClient(
            base_url=pipeline.ingest_url, headers={"X-API-Key": API_KEY}, timeout=60
        ) as http:
            for i in range(0, len(warm), 500):
                (await http.post("/v1/measurements", json=warm[i : i + 500])).raise_for_status()
            await asyncio.to_thread(pipeline.wait_vitals, names[-1], warmup + 3, timeout=120)
            latencies = []
            for name in names:
                when = start + timedelta(minutes=5 * (warmup + 3))
                began = time.perf_counter()
                extreme = reading(name, 84, when, metric="spo2", unit="%")
                response = await http.post("/v1/measurements", json=extreme)
                response.raise_for_status()
                deadline = began + 30
                while name not in arrivals and time.perf_counter() < deadline:
                    await asyncio.sleep(0.002)
                if name not in arrivals:
                    raise RuntimeError(f"no anomaly for {name} within 30 s")
                latencies.append(arrivals[name] - began)
        stop.set()
        await listener
        return latencies
    finally:
        await consumer.stop()


@dataclass
class OpenLoop:
    """What :func:`open_loop_latencies` measured."""

    offered_per_s: float  # readings/s the schedule offered (posted on time, answered or not)
    latencies: list[float]  # seconds, POST of a probe's extreme -> its anomaly on the topic
    late_posts: int  # posts that went out more than 100 ms after their slot
    lag: list[tuple[float, int]]  # (seconds into the run, processors lag in records)
    queued_at_end: int  # posts still waiting for a connection when the schedule ended


async def open_loop_latencies(
    pipeline: Pipeline,
    *,
    rate: int,
    seconds: float,
    per_request: int,
    patients: int,
    group: str,
    warmup: int,
    connections: int = 32,
) -> OpenLoop:
    """Offer ``rate`` readings/s for ``seconds`` on a fixed schedule (open loop: a slow
    answer does not slow the next post): every patient's phone posts ``per_request``
    heart rates at a time, spread evenly. Once a second one warmed-up probe patient's post
    carries an SpO2 of 84 % (critical on its own), and the time from that POST to the
    probe's anomaly on the topic is recorded. ``group``'s lag on the measurements topic
    is sampled every 5 s, to see whether the processors keep up."""
    start = datetime.now(UTC) - timedelta(hours=8)
    stream_start = start + timedelta(minutes=5 * (warmup + 4))
    if (total_minutes := rate * seconds / patients) > 6 * 60:
        raise ValueError(f"{total_minutes:.0f} min of readings per patient: add patients")
    names = [f"open-{time.time_ns()}-{i}" for i in range(patients)]
    probes = [f"probe-{time.time_ns()}-{i}" for i in range(int(seconds) + 5)]
    warm = [
        reading(name, 70 + (j % 3), start + timedelta(minutes=5 * j), context="rest")
        for name in probes
        for j in range(warmup + 2)
    ]
    warm += [reading(name, 97, start, metric="spo2", unit="%") for name in probes]
    await asyncio.to_thread(
        pipeline.enroll_for,
        warm
        + [reading(n, 70, start) for n in names]
        + [reading(n, 97, start, metric="spo2", unit="%") for n in probes],
    )
    requests_per_s = rate / per_request
    total = int(requests_per_s * seconds)
    arrivals: dict[str, float] = {}
    posted: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        topics.ANOMALIES, bootstrap_servers=pipeline.kafka_bootstrap, auto_offset_reset="latest"
    )
    admin = KafkaAdminClient(bootstrap_servers=pipeline.kafka_bootstrap, client_id="pghd-bench")
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
        stop = asyncio.Event()

        async def listen() -> None:
            while not stop.is_set():
                for messages in (await consumer.getmany(timeout_ms=100)).values():
                    for m in messages:
                        if m.key is not None:
                            arrivals.setdefault(m.key.decode(), time.perf_counter())

        listener = asyncio.create_task(listen())
        async with httpx.AsyncClient(
            base_url=pipeline.ingest_url, headers={"X-API-Key": API_KEY}, timeout=60
        ) as http:
            for i in range(0, len(warm), 500):
                (await http.post("/v1/measurements", json=warm[i : i + 500])).raise_for_status()
            await asyncio.to_thread(pipeline.wait_vitals, probes[-1], warmup + 3, timeout=180)
        # Posts go out at their slots through a pool of connections, each its own client
        # (one httpx pool with thousands of queued requests spends its time rescanning
        # them); a post that finds every connection busy waits in the queue, and a probe's
        # latency counts from its slot, so queueing is in the figure.
        queue: asyncio.Queue[tuple[bytes, str | None] | None] = asyncio.Queue()
        failures: list[str] = []
        late = 0

        async def sender() -> None:
            async with httpx.AsyncClient(
                base_url=pipeline.ingest_url,
                headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
                timeout=60,
            ) as client:
                while (item := await queue.get()) is not None:
                    body, _probe = item
                    response = await client.post("/v1/measurements", content=body)
                    if response.status_code != 202 or response.json()["rejected"]:
                        failures.append(response.text[:300])

        # Every body is built before the clock starts: the generator shares the machine with
        # what it measures, and should take as little of it as it can.
        bodies: list[tuple[bytes, str | None]] = []
        for n in range(total):
            patient = names[n % patients]
            round_ = n // patients
            body = [
                reading(
                    patient,
                    68 + (k % 5),
                    stream_start + timedelta(minutes=round_ * per_request + k),
                )
                for k in range(per_request)
            ]
            probe = None
            second = int(n / requests_per_s)
            if n == int(second * requests_per_s) and second < len(probes):
                probe = probes[second]
                when = start + timedelta(minutes=5 * (warmup + 3))
                body.append(reading(probe, 84, when, metric="spo2", unit="%"))
            bodies.append((orjson.dumps(body), probe))
        senders = [asyncio.create_task(sender()) for _ in range(connections)]
        lag: list[tuple[float, int]] = []
        began = time.perf_counter()
        next_lag = 0.0
        for n, (payload, probe) in enumerate(bodies):
            slot = began + n / requests_per_s
            wait = slot - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.1:
                late += 1
            if probe is not None:
                posted[probe] = slot
            queue.put_nowait((payload, probe))
            if slot - began >= next_lag:
                lag.append((slot - began, await asyncio.to_thread(_lag, admin, group)))
                next_lag += 5.0
        offered = total * per_request / (time.perf_counter() - began)
        backlog_at_end = queue.qsize()
        for _ in senders:
            queue.put_nowait(None)
        await asyncio.gather(*senders)
        if failures:
            raise RuntimeError(f"ingest refused open-loop posts: {failures[:3]}")
        deadline = time.perf_counter() + 60
        while not posted.keys() <= arrivals.keys() and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        lag.append((time.perf_counter() - began, await asyncio.to_thread(_lag, admin, group)))
        stop.set()
        await listener
        missing = posted.keys() - arrivals.keys()
        if missing:
            raise RuntimeError(f"no anomaly within 60 s for {len(missing)} probes")
        latencies = [arrivals[p] - posted[p] for p in posted]
        return OpenLoop(
            offered_per_s=offered,
            latencies=latencies,
            late_posts=late,
            lag=lag,
            queued_at_end=backlog_at_end,
        )
    finally:
        admin.close()
        await consumer.stop()


def _lag(admin: KafkaAdminClient, group: str) -> int:
    """Records of the measurements topic not yet committed by ``group``."""
    from kafka import KafkaConsumer, TopicPartition

    offsets = admin.list_group_offsets(group).get(group, {})
    consumer = KafkaConsumer(bootstrap_servers=admin.config["bootstrap_servers"])
    try:
        parts = [
            TopicPartition(topics.MEASUREMENTS, p)
            for p in consumer.partitions_for_topic(topics.MEASUREMENTS) or set()
        ]
        ends = consumer.end_offsets(parts)
    finally:
        consumer.close()
    done = {tp: o.offset for tp, o in offsets.items() if tp.topic == topics.MEASUREMENTS}
    return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())


def end_offsets_sum(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum(int(v) for v in consumer.end_offsets(parts).values())
    finally:
        consumer.close()
