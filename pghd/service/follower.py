"""Keeps an in-memory read model up to date from compacted Kafka topics, in the background.

:class:`CompactedFollower` runs one consumer without a group, assigned every partition of its
topics, reads them from the beginning and keeps following, handing each record to the read
model's ``apply``. The model is marked ``ready`` once every partition was read up to the end
offset it had at startup; until then the service answers 503 rather than decide on a partial
view. If Kafka goes away the consumer is rebuilt with backoff and resumes where it stopped;
the model keeps answering meanwhile. A record the model cannot read is skipped and logged.

Ingest follows ``pghd.enrollments.v1`` into its enrollment book; the care-team API follows
the alerts, alert-commands, care-plans and enrollments topics into its read model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition

from pghd import kafka_security
from pghd.kafka_security import KafkaSecurity
from pghd.problems import ProblemError

__all__ = [
    "CompactedFollower",
    "ConsumerFactory",
    "Outcome",
    "PartitionLookup",
    "ReadyFlag",
    "not_ready",
    "topic_partitions",
]

logger = logging.getLogger(__name__)

Outcome = Literal["applied", "invalid"]
"""What became of one record: applied to the model, or skipped as unreadable."""

ConsumerFactory = Callable[[], Any]
"""Makes an unstarted consumer (tests hand in fakes of :class:`AIOKafkaConsumer`)."""

PartitionLookup = Callable[[Sequence[str]], Awaitable[list[TopicPartition]]]
"""Every partition of the given topics, asked of the cluster (:func:`topic_partitions`)."""


class ReadyFlag(Protocol):
    """A read model that says whether it has caught up with its topics."""

    ready: bool


async def topic_partitions(
    bootstrap: str,
    topics: Sequence[str],
    *,
    client_id: str,
    timeout_s: float = 10.0,
    security: KafkaSecurity | None = None,
) -> list[TopicPartition]:
    """Every partition of ``topics``, from the cluster's metadata; ``RuntimeError`` when one
    does not exist (yet, or for this client: a topic it may not describe is not listed).

    A consumer that is assigned partitions (not subscribed) tracks no topic metadata, and
    asking for given topics could have the broker create them: a short-lived client asks for
    the metadata of all topics instead.
    """
    auth = (security or kafka_security.current()).aiokafka()
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id=client_id, **auth)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        cluster = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
    finally:
        await client.close()
    found: list[TopicPartition] = []
    for topic in topics:
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist (yet)")
        found.extend(TopicPartition(topic, p) for p in sorted(partitions))
    return found


class CompactedFollower:
    """Feeds a read model from compacted topics, from their beginning on.

    ``apply(tp, record)`` takes one consumer record and raises ``ValueError`` (pydantic's
    ``ValidationError`` and ``UnicodeDecodeError`` are ones) on a record it cannot read.
    ``model.ready`` is set once the topics were read up to their end at startup, then
    ``on_ready`` is called. ``on_record(topic, outcome)`` counts what became of each record.
    ``security``: how the consumer authenticates (default: :func:`pghd.kafka_security.current`).
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: Sequence[str],
        model: ReadyFlag,
        apply: Callable[[TopicPartition, Any], object],
        client_id: str,
        connect_timeout_s: float = 10.0,
        fetch_max_wait_ms: int = 500,
        on_ready: Callable[[], None] | None = None,
        on_record: Callable[[str, Outcome], None] | None = None,
        consumer_factory: ConsumerFactory | None = None,
        partitions: PartitionLookup | None = None,
        reconnect_backoff_s: tuple[float, float] = (0.25, 5.0),
        security: KafkaSecurity | None = None,
    ) -> None:
        self._topics = list(topics)
        security = security or kafka_security.current()
        auth = security.aiokafka()
        self._model = model
        self._apply_record = apply
        self._on_ready = on_ready
        self._on_record = on_record
        self._connect_timeout_s = connect_timeout_s
        self._backoff_min_s, self._backoff_max_s = reconnect_backoff_s
        self._factory: ConsumerFactory = consumer_factory or (
            lambda: AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=fetch_max_wait_ms,
                **auth,
            )
        )
        self._partitions: PartitionLookup = partitions or (
            lambda names: topic_partitions(
                bootstrap,
                names,
                client_id=client_id,
                timeout_s=connect_timeout_s,
                security=security,
            )
        )
        self._name = client_id
        self._next: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._delay = self._backoff_min_s

    @property
    def topics(self) -> list[str]:
        """The topics followed."""
        return list(self._topics)

    async def start(self) -> None:
        """Start following in the background; never raises if Kafka is down."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-follower")

    async def stop(self) -> None:
        """Stop following (the consumer is closed)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def apply(self, tp: TopicPartition, record: Any) -> Outcome:
        """Hand one record to the model: ``applied``, or ``invalid`` (skipped and logged)."""
        outcome: Outcome = "applied"
        try:
            self._apply_record(tp, record)
        except ValueError as exc:  # ValidationError and UnicodeDecodeError are ValueErrors
            outcome = "invalid"
            logger.warning(
                "skipped unreadable record %s[%d]@%d: %s",
                tp.topic,
                tp.partition,
                record.offset,
                type(exc).__name__,
            )
        if self._on_record is not None:
            self._on_record(tp.topic, outcome)
        return outcome

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
                    ", ".join(self._topics),
                    type(exc).__name__,
                    exc,
                    self._delay,
                )
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, self._backoff_max_s)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), self._connect_timeout_s)

    async def _follow(self, consumer: Any) -> None:
        partitions = await self._partitions(self._topics)
        consumer.assign(partitions)
        self._delay = self._backoff_min_s
        for tp in partitions:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            else:
                await consumer.seek_to_beginning(tp)
        targets: dict[TopicPartition, int] = {}
        if not self._model.ready:
            targets = await consumer.end_offsets(partitions)
            logger.info(
                "reading %s up to %d records", ", ".join(self._topics), sum(targets.values())
            )
        while True:
            if not self._model.ready and await self._caught_up(consumer, targets):
                self._model.ready = True
                if self._on_ready is not None:
                    self._on_ready()
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    self.apply(tp, record)
                    self._next[tp] = record.offset + 1

    async def _caught_up(self, consumer: Any, targets: dict[TopicPartition, int]) -> bool:
        for tp, end in targets.items():
            if await consumer.position(tp) < end:
                return False
        return True


def not_ready(detail: str, *, retry_after_s: int) -> ProblemError:
    """The ``503 not-ready`` problem (with ``Retry-After``) of a read model its follower is
    still filling: ``detail`` says which topic and what is not known yet."""
    return ProblemError(
        status=503,
        slug="not-ready",
        detail=detail,
        headers={"Retry-After": str(retry_after_s)},
    )
