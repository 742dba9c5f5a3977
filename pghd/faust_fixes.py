"""A patch of faust-streaming 0.15.3: input partitions stay paused until the seek after recovery.

The bug (faust-streaming #596, "A race condition in recovery causes unrecoverable gaps in acked
offsets and consequently blocks committing", open; #216 is the same race in apps without
tables, whose fix #217 moved the flow resume after the seek but left the partition resume
before it; the duplicate ``_acked`` entries are robinhood/faust #559 and #625). After a rebalance
and the table recovery, ``Recovery.on_recovery_completed`` (faust/tables/recovery.py, 0.15.3
lines 649-660) makes the input partitions active (``consumer.resume_partitions``), *then*
awaits ``consumer.perform_seek()``, then resumes the flow (``app.flow_control.resume()``,
which also empties the agents' channel queues: faust/channels.py line 145,
mode/utils/queues.py ``FlowControlEvent.resume``). The fetch loop
(``Consumer._drain_messages``, faust/transport/consumer.py line 1170 on) already runs for
the changelogs, and the consumer thread's ``fetched_records`` gets the live set of active
partitions, so input records are fetched and delivered while the seek is in flight:

- those events sit in the channel queue that ``flow_control.resume()`` empties; they are never
  processed nor acked. A partition without a committed offset is not sought back (aiokafka
  ``seek_to_committed`` seeks only offsets > 0), so they are never fetched again; elsewhere the
  fetch loop has meanwhile set ``_read_offset`` to the end of the batch, and their second
  fetch is dropped below it ("DROPPED MESSAGE ROFF", consumer.py line 1226). Either way the
  readings are not judged and the partition's commit stops at the hole until a restart;
- ``perform_seek`` (consumer.py lines 565-580) resets ``_read_offset``/``_committed_offset``
  while a batch is being delivered; the next record then looks like a jump, and the offsets
  just delivered are recorded as a *gap* (lines 1209-1214) that ``_new_offset`` (lines
  1117-1145) adds to ``_acked`` on top of the same acked offsets: with every offset in the
  list twice, each commit moves the partition by one offset (N readings, N commit intervals);
- the records fetched again after the seek are delivered a second time.

A second way to the same hole: the consumer thread's ``fetched_records`` gets the *live* set of
active partitions (faust/transport/drivers/aiokafka.py lines 1070-1108) and reads it when data
arrives; when recovery pauses the changelog partitions at its end, that set can be empty by
then, and aiokafka reads an empty set as "all partitions" (``if partitions and tp not in
partitions``, aiokafka/consumer/fetcher.py line 1221): input records are taken from aiokafka
(their position moves on) and then not yielded by Faust (not active). The seek puts partitions
with a committed offset back; a partition without one keeps the moved position, and those
records are never delivered.

The fix, by :func:`apply`: from a partition assignment (``Consumer.on_partitions_assigned``)
until the next ``Consumer.perform_seek`` has finished, ``Consumer.resume_partitions`` leaves
the newly assigned input (non-changelog) partitions paused and remembers them, and
``perform_seek`` resumes them once it is done (unless a new rebalance began meanwhile; that
one's recovery resumes its own partitions). Faust's ``getmany`` and the consumer thread only
deliver active partitions, so no input record reaches a channel queue before the positions are
set to the committed offsets, and nothing is there when ``flow_control.resume()`` empties it.
The order becomes the one #217 describes: seek, then resume partitions, then flow. And
``AIOKafkaConsumerThread._fetch_records`` gets a snapshot of the active partitions taken in the
consumer thread, and fetches nothing when it is empty, so no pause can turn a fetch into a fetch
of every partition.

:func:`apply` raises on any other faust-streaming version: the lines above were read in
0.15.3. On an upgrade, check whether #596 is fixed there, then drop this module or move
``FAUST_VERSION``. ``tests/integration/test_restart_no_loss.py`` reproduces the bug.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

__all__ = [
    "FAUST_VERSION",
    "apply",
    "defer_resume_until_seek",
    "fetch_only_active",
    "mark_unsought_on_assignment",
    "resume_after_seek",
]

logger = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"
PATCHED = "__pghd_faust_596__"
UNSOUGHT = "_pghd_unsought"  # input partitions assigned and not yet sought to committed
DEFERRED = "_pghd_deferred"  # of those, the ones a resume_partitions call asked for

Assigned = Callable[..., Awaitable[None]]
Resume = Callable[[Any, Iterable[Any]], None]
Seek = Callable[[Any], Awaitable[None]]
Fetch = Callable[..., Awaitable[Any]]


def _inputs(consumer: Any, tps: Iterable[Any]) -> set[Any]:
    changelogs = consumer.app.tables.changelog_topics
    return {tp for tp in tps if tp.topic not in changelogs}


def mark_unsought_on_assignment(original: Assigned) -> Assigned:
    """Wrap ``Consumer.on_partitions_assigned``: the assigned input partitions await a seek."""

    @functools.wraps(original)
    async def on_partitions_assigned(self: Any, assigned: Any, generation_id: int = 0) -> None:
        inputs = _inputs(self, assigned)
        setattr(self, UNSOUGHT, inputs)
        setattr(self, DEFERRED, set())
        self._buffered_partitions.difference_update(inputs)
        await original(self, assigned, generation_id)

    setattr(on_partitions_assigned, PATCHED, True)
    return on_partitions_assigned


def defer_resume_until_seek(original: Resume) -> Resume:
    """Wrap ``Consumer.resume_partitions``: input partitions not yet sought stay paused."""

    @functools.wraps(original)
    def resume_partitions(self: Any, tps: Iterable[Any]) -> None:
        wanted = set(tps)
        held = wanted & getattr(self, UNSOUGHT, set())
        if held:
            getattr(self, DEFERRED).update(held)
            logger.debug("resume of %d input partitions deferred until the seek", len(held))
        original(self, wanted - held)

    setattr(resume_partitions, PATCHED, True)
    return resume_partitions


def resume_after_seek(original: Seek, resume: Resume) -> Seek:
    """Wrap ``Consumer.perform_seek``: afterwards resume the input partitions it held back."""

    @functools.wraps(original)
    async def perform_seek(self: Any) -> None:
        generation = self.app.consumer_generation_id
        try:
            await original(self)
        finally:
            # Also when the seek failed: then Faust's own order (resume anyway) is kept.
            if self.app.consumer_generation_id == generation:
                setattr(self, UNSOUGHT, set())
                deferred: set[Any] = getattr(self, DEFERRED, set()) & set(self.assignment())
                setattr(self, DEFERRED, set())
                if deferred:
                    resume(self, deferred)
                    logger.debug("resumed %d input partitions after the seek", len(deferred))

    setattr(perform_seek, PATCHED, True)
    return perform_seek


def fetch_only_active(original: Fetch) -> Fetch:
    """Wrap ``AIOKafkaConsumerThread._fetch_records``: snapshot the active partitions; none
    active, nothing fetched (aiokafka would take an empty set for all partitions)."""

    @functools.wraps(original)
    async def _fetch_records(
        self: Any,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        if active_partitions is not None:  # None: a client-only app, every partition
            active_partitions = frozenset(active_partitions)
            if not active_partitions:
                return {}
        return await original(
            self, consumer, active_partitions, timeout=timeout, max_records=max_records
        )

    setattr(_fetch_records, PATCHED, True)
    return _fetch_records


def apply() -> None:
    """Patch Faust's consumer once; raise on a faust-streaming other than 0.15.3."""
    if faust.__version__ != FAUST_VERSION:
        raise RuntimeError(
            f"pghd.faust_fixes was written against faust-streaming {FAUST_VERSION},"
            f" this is {faust.__version__}: check faust-streaming #596 in that release,"
            " then update or remove the patch"
        )
    if getattr(Consumer.perform_seek, PATCHED, False):
        return
    resume = Consumer.resume_partitions
    Consumer.on_partitions_assigned = mark_unsought_on_assignment(  # type: ignore[method-assign]
        Consumer.on_partitions_assigned
    )
    Consumer.resume_partitions = defer_resume_until_seek(resume)  # type: ignore[method-assign,assignment]
    Consumer.perform_seek = resume_after_seek(  # type: ignore[method-assign,assignment]
        Consumer.perform_seek, resume
    )
    AIOKafkaConsumerThread._fetch_records = fetch_only_active(  # type: ignore[method-assign,assignment]
        AIOKafkaConsumerThread._fetch_records
    )
    logger.debug("patched faust Consumer for faust-streaming #596")
