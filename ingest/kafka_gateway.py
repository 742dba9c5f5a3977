"""The one place ingest talks to Kafka: an idempotent aiokafka producer that heals itself.

:class:`KafkaGateway` never makes the app fail at boot: a background task connects (and
reconnects) with exponential backoff. :meth:`KafkaGateway.send_batch` returns only once Kafka
acknowledged every record (``acks=all``), or raises :class:`KafkaUnavailable` within
``produce_timeout_s``. After a failed send the producer is thrown away (its unacknowledged
records are failed, never silently delivered later on a producer we no longer trust) and a new
one is connected in the background; until then sends fail at once, so callers answer 503
quickly instead of queueing behind a dead broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pghd.contracts import SCHEMA_VERSION
from pghd.envelope import ENVELOPE_VERSION
from pghd.topics import MEASUREMENTS

__all__ = ["Gateway", "KafkaGateway", "KafkaUnavailable", "Record"]

logger = logging.getLogger(__name__)

Record = tuple[bytes, bytes | None]  # (key, value); a None value is a tombstone
"""One Kafka record as ``(key, value)``."""

ProducerFactory = Callable[[], Any]


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge the records in time, or cannot be reached at all."""


class Gateway(Protocol):
    """What the routes need from Kafka (tests substitute an in-memory recorder)."""

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Produce ``records`` and return once Kafka acknowledged all of them."""
        ...

    async def ready(self) -> bool:
        """Whether Kafka is reachable now."""
        ...


class KafkaGateway:
    """Produces keyed records to one topic through a self-healing idempotent producer."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str = MEASUREMENTS,
        produce_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        linger_ms: int = 5,
        compression: str | None = "gzip",
        client_id: str = "pghd-ingest",
        envelope: Literal["v1", "v2"] = "v2",
        reconnect_backoff_s: tuple[float, float] = (0.25, 2.0),
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        self._topic = topic
        self._produce_timeout_s = produce_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff_min_s, self._backoff_max_s = reconnect_backoff_s
        self.envelope: Literal["v1", "v2"] = envelope
        """How readings are written to the topic (:mod:`pghd.envelope`); the header says it."""
        version = ENVELOPE_VERSION if envelope == "v2" and topic == MEASUREMENTS else SCHEMA_VERSION
        self._headers = [
            ("schema_version", str(version).encode()),
            ("content-type", b"application/json"),
            ("producer", client_id.encode()),
        ]
        self._factory: ProducerFactory = producer_factory or (
            lambda: AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=linger_ms,
                compression_type=compression,
                request_timeout_ms=max(int(produce_timeout_s * 1000), 1000),
                retry_backoff_ms=100,
            )
        )
        self._producer: Any | None = None
        self._wanted = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._disposals: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        """Whether a started producer is in place (not whether the broker is up right now)."""
        return self._producer is not None

    async def start(self) -> None:
        """Start connecting in the background; never raises if Kafka is down."""
        if self._supervisor is None:
            self._wanted.set()
            self._supervisor = asyncio.create_task(self._supervise(), name="kafka-gateway")

    async def stop(self) -> None:
        """Stop reconnecting, then close the producer (bounded in time)."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._dispose(producer, graceful=True)
        if self._disposals:
            await asyncio.wait(set(self._disposals), timeout=self._connect_timeout_s)

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Produce every ``(key, value)`` and wait until Kafka acknowledged all of them.

        Raises :class:`KafkaUnavailable` when there is no connected producer, on any Kafka
        error, or when the acknowledgements take longer than ``produce_timeout_s``.
        """
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka")
        if not records:
            return
        try:
            await asyncio.wait_for(self._produce(producer, records), self._produce_timeout_s)
        except TimeoutError as exc:
            self._discard(producer, reason="acknowledgement timed out")
            raise KafkaUnavailable(
                f"Kafka did not acknowledge within {self._produce_timeout_s:g} s"
            ) from exc
        except KafkaError as exc:
            self._discard(producer, reason=type(exc).__name__)
            raise KafkaUnavailable(f"Kafka refused the records: {type(exc).__name__}") from exc

    async def ready(self) -> bool:
        """Whether the producer is connected and a broker answers a metadata request."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(
                producer.client.fetch_all_metadata(), min(self._produce_timeout_s, 2.0)
            )
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def _produce(self, producer: Any, records: Sequence[Record]) -> None:
        futures = [
            await producer.send(self._topic, value=value, key=key, headers=self._headers)
            for key, value in records
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _discard(self, producer: Any, *, reason: str) -> None:
        """Stop using ``producer`` (if still current) and have the supervisor make a new one."""
        if self._producer is not producer:
            return
        logger.warning("kafka producer discarded (%s); reconnecting in the background", reason)
        self._producer = None
        self._wanted.set()
        task = asyncio.create_task(self._dispose(producer, graceful=False))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _supervise(self) -> None:
        delay = self._backoff_min_s
        while True:
            await self._wanted.wait()
            producer: Any | None = None
            try:
                producer = self._factory()
                await asyncio.wait_for(producer.start(), self._connect_timeout_s)
            except asyncio.CancelledError:
                if producer is not None:
                    await self._dispose(producer, graceful=False)
                raise
            except Exception as exc:  # keep trying whatever went wrong
                logger.warning(
                    "kafka not reachable (%s); retrying in %.2f s", type(exc).__name__, delay
                )
                if producer is not None:
                    await self._dispose(producer, graceful=False)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            self._producer = producer
            self._wanted.clear()
            delay = self._backoff_min_s
            logger.info("kafka producer connected")

    async def _dispose(self, producer: Any, *, graceful: bool) -> None:
        """Close ``producer``; when not graceful, drop its unacknowledged records first."""
        try:
            if not graceful:
                await _abandon_pending(producer, timeout_s=self._connect_timeout_s)
            await asyncio.wait_for(producer.stop(), self._connect_timeout_s)
        except Exception as exc:  # a producer we are dropping may fail to close in any way
            logger.warning("kafka producer did not close cleanly: %s", type(exc).__name__)


async def _abandon_pending(producer: Any, *, timeout_s: float) -> None:
    """Stop an abandoned producer's retries and fail the records it still holds.

    aiokafka (pinned 0.14) retries idempotent batches forever and ``stop()`` waits for them,
    so a producer cut off from Kafka never closes, and there is no public way to drop them.
    Stop its sender task first (so nothing is re-queued any more), then fail every batch.
    Re-queued batches go back in the pending set first (their completion callback removes
    them from it), and the drain waiters' exceptions are consumed so asyncio does not log
    them as never retrieved.
    """
    sender_task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if sender_task is not None and not sender_task.done():
        sender_task.cancel()
        await asyncio.wait([sender_task], timeout=timeout_s)
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None:
        return
    pending = getattr(accumulator, "_pending_batches", None)
    queued = getattr(accumulator, "_batches", None)
    if isinstance(pending, set) and isinstance(queued, dict):
        for batches in queued.values():
            pending.update(batches)
    accumulator.fail_all(KafkaError("producer discarded after a failure"))
    for batch in list(pending or ()):
        waiter = getattr(batch, "_drain_waiter", None)
        if isinstance(waiter, asyncio.Future) and waiter.done() and not waiter.cancelled():
            waiter.exception()
