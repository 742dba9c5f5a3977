"""The care-team API's side of the audit trail: writing events and reading them back.

:class:`KafkaAuditSink` appends each :class:`~pghd.audit.AuditEvent` to ``pghd.audit.v1``
(keyed by the agent's name, so one person's trail stays in order) through the API's producer,
and returns once Kafka acknowledged it. :func:`read_audit` reads the topic from a point in
time to its current end and keeps the events about one patient: a scan, fine for the
volumes of one deployment's audit queries; an auditor with years of events filters by
``since``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from kafka import KafkaConsumer, TopicPartition

from pghd import kafka_security, wire
from pghd.audit import AuditEvent
from pghd.kafka_security import KafkaSecurity
from pghd.service.producer import RecordPublisher
from pghd.topics import AUDIT

__all__ = ["KafkaAuditSink", "read_audit", "start_ms"]

logger = logging.getLogger(__name__)


class KafkaAuditSink:
    """Writes audit events through a :class:`RecordPublisher` (raises when Kafka refuses)."""

    def __init__(self, publisher: RecordPublisher) -> None:
        self._publisher = publisher

    async def write(self, event: AuditEvent) -> None:
        await self._publisher.publish(
            topic=AUDIT, key=event.agent.name.encode("utf-8"), value=wire.encode(event)
        )


def start_ms(since: datetime) -> int:
    """Where to start reading, in Kafka's epoch milliseconds: Kafka refuses a time before
    1970, and every event is after it anyway."""
    return max(0, int(since.timestamp() * 1000))


def read_audit(
    bootstrap: str,
    *,
    patient_id: str | None,
    since: datetime,
    limit: int,
    timeout_s: float = 30.0,
    security: KafkaSecurity | None = None,
) -> list[AuditEvent]:
    """Events recorded at or after ``since`` (about ``patient_id`` when given), oldest
    first, at most ``limit`` (the newest ``limit`` when there are more). Blocking: run it
    in a thread."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        client_id="pghd-audit",
        **(security or kafka_security.current()).kafka_python(),
    )
    events: list[AuditEvent] = []
    try:
        partitions = [TopicPartition(AUDIT, p) for p in consumer.partitions_for_topic(AUDIT) or []]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        starts = consumer.offsets_for_times(dict.fromkeys(partitions, start_ms(since)))
        todo = set()
        for tp in partitions:
            start = starts.get(tp)
            if start is not None and start.offset < ends[tp]:
                consumer.seek(tp, start.offset)
                todo.add(tp)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{AUDIT} not read to its end within {timeout_s:.0f} s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    event = _event(record.value)
                    if event is not None and (patient_id is None or patient_id in event.patients):
                        events.append(event)
                    if record.offset + 1 >= ends[tp]:
                        todo.discard(tp)
                        consumer.pause(tp)
    finally:
        consumer.close()
    events.sort(key=lambda e: e.recorded)
    return events[-limit:]


def _event(value: bytes | None) -> AuditEvent | None:
    """The event of one record; None for one this version cannot read (a newer writer's
    during a rolling upgrade: logged, never a failure of the whole query)."""
    if value is None:
        return None
    try:
        return wire.decode(AuditEvent, value)
    except ValueError as exc:
        logger.warning("audit record skipped, unreadable here: %s", type(exc).__name__)
        return None
