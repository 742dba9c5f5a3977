"""Erasing a patient (``POST /v1/patients/{patient_id}/erase``): ingest's part, and the report.

:meth:`Eraser.erase`:

1. tombstones the enrollment on ``pghd.enrollments.v1`` (links and consents go with it: from
   then on every reading for the patient is refused, here at once, on other ingest
   instances once their followers read the tombstone) and the care plan on
   ``pghd.care-plans.v1``;
2. waits ``settle_s`` (longer than the followers' lag), so a reading another instance
   accepted just before it saw the tombstone is already on the topic;
3. writes an erasure marker (:mod:`pghd.erasure`) to ``pghd.measurements.v1``, behind every
   reading of the patient accepted before it; the processors, the store and the alerts
   worker erase in turn and report on ``pghd.audit.v1``;
4. reads those reports for up to ``wait_s`` and answers what was removed, and which stages
   have not reported yet (an erasure is idempotent: asking again erases what is left and
   reports again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition

from ingest.enrollment import EnrollmentService
from pghd import kafka_security, wire
from pghd.audit import AuditEvent
from pghd.erasure import STAGES, ErasureReport, new_marker, report_of
from pghd.kafka_security import KafkaSecurity
from pghd.pseudonym import pseudonym
from pghd.service.producer import Gateway
from pghd.topics import AUDIT

__all__ = ["AuditReports", "Eraser", "ReportsUnavailable"]

logger = logging.getLogger(__name__)


class ReportsUnavailable(Exception):
    """The audit topic, where the stages report, cannot be read."""


class AuditReports:
    """Reads the stages' reports of one erasure from ``pghd.audit.v1`` (a kafka-python
    consumer without a group, in a thread: a short read, once per erasure)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        connect_timeout_s: float,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._bootstrap = bootstrap.split(",")
        self._connect_timeout_s = connect_timeout_s
        self._security = security or kafka_security.current()

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            client_id="pghd-ingest-erasure-reports",
            request_timeout_ms=int(max(self._connect_timeout_s, 1.0) * 1000) + 30_000,
            **self._security.kafka_python(),
        )

    async def positions(self) -> dict[int, int]:
        """The audit topic's end offsets now, by partition (where the reports will follow)."""
        return await asyncio.to_thread(self._positions)

    def _positions(self) -> dict[int, int]:
        consumer = self._consumer()
        try:
            ends = consumer.end_offsets(_partitions(consumer))
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            consumer.close()

    async def collect(
        self, request_id: str, since: dict[int, int], *, wait_s: float
    ) -> list[AuditEvent]:
        """The stage events of ``request_id`` after ``since``, read until every stage has
        reported or ``wait_s`` passed."""
        return await asyncio.to_thread(self._collect, request_id, since, wait_s)

    def _collect(self, request_id: str, since: dict[int, int], wait_s: float) -> list[AuditEvent]:
        consumer = self._consumer()
        found: list[AuditEvent] = []
        try:
            partitions = _partitions(consumer)
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, since.get(tp.partition, 0))
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500, max_records=1000).values():
                    for record in records:
                        event = _event(record.value)
                        if event is not None and event.request_id == request_id:
                            found.append(event)
                if {e.service for e in found} >= set(STAGES):
                    break
            return found
        finally:
            consumer.close()


def _partitions(consumer: KafkaConsumer) -> list[TopicPartition]:
    numbers = consumer.partitions_for_topic(AUDIT)
    if not numbers:
        raise ReportsUnavailable(f"topic {AUDIT} does not exist")
    return [TopicPartition(AUDIT, p) for p in sorted(numbers)]


def _event(value: bytes | None) -> AuditEvent | None:
    if value is None:
        return None
    try:
        return wire.decode(AuditEvent, value)
    except ValueError:
        return None


class Eraser:
    """Ingest's part of an erasure, and the wait for the stages' reports."""

    def __init__(
        self,
        *,
        enrollments: EnrollmentService,
        care_plans: Gateway,
        measurements: Gateway,
        reports: AuditReports,
        settle_s: float,
    ) -> None:
        self._enrollments = enrollments
        self._care_plans = care_plans
        self._measurements = measurements
        self._reports = reports
        self._settle_s = settle_s

    async def erase(self, patient_id: str, *, by: str, wait_s: float) -> ErasureReport:
        """Erase ``patient_id`` everywhere (the module docstring's steps); the report.

        Raises ``KafkaUnavailable`` (nothing or only part of ingest's share was written:
        asking again is safe), :class:`~ingest.enrollment.RegistryLoading`, or ``KafkaError``
        /``OSError``/``TimeoutError`` when the reports cannot be read.
        """
        held = await self._enrollments.erase(patient_id)
        key = patient_id.encode()
        await self._care_plans.send_batch([(key, None)])
        await asyncio.sleep(self._settle_s)
        marker = new_marker(patient_id, at=datetime.now(UTC), by=by)
        since = await self._reports.positions()
        await self._measurements.send_batch([(key, wire.encode(marker))])
        logger.info(
            "erasure %s of patient %s asked by %s", marker.erasure_id, pseudonym(patient_id), by
        )
        events: Sequence[AuditEvent] = []
        if wait_s > 0:
            events = await self._reports.collect(marker.erasure_id, since, wait_s=wait_s)
        return report_of(marker, {"enrollments": int(held), "care_plan_tombstones": 1}, events)
