"""Sync points: proof that a worker has caught up, before a test asserts that nothing else
happened (no extra row, anomaly or notification) or that a race window was hit.

A "nothing else" check that only waits a few seconds passes without checking anything when
the worker is slow. Instead:

- :func:`settled_vitals` posts a sentinel reading for the same patient (same partition,
  judged in order) and waits until it is stored: everything posted before it is stored by
  then;
- :func:`caught_up` waits until a consumer group has committed its input topics to their
  end: everything produced so far has been handled, and what handling it produced sent;
- :func:`backlog`, :func:`measurements_in` and :func:`judged_in` tell what a killed
  worker had not committed, and which of those readings it had judged already.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaConsumer, TopicPartition

from deploy.local.harness import Pipeline, reading, wait_for
from deploy.local.topics import read_from_start
from pghd import topics, wire
from pghd.alerting import Alert
from pghd.contracts import Measurement
from pghd.envelope import decode_readings
from tests.clock import ANCHOR

__all__ = [
    "Backlog",
    "alert_states",
    "backlog",
    "caught_up",
    "end_offsets",
    "judged_in",
    "measurements_in",
    "partition_of",
    "records_in",
    "settled_vitals",
]

Backlog = dict[int, tuple[int, int]]
"""Partition -> (committed offset of the group, end offset) of the measurements topic."""


def partition_of(key: str, partitions: int = 8) -> int:
    """The measurements partition of a patient (ingest's producer: murmur2 of the key)."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key.encode(), every, every))


def backlog(bootstrap: str, group: str, topic: str = topics.MEASUREMENTS) -> Backlog:
    """Each partition's committed offset (0 if none) and end offset, for ``group``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(parts)
        return {tp.partition: (consumer.committed(tp) or 0, ends[tp]) for tp in parts}
    finally:
        consumer.close()


def caught_up(
    bootstrap: str,
    group: str,
    topic_names: tuple[str, ...] = (topics.MEASUREMENTS,),
    *,
    timeout: float = 180.0,
    what: str = "",
) -> None:
    """Wait until ``group`` has committed ``topic_names`` (default: the measurements) to
    their end: everything produced so far has been handled, and what that produced sent."""
    deadline = time.monotonic() + timeout
    while True:
        lag = {
            (name, p): end - done
            for name in topic_names
            for p, (done, end) in backlog(bootstrap, group, name).items()
            if done < end
        }
        if not lag:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{group} did not catch up in {timeout:.0f} s: lag {lag}\n{what}")
        time.sleep(0.5)


_SENTINELS = itertools.count()
SENTINEL_VALUE = 64.5
"""The value of the sentinel readings (resting heart rate), left out of the results."""


def settled_vitals(pipeline: Pipeline, patient: str) -> list[dict[str, Any]]:
    """The patient's vitals once everything posted for them so far has been processed.

    A sentinel reading (resting heart rate :data:`SENTINEL_VALUE`, at a time of its own
    before the tests' anchor) posted last for the same patient, on the same Kafka partition,
    is stored only after everything before it; sentinels are left out of the result.
    """
    when = ANCHOR - timedelta(hours=2) + timedelta(seconds=next(_SENTINELS))
    sentinel = reading(patient, SENTINEL_VALUE, when, metric="resting_heart_rate")
    response = pipeline.post(sentinel)
    assert response.status_code == 202, response.text

    def stored() -> list[dict[str, Any]] | None:
        rows = pipeline.vitals(patient)
        return rows if any(r["_time"] == when for r in rows) else None

    rows = wait_for(
        stored, timeout=120, what=f"the sentinel of {patient}", diagnostics=pipeline.diagnostics
    )
    return [r for r in rows if r["value"] != SENTINEL_VALUE]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Where each partition of ``topic`` ends now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {tp.partition: end for tp, end in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def records_in(bootstrap: str, topic: str, ranges: Mapping[int, tuple[int, int]]) -> list[bytes]:
    """The values at offsets ``[start, end)`` of each partition of ``ranges``."""
    wanted = {p: (lo, hi) for p, (lo, hi) in ranges.items() if hi > lo}
    if not wanted:
        return []
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000
    )
    try:
        parts = {p: TopicPartition(topic, p) for p in wanted}
        consumer.assign(list(parts.values()))
        for p, (lo, _) in wanted.items():
            consumer.seek(parts[p], lo)
        found: list[bytes] = []
        left = set(wanted)
        for message in consumer:
            lo, hi = wanted[message.partition]
            if lo <= message.offset < hi and message.value:
                found.append(message.value)
            if message.offset >= hi - 1:
                left.discard(message.partition)
                consumer.pause(parts[message.partition])
            if not left:
                break
        assert not left, f"could not read partitions {sorted(left)} of {topic} to their offsets"
        return found
    finally:
        consumer.close()


def measurements_in(bootstrap: str, ranges: Mapping[int, tuple[int, int]]) -> list[Measurement]:
    """The measurements at offsets ``[start, end)`` of each partition of ``ranges``."""
    found: list[Measurement] = []
    for value in records_in(bootstrap, topics.MEASUREMENTS, ranges):
        with contextlib.suppress(ValueError):  # other tests' garbage (dead letters)
            found.extend(decode_readings(value))
    return found


_EVENT_ID = re.compile(r'event_id="((?:[^"\\]|\\.)*)"')


def judged_in(bootstrap: str, ranges: Mapping[int, tuple[int, int]]) -> set[str]:
    """Event ids of the readings whose points are at offsets ``[start, end)`` of
    ``pghd.points.v1``: the processors judged them (points are produced when judging)."""
    found: set[str] = set()
    for value in records_in(bootstrap, topics.POINTS, ranges):
        with contextlib.suppress(ValueError, AttributeError, TypeError):  # not a points record
            for line in json.loads(value).get("lines", []):
                found.update(_EVENT_ID.findall(line))
    return found


def alert_states(bootstrap: str, *, fingerprint: str | None = None) -> list[Alert]:
    """Every alert state on ``pghd.alerts.v1`` so far, oldest first (an alert's latest
    state is the last with its id); with ``fingerprint``, only those keyed by it."""
    key = None if fingerprint is None else fingerprint.encode()
    return [
        wire.decode(Alert, value)
        for k, value in read_from_start(bootstrap, topics.ALERTS)
        if key is None or k == key
    ]
