"""Produces :class:`AlertCommand` records to ``pghd.alert-commands.v1``, keyed by patient id.

:class:`KafkaCommandProducer` never makes the app fail at boot: a background task connects
(and reconnects) an idempotent ``acks=all`` aiokafka producer. :meth:`send` returns only once
Kafka acknowledged the record, or raises :class:`CommandsUnavailable` within
``produce_timeout_s``; the failed producer is then discarded (its pending records are failed,
never delivered later behind the caller's back) and a new one is connected in the background.
:meth:`KafkaCommandProducer.publish` writes any record (or tombstone) the same way; the
care-plan routes use it for ``pghd.care-plans.v1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pghd import wire
from pghd.alert_commands import AlertCommand
from pghd.contracts import SCHEMA_VERSION
from pghd.topics import ALERT_COMMANDS

__all__ = ["CommandProducer", "CommandsUnavailable", "KafkaCommandProducer", "RecordPublisher"]

logger = logging.getLogger(__name__)


class CommandsUnavailable(Exception):
    """Kafka did not acknowledge the command in time, or cannot be reached at all."""


class CommandProducer(Protocol):
    """What the routes need from Kafka (tests substitute an in-memory recorder)."""

    async def send(self, command: AlertCommand) -> None:
        """Produce ``command`` and return once Kafka acknowledged it."""
        ...


class RecordPublisher(Protocol):
    """Writes one keyed record (``value=None``: a tombstone) and waits for Kafka's ack."""

    async def publish(self, *, topic: str, key: bytes, value: bytes | None) -> None:
        """Produce the record; raise :class:`CommandsUnavailable` when Kafka does not take it."""
        ...


class KafkaCommandProducer:
    """A self-healing idempotent producer of alert commands."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str = ALERT_COMMANDS,
        produce_timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        client_id: str = "pghd-care-api",
        producer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._topic = topic
        self._produce_timeout_s = produce_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._headers = [
            ("schema_version", str(SCHEMA_VERSION).encode()),
            ("content-type", b"application/json"),
            ("producer", client_id.encode()),
        ]
        self._factory = producer_factory or (
            lambda: AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
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
        """Whether a started producer is in place."""
        return self._producer is not None

    async def start(self) -> None:
        """Start connecting in the background; never raises if Kafka is down."""
        if self._supervisor is None:
            self._wanted.set()
            self._supervisor = asyncio.create_task(self._supervise(), name="care-api-producer")

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

    async def send(self, command: AlertCommand) -> None:
        """Produce ``command`` (key = its patient id) and wait for Kafka's acknowledgement."""
        await self.publish(
            topic=self._topic, key=command.patient_id.encode("utf-8"), value=wire.encode(command)
        )

    async def publish(self, *, topic: str, key: bytes, value: bytes | None) -> None:
        """Produce one record to ``topic`` (``value=None``: a tombstone) and wait for Kafka's
        acknowledgement; :class:`CommandsUnavailable` when it does not come in time."""
        producer = self._producer
        if producer is None:
            raise CommandsUnavailable("not connected to Kafka")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value=value, key=key, headers=self._headers),
                self._produce_timeout_s,
            )
        except TimeoutError as exc:
            self._discard(producer, reason="acknowledgement timed out")
            raise CommandsUnavailable(
                f"Kafka did not acknowledge within {self._produce_timeout_s:g} s"
            ) from exc
        except KafkaError as exc:
            self._discard(producer, reason=type(exc).__name__)
            raise CommandsUnavailable(f"Kafka refused the command: {type(exc).__name__}") from exc

    def _discard(self, producer: Any, *, reason: str) -> None:
        if self._producer is not producer:
            return
        logger.warning("kafka producer discarded (%s); reconnecting in the background", reason)
        self._producer = None
        self._wanted.set()
        task = asyncio.create_task(self._dispose(producer, graceful=False))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _supervise(self) -> None:
        delay = 0.25
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
                    "kafka not reachable (%s); retry in %.2f s", type(exc).__name__, delay
                )
                if producer is not None:
                    await self._dispose(producer, graceful=False)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._producer = producer
            self._wanted.clear()
            delay = 0.25
            logger.info("kafka producer connected")

    async def _dispose(self, producer: Any, *, graceful: bool) -> None:
        """Close ``producer``; when not graceful, fail its unacknowledged records first.

        aiokafka retries idempotent batches forever and ``stop()`` waits for them, so the
        sender task of an abandoned producer is cancelled and its batches failed first.
        """
        try:
            if not graceful:
                sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
                if sender is not None and not sender.done():
                    sender.cancel()
                    await asyncio.wait([sender], timeout=self._connect_timeout_s)
                accumulator = getattr(producer, "_message_accumulator", None)
                if accumulator is not None:
                    accumulator.fail_all(KafkaError("producer discarded after a failure"))
            await asyncio.wait_for(producer.stop(), self._connect_timeout_s)
        except Exception as exc:  # a producer we are dropping may fail to close in any way
            logger.warning("kafka producer did not close cleanly: %s", type(exc).__name__)
