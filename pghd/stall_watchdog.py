"""Re-read a partition whose stream stopped short of what the consumer fetched.

After a rebalance (a worker of the group died or joined), Faust (faust-streaming 0.15 with
aiokafka 0.14) can leave a partition in a state where aiokafka keeps fetching it — its
position reaches the end of the partition — while the messages in between never reach
the agent: the group's committed offset stays where it was and the records sit
unprocessed until the next rebalance or restart. Faust's own diagnostics only log it
(see the "has not sent fetch request" / "stream idle" family of faust-streaming issues). We
met it in ``tests/integration/test_alerts_multi_worker.py``: after one of two alerts workers
was SIGKILLed, the survivor took its partitions over, paged some of their patients and
never read the rest (fetched to offset 7, committed 3, nothing processed for minutes).

The watchdog checks every assigned partition of the watched topics: when the committed
offset is behind the consumer's position and has not moved for ``after_s`` seconds
(no rebalance or recovery in progress), it logs an error, counts it and seeks the
partition back to the committed offset, so the skipped messages are read again. Messages
processed but not yet committed are read twice; both workers that use it deduplicate
(the processors on the reading identity, the alerts service on the anomaly id).

:func:`stalled` is the pure decision; :func:`install` wires it into a Faust app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Progress", "install", "stalled"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """The committed offset of one partition and since when it has been that."""

    committed: int
    since: float


def stalled(
    previous: Mapping[Any, Progress],
    offsets: Mapping[Any, tuple[int, int]],
    *,
    now: float,
    after_s: float,
) -> tuple[dict[Any, Progress], list[Any]]:
    """New progress records and the partitions to re-read.

    ``offsets`` maps each partition to (committed offset, consumer position). A partition
    is stalled when it is behind (committed < position) and its committed offset is the
    one seen ``after_s`` seconds ago or more. A partition caught up, or whose committed
    offset moved, starts over; one re-read starts over from ``now``.
    """
    progress: dict[Any, Progress] = {}
    stuck: list[Any] = []
    for tp, (committed, position) in offsets.items():
        if committed >= position:
            continue
        seen = previous.get(tp)
        if seen is None or seen.committed != committed:
            progress[tp] = Progress(committed=committed, since=now)
        elif now - seen.since >= after_s:
            stuck.append(tp)
            progress[tp] = Progress(committed=committed, since=now)
        else:
            progress[tp] = seen
    return progress, stuck


def install(
    app: Any,
    *,
    topics: Collection[str],
    after_s: float,
    clock: Callable[[], float],
    on_reseek: Callable[[str], None] = lambda topic: None,
) -> Callable[[], Any]:
    """Add a timer to the Faust ``app`` that re-reads stalled partitions of ``topics``;
    return its coroutine function. ``on_reseek(topic)`` is called for each re-read."""
    state: dict[Any, Progress] = {}
    interval = max(1.0, after_s / 3)

    async def check() -> None:
        nonlocal state
        if app.rebalancing or app.in_recovery:
            state = {}
            return
        consumer = app.consumer
        offsets: dict[Any, tuple[int, int]] = {}
        try:
            for tp in consumer.assignment():
                if tp.topic not in topics:
                    continue
                # Faust keeps the offset it last committed for the group (None before any).
                committed = consumer._committed_offset.get(tp)
                position = await consumer.position(tp)
                if committed is not None and position is not None:
                    offsets[tp] = (int(committed), int(position))
        except Exception as exc:  # a broker hiccup: try again next time
            logger.debug("stall check skipped: %r", exc)
            return
        state, stuck = stalled(state, offsets, now=clock(), after_s=after_s)
        for tp in stuck:
            committed, position = offsets[tp]
            logger.error(
                "partition %s[%d] fetched to offset %d but processed only to %d for %.0f s"
                " (a Faust rebalance race): reading it again from %d",
                tp.topic,
                tp.partition,
                position,
                committed,
                after_s,
                committed,
            )
            on_reseek(tp.topic)
            try:
                await consumer.seek(tp, committed)
            except Exception as exc:
                logger.warning("re-reading %s[%d] failed: %r", tp.topic, tp.partition, exc)

    app.timer(interval=interval)(check)
    return check
