"""Sending to Kafka from the processors: retried until acknowledged, anomalies only once.

:func:`deliver` sends a list of ``(key, value)`` messages and returns when Kafka
acknowledged every one, retrying with backoff (a broker outage stalls the batch; it never
skips it).

:class:`AnomalyOutbox` decides, for anomalies a patient's record still lists as *intents*
(written before the send, cleared after it: :mod:`processors.state`), which ones reached
``pghd.anomalies.v1`` before a crash, by reading that topic from ``intent_ms -
verify_lookback_s`` to its end (:func:`scan_anomaly_ids`). Only a record loaded after a
crash between the two writes has intents, so the topic is read only then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import faust
from kafka import KafkaConsumer, TopicPartition

from pghd import kafka_security, topics, wire
from pghd.contracts import Anomaly
from pghd.kafka_security import KafkaSecurity
from pghd.kafka_send import backoff_s, send_all

__all__ = [
    "AnomalyOutbox",
    "deliver",
    "scan_anomaly_ids",
]

logger = logging.getLogger(__name__)

VERIFY_TIMEOUT_S = 120.0


async def deliver(topic: faust.TopicT, messages: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Send ``(key, value)`` messages and wait until Kafka acknowledged all, retrying."""
    name = topic.get_topic_name()
    await send_all(topic.app.producer, [(name, key, value, None) for key, value in messages])


def scan_anomaly_ids(
    bootstrap: str,
    client_id: str,
    wanted: set[str],
    *,
    since_ms: int,
    security: KafkaSecurity | None = None,
) -> set[str]:
    """Which of ``wanted`` are on the anomalies topic at or after ``since_ms`` (blocking)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        client_id=client_id,
        **(security or kafka_security.current()).kafka_python(),
    )
    try:
        numbers = consumer.partitions_for_topic(topics.ANOMALIES) or set()
        parts = [TopicPartition(topics.ANOMALIES, p) for p in sorted(numbers)]
        consumer.assign(parts)
        starts = consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
        ends = consumer.end_offsets(parts)
        todo = {tp for tp in parts if starts.get(tp) is not None}
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        found: set[str] = set()
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topics.ANOMALIES} not read to its end in time")
            for messages in consumer.poll(timeout_ms=1000).values():
                for message in messages:
                    if message.value is None:
                        continue
                    try:
                        anomaly_id = wire.decode(Anomaly, message.value).anomaly_id
                    except ValueError:
                        continue
                    if anomaly_id in wanted:
                        found.add(anomaly_id)
            todo = {tp for tp in todo if consumer.position(tp) < ends[tp]}
        return found
    finally:
        consumer.close()


class AnomalyOutbox:
    """Finds out which unconfirmed anomalies are on the topic already."""

    def __init__(
        self,
        *,
        bootstrap: str,
        client_id: str,
        lookback_s: float,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._lookback_ms = int(lookback_s * 1000)
        self._security = security or kafka_security.current()

    async def already_sent(self, wanted: set[str], *, intent_ms: int) -> set[str]:
        """The ids of ``wanted`` found on the topic (read in a thread, retried until read)."""
        if not wanted:
            return set()
        since_ms = intent_ms - self._lookback_ms
        attempt = 0
        while True:
            attempt += 1
            try:
                found = await asyncio.to_thread(
                    scan_anomaly_ids,
                    self._bootstrap,
                    self._client_id,
                    wanted,
                    since_ms=since_ms,
                    security=self._security,
                )
            except Exception as exc:
                delay = backoff_s(attempt)
                logger.warning(
                    "reading %s to check %d anomalies failed (attempt %d, retry in %.1fs): %r",
                    topics.ANOMALIES,
                    len(wanted),
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                continue
            logger.info(
                "replay: %d anomalies had an unconfirmed send, %d of them are on %s already",
                len(wanted),
                len(found),
                topics.ANOMALIES,
            )
            return found
