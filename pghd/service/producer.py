"""How the HTTP services write to Kafka: a self-healing idempotent producer gateway.

:class:`KafkaGateway` never makes an app fail at boot: a background task connects (and
reconnects) an idempotent ``acks=all`` aiokafka producer with exponential backoff.
:meth:`KafkaGateway.send_batch` (records to the gateway's topic) and
:meth:`KafkaGateway.publish` (one record, or tombstone, to any topic) return only once Kafka
acknowledged every record, or raise :class:`KafkaUnavailable` within ``produce_timeout_s``.
After a failed send the producer is thrown away and a new one is connected in the
background; until then sends fail at once, so callers answer 503 quickly
(:func:`kafka_unavailable`) instead of queueing behind a dead broker. The records of a
discarded producer are failed, never delivered later behind the caller's back
(:func:`pghd.service.aiokafka_internals.abandon` says why that needs aiokafka's internals).

Ingest writes readings, dead letters, enrollments and audit events through it; the
care-team API its commands, care plans and audit events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pghd import kafka_security
from pghd.contracts import SCHEMA_VERSION
from pghd.kafka_security import KafkaSecurity
from pghd.problems import ProblemError
from pghd.service.aiokafka_internals import abandon

__all__ = [
    "Gateway",
    "KafkaGateway",
    "KafkaUnavailable",
    "ProducerFactory",
    "Record",
    "RecordPublisher",
    "kafka_unavailable",
]

logger = logging.getLogger(__name__)

Record = tuple[bytes, bytes | None]  # (key, value); a None value is a tombstone
"""One Kafka record as ``(key, value)``."""

ProducerFactory = Callable[[], Any]
"""Makes an unstarted producer (tests hand in fakes of :class:`AIOKafkaProducer`)."""


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge the records in time, or cannot be reached at all."""


def kafka_unavailable(detail: str, *, retry_after_s: int) -> ProblemError:
    """The ``503 kafka-unavailable`` problem (with ``Retry-After``): Kafka cannot take the
    write now, or cannot be read; the client should retry later."""
    return ProblemError(
        status=503,
        slug="kafka-unavailable",
        detail=detail,
        headers={"Retry-After": str(retry_after_s)},
    )


class Gateway(Protocol):
    """Writes records to one topic (tests substitute an in-memory recorder)."""

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Produce ``records`` and return once Kafka acknowledged all of them."""
        ...

    async def ready(self) -> bool:
        """Whether Kafka is reachable now."""
        ...


class RecordPublisher(Protocol):
    """Writes one keyed record (``value=None``: a tombstone) and waits for Kafka's ack."""

    async def publish(self, *, topic: str, key: bytes, value: bytes | None) -> None:
        """Produce the record; raise :class:`KafkaUnavailable` when Kafka does not take it."""
        ...


class KafkaGateway:
    """Produces keyed records through a self-healing idempotent producer.

    ``topic`` is where :meth:`send_batch` writes; every record carries the headers
    ``schema_version`` (``schema_version``), ``content-type`` and ``producer`` (``client_id``).
    ``security`` is how the producer authenticates (default: the process's,
    :func:`pghd.kafka_security.current`).
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        client_id: str,
        schema_version: int = SCHEMA_VERSION,
        produce_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        linger_ms: int = 0,
        compression: str | None = None,
        reconnect_backoff_s: tuple[float, float] = (0.25, 2.0),
        producer_factory: ProducerFactory | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.topic = topic
        auth = (security or kafka_security.current()).aiokafka()
        self._produce_timeout_s = produce_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff_min_s, self._backoff_max_s = reconnect_backoff_s
        self._headers = [
            ("schema_version", str(schema_version).encode()),
            ("content-type", b"application/json"),
            ("producer", client_id.encode()),
        ]
        self._name = client_id
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
                **auth,
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
            self._supervisor = asyncio.create_task(self._supervise(), name=self._name)

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
        """Produce every ``(key, value)`` to the gateway's topic and wait until Kafka
        acknowledged all of them.

        Raises :class:`KafkaUnavailable` when there is no connected producer, on any Kafka
        error, or when the acknowledgements take longer than ``produce_timeout_s``.
        """
        await self._deliver([(self.topic, key, value) for key, value in records])

    async def publish(self, *, topic: str, key: bytes, value: bytes | None) -> None:
        """Produce one record to ``topic`` (``value=None``: a tombstone) and wait for Kafka's
        acknowledgement; :class:`KafkaUnavailable` as for :meth:`send_batch`."""
        await self._deliver([(topic, key, value)])

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

    async def _deliver(self, records: Sequence[tuple[str, bytes, bytes | None]]) -> None:
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

    async def _produce(
        self, producer: Any, records: Sequence[tuple[str, bytes, bytes | None]]
    ) -> None:
        futures = [
            await producer.send(topic, value=value, key=key, headers=self._headers)
            for topic, key, value in records
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _discard(self, producer: Any, *, reason: str) -> None:
        """Stop using ``producer`` (if still current) and have the supervisor make a new one."""
        if self._producer is not producer:
            return
        logger.warning(
            "kafka producer %s discarded (%s); reconnecting in the background", self._name, reason
        )
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
            logger.info("kafka producer %s connected", self._name)

    async def _dispose(self, producer: Any, *, graceful: bool) -> None:
        """Close ``producer``; when not graceful, drop its unacknowledged records first."""
        try:
            if not graceful:
                await abandon(producer, timeout_s=self._connect_timeout_s)
            await asyncio.wait_for(producer.stop(), self._connect_timeout_s)
        except Exception as exc:  # a producer we are dropping may fail to close in any way
            logger.warning("kafka producer did not close cleanly: %s", type(exc).__name__)
