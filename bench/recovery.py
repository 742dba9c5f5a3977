"""How long a processors worker takes to read 100k patients' state back before judging.

The ``state`` table's changelog of a fresh app id is filled with ``patients`` records,
copies of the real records an earlier run of the bench wrote (so their sizes are what the
bench's patients need), keyed like patients (the producer's default partitioner, as
ingest's). A worker is then started on that app id, and the time from its start to a probe
reading stored in InfluxDB is compared with the same for an app id with no state: the
difference is the recovery.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from deploy.local.harness import running_pipeline
from deploy.local.influxdb import InfluxServer
from deploy.local.topics import read_from_start
from processors.state import is_bucket_key

__all__ = ["Recovery", "recovery_time"]


@dataclass(frozen=True)
class Recovery:
    patients: int
    bytes: int  # of the records written
    seconds: float  # start -> probe stored, with the state, minus the same without


def _template(bootstrap: str, changelog: str) -> list[bytes]:
    latest: dict[bytes, bytes] = {}
    for key, value in read_from_start(bootstrap, changelog):
        if key is None or value is None or is_bucket_key(key.decode()):
            continue
        latest[key] = value
    if not latest:
        raise RuntimeError(f"{changelog} holds no patient records to copy")
    return list(latest.values())


async def _fill(bootstrap: str, topic: str, values: list[bytes], patients: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    size = 0
    try:
        futures = []
        for i in range(patients):
            value = values[i % len(values)]
            size += len(value)
            futures.append(await producer.send(topic, key=f"rec-{i:07d}".encode(), value=value))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return size


def _started(
    stack_env: Mapping[str, str], influx: InfluxServer, workdir: Path, suffix: str, warmup: int
) -> float:
    began = time.perf_counter()
    with running_pipeline(
        stack_env=stack_env,
        influx=influx,
        workdir=workdir,
        services=("ingest", "processors"),
        app_suffix=suffix,
        from_now=True,
        warmup=warmup,
        probe_timeout=900,
    ):
        return time.perf_counter() - began


def recovery_time(
    *,
    stack_env: Mapping[str, str],
    influx: InfluxServer,
    workdir: Path,
    template_app_id: str,
    patients: int,
    partitions: int,
    warmup: int,
) -> Recovery:
    """Fill a fresh app id's state with ``patients`` records copied from
    ``template_app_id``'s, and time a worker's start on it against one without state."""
    bootstrap = stack_env["PGHD_KAFKA_BOOTSTRAP"]
    values = _template(bootstrap, f"{template_app_id}-state-changelog")
    suffix = uuid.uuid4().hex[:8]
    topic = f"pghd-processors-{suffix}-state-changelog"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pghd-bench")
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ]
        )
    finally:
        admin.close()
    size = asyncio.run(_fill(bootstrap, topic, values, patients))
    empty = _started(stack_env, influx, workdir / "empty", uuid.uuid4().hex[:8], warmup)
    full = _started(stack_env, influx, workdir / "full", suffix, warmup)
    return Recovery(patients=patients, bytes=size, seconds=max(0.0, full - empty))
