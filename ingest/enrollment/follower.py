"""Keeps an :class:`EnrollmentBook` up to date from ``pghd.enrollments.v1``, in the background.

Following is :class:`pghd.service.follower.CompactedFollower`'s job: every ingest instance
reads every partition of the compacted topic from the beginning and keeps following, so it
sees every enrollment written by any instance (a revocation takes effect everywhere as soon
as it is fetched). The book is ready once the topic was read up to the end it had at
startup; until then ingest refuses readings with 503 rather than refuse valid patients.

What this adds is read-your-writes for the write path: :meth:`EnrollmentFollower.expect`
gives a future resolved when a given change has been applied here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition

from ingest.enrollment.book import EnrollmentBook
from pghd.enrollment import Enrollment
from pghd.service.follower import CompactedFollower, ConsumerFactory, PartitionLookup
from pghd.topics import ENROLLMENTS

__all__ = ["EnrollmentFollower"]

logger = logging.getLogger(__name__)


class EnrollmentFollower:
    """Feeds an :class:`EnrollmentBook` from the enrollments topic; tells who waits for a
    change when it has been applied."""

    def __init__(
        self,
        *,
        bootstrap: str,
        book: EnrollmentBook,
        topic: str = ENROLLMENTS,
        connect_timeout_s: float = 10.0,
        consumer_factory: ConsumerFactory | None = None,
        partitions: PartitionLookup | None = None,
    ) -> None:
        self._book = book
        self._waiters: dict[str, asyncio.Future[Enrollment]] = {}
        self._follower = CompactedFollower(
            bootstrap=bootstrap,
            topics=[topic],
            model=book,
            apply=self._apply,
            client_id="pghd-ingest-enrollments",
            connect_timeout_s=connect_timeout_s,
            fetch_max_wait_ms=200,
            on_ready=lambda: logger.info("enrollment registry ready: %d patients", len(book)),
            consumer_factory=consumer_factory,
            partitions=partitions,
        )

    async def start(self) -> None:
        """Start following in the background; never raises if Kafka is down."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following (the consumer is closed)."""
        await self._follower.stop()

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

    def apply(self, tp: TopicPartition, record: Any) -> None:
        """Apply one record of the topic as if it had just been read (unreadable: skipped)."""
        self._follower.apply(tp, record)

    def _apply(self, tp: TopicPartition, record: Any) -> None:
        enrollment = self._book.apply_record(record.key, record.value)
        if enrollment is None:
            return
        future = self._waiters.pop(enrollment.change.change_id, None)
        if future is not None and not future.done():
            future.set_result(enrollment)
