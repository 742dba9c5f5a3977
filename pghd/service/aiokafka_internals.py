"""The one place that touches aiokafka's private state: cutting off an abandoned producer.

Why: an idempotent aiokafka producer retries a batch it could not deliver for ever (idempotent
batches never expire: ``Sender._can_retry``), and :meth:`AIOKafkaProducer.stop` first waits
until every batch is delivered. So a producer cut off from Kafka neither gives up its records
nor closes; cancelling ``stop()`` leaves its sender task running, and the records a caller
was already refused (``503``) may still reach Kafka minutes later, when the broker is back.
aiokafka has no public way to drop them (issue aio-libs/aiokafka#1101, open for 0.14.0):
``request_timeout_ms`` bounds one request, not a batch's retries, and there is no
``delivery_timeout_ms``.

:func:`abandon` therefore stops the producer's sender task and fails every batch it still
holds, so that nothing it held is delivered later and ``stop()`` returns at once. It does so
only on an aiokafka version listed in :data:`VERIFIED_AIOKAFKA` (the one pinned in
``pyproject.toml``); on any other version it touches nothing and says so, and the caller's
bounded ``stop()`` is all that happens. ``tests/unit/pghd/test_aiokafka_internals.py``
fails when the installed version is not listed or the attributes used here are gone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiokafka
from aiokafka.errors import KafkaError

__all__ = ["VERIFIED_AIOKAFKA", "abandon", "can_abandon"]

logger = logging.getLogger(__name__)

VERIFIED_AIOKAFKA = frozenset({"0.14.0"})
"""aiokafka versions whose producer internals :func:`abandon` was checked against."""

_warned = False


def can_abandon(version: str = aiokafka.__version__) -> bool:
    """Whether :func:`abandon` may reach into producers of aiokafka ``version``."""
    return version in VERIFIED_AIOKAFKA


async def abandon(producer: Any, *, timeout_s: float, version: str = aiokafka.__version__) -> bool:
    """Stop ``producer``'s retries and fail the records it still holds; whether it could.

    Stops its sender task first (so nothing is re-queued any more), then fails every batch,
    queued or in flight. Re-queued batches go back in the pending set first (their
    completion callback removes them from it), and the drain waiters' exceptions are
    consumed so that asyncio does not log them as never retrieved. The producer must still
    be stopped afterwards; that no longer waits for Kafka.
    """
    global _warned
    if not can_abandon(version):
        if not _warned:
            _warned = True
            logger.warning(
                "aiokafka %s is not among the versions checked (%s): a discarded producer is"
                " only stopped, and records refused with 503 may still reach Kafka later",
                version,
                ", ".join(sorted(VERIFIED_AIOKAFKA)),
            )
        return False
    sender_task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if sender_task is not None and not sender_task.done():
        sender_task.cancel()
        await asyncio.wait([sender_task], timeout=timeout_s)
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None:
        return True
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
    return True
