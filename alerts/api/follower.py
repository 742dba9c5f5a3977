"""Keeps the :class:`ReadModel` up to date from Kafka, in a background task.

One consumer without a group is assigned every partition of ``pghd.alerts.v1`` (compacted:
the latest alert per fingerprint), ``pghd.alert-commands.v1`` (for silences),
``pghd.care-plans.v1`` (compacted: the latest care plan per patient) and
``pghd.enrollments.v1`` (compacted: each patient's care teams), reads them
from the beginning and keeps following. The model is marked ready once every partition was
read up to the end offset it had at startup. If Kafka goes away the consumer is rebuilt with
backoff and resumes where it stopped; the model keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from alerts.api.metrics import CareApiMetrics
from alerts.api.read_model import ReadModel
from pghd.topics import ALERT_COMMANDS, ALERTS, CARE_PLANS, ENROLLMENTS

__all__ = ["TopicFollower"]

logger = logging.getLogger(__name__)


class TopicFollower:
    """Feeds a :class:`ReadModel` from the alerts and alert-commands topics."""

    def __init__(
        self,
        *,
        bootstrap: str,
        model: ReadModel,
        metrics: CareApiMetrics | None = None,
        connect_timeout_s: float = 10.0,
        consumer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._model = model
        self._metrics = metrics
        self._connect_timeout_s = connect_timeout_s
        self._factory = consumer_factory or (
            lambda: AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id="pghd-care-api",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
        )
        self._next: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._delay = 0.25

    async def start(self) -> None:
        """Start following in the background; never raises if Kafka is down."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="care-api-follower")

    async def stop(self) -> None:
        """Stop following (the consumer is closed)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            consumer = self._factory()
            try:
                await asyncio.wait_for(consumer.start(), self._connect_timeout_s)
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep trying whatever went wrong
                logger.warning(
                    "cannot follow the alert topics (%s: %s); retry in %.2f s",
                    type(exc).__name__,
                    exc,
                    self._delay,
                )
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), self._connect_timeout_s)

    async def _partitions(self, consumer: Any) -> list[TopicPartition]:
        # The consumer's own metadata only covers topics it tracks, and an assigned (not
        # subscribed) consumer tracks none until assigned: ask the cluster directly.
        cluster = await consumer._client.fetch_all_metadata()
        found: list[TopicPartition] = []
        for topic in (ALERTS, ALERT_COMMANDS, CARE_PLANS, ENROLLMENTS):
            partitions = cluster.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"topic {topic} does not exist (yet)")
            found.extend(TopicPartition(topic, p) for p in sorted(partitions))
        return found

    async def _follow(self, consumer: Any) -> None:
        partitions = await self._partitions(consumer)
        consumer.assign(partitions)
        self._delay = 0.25
        for tp in partitions:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            else:
                await consumer.seek_to_beginning(tp)
        targets: dict[TopicPartition, int] = {}
        if not self._model.ready:
            targets = await consumer.end_offsets(partitions)
            logger.info("reading the alert topics up to %d records", sum(targets.values()))
        while True:
            if not self._model.ready and await self._caught_up(consumer, targets):
                self._model.ready = True
                logger.info("read model ready: %d alerts", len(self._model.alerts))
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    self._apply(tp, record)
                    self._next[tp] = record.offset + 1

    async def _caught_up(self, consumer: Any, targets: dict[TopicPartition, int]) -> bool:
        for tp, end in targets.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _apply(self, tp: TopicPartition, record: Any) -> None:
        try:
            if tp.topic == ALERTS:
                self._model.apply_alert_record(record.key, record.value)
            elif tp.topic == CARE_PLANS:
                self._model.apply_care_plan_record(record.key, record.value)
            elif tp.topic == ENROLLMENTS:
                self._model.apply_enrollment_record(record.key, record.value)
            else:
                self._model.apply_command_record(record.value)
        except (ValidationError, ValueError, UnicodeDecodeError) as exc:
            outcome = "invalid"
            logger.warning(
                "skipped unreadable record %s[%d]@%d: %s",
                tp.topic,
                tp.partition,
                record.offset,
                type(exc).__name__,
            )
        else:
            outcome = "applied"
        if self._metrics is not None:
            self._metrics.records.labels(topic=tp.topic, outcome=outcome).inc()
