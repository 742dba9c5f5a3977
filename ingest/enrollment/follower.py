"""Keeps an :class:`EnrollmentBook` up to date from ``pghd.enrollments.v1``, in the background.

One consumer without a group is assigned every partition of the compacted topic, reads it
from the beginning and keeps following, so every ingest instance sees every enrollment
written by any instance (a revocation takes effect everywhere as soon as it is fetched).
The book is marked ready once every partition was read up to the end offset it had at
startup; until then ingest refuses readings with 503 rather than refuse valid patients.
If Kafka goes away the consumer is rebuilt with backoff and resumes where it stopped; the
book keeps answering meanwhile.

:meth:`EnrollmentFollower.expect` gives a future resolved when a given change has been
applied here: the write path's read-your-writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from ingest.enrollment.book import EnrollmentBook
from pghd.enrollment import Enrollment
from pghd.topics import ENROLLMENTS

__all__ = ["EnrollmentFollower"]

logger = logging.getLogger(__name__)


class EnrollmentFollower:
    """Feeds an :class:`EnrollmentBook` from the enrollments topic."""

    def __init__(
        self,
        *,
        bootstrap: str,
        book: EnrollmentBook,
        topic: str = ENROLLMENTS,
        connect_timeout_s: float = 10.0,
        consumer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._book = book
        self._topic = topic
        self._connect_timeout_s = connect_timeout_s
        self._factory = consumer_factory or (
            lambda: AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id="pghd-ingest-enrollments",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=200,
            )
        )
        self._next: dict[TopicPartition, int] = {}
        self._waiters: dict[str, asyncio.Future[Enrollment]] = {}
        self._task: asyncio.Task[None] | None = None
        self._delay = 0.25

    async def start(self) -> None:
        """Start following in the background; never raises if Kafka is down."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="enrollment-follower")

    async def stop(self) -> None:
        """Stop following (the consumer is closed)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def expect(self, change_id: str) -> asyncio.Future[Enrollment]:
        """A future resolved with the enrollment once the change ``change_id`` is applied."""
        future: asyncio.Future[Enrollment] = asyncio.get_running_loop().create_future()
        self._waiters[change_id] = future
        return future

    def forget(self, change_id: str) -> None:
        """Stop waiting for ``change_id``."""
        future = self._waiters.pop(change_id, None)
        if future is not None and not future.done():
            future.cancel()

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
                    "cannot follow %s (%s: %s); retry in %.2f s",
                    self._topic,
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
        # An assigned (not subscribed) consumer tracks no topic metadata: ask the cluster.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self._topic)
        if not partitions:
            raise RuntimeError(f"topic {self._topic} does not exist (yet)")
        return [TopicPartition(self._topic, p) for p in sorted(partitions)]

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
        if not self._book.ready:
            targets = await consumer.end_offsets(partitions)
            logger.info("reading %s up to %d records", self._topic, sum(targets.values()))
        while True:
            if not self._book.ready and await self._caught_up(consumer, targets):
                self._book.ready = True
                logger.info("enrollment registry ready: %d patients", len(self._book))
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
            enrollment = self._book.apply_record(record.key, record.value)
        except (ValidationError, ValueError, UnicodeDecodeError) as exc:
            logger.warning(
                "skipped unreadable record %s[%d]@%d: %s",
                tp.topic,
                tp.partition,
                record.offset,
                type(exc).__name__,
            )
            return
        if enrollment is None:
            return
        future = self._waiters.pop(enrollment.change.change_id, None)
        if future is not None and not future.done():
            future.set_result(enrollment)
