"""The ``state`` table: patient records (:mod:`processors.state`) read, cached and written.

Faust keeps the table: it recovers it from its changelog topic (``<app id>-state-changelog``,
compacted, as many partitions as the readings) on every assignment before the agent gets
a reading, and keeps standby copies. This module reads it, but writes *around* Faust's
per-key changelog buffer: a batch's records are sent straight to the changelog, on the
partition of the readings they came from, and awaited together, once, before the batch
returns (and so before its offsets can be committed); only then does the local store take
them. (Faust's own table writes publish one message at a time from a bounded buffer, and
stop handing out input while it is full.)

Decoded records are cached in process (least recently used first out, ``cache_size``
patients); the cache is emptied whenever partitions are assigned or revoked, since the
table may then hold records another worker wrote.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import faust
import faust.streams
from faust.types import TP

from pghd.kafka_send import send_all
from pghd.pseudonym import pseudonym
from pghd.table_partition import in_partition
from processors.state import (
    PatientRecord,
    bucket_key,
    decode_bucket,
    decode_record,
)

__all__ = ["StateStore", "Write"]

logger = logging.getLogger(__name__)

#: ``(partition, table key, value or None to delete)``
Write = tuple[int, str, bytes | None]


class StateStore:
    """Patient records in a Faust table, written one record per patient per batch."""

    def __init__(self, app: faust.App, *, partitions: int, cache_size: int) -> None:
        self.table = app.Table(
            "state",
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            help="patient_id -> the patient's state record (processors.state);"
            " <patient_id>|dedup|<n> -> a sealed bucket of reading digests",
        )
        self._cache: OrderedDict[str, PatientRecord] = OrderedDict()
        # records kept but not yet written, one dict per batch in flight, oldest first
        self._pending: deque[dict[str, PatientRecord]] = deque()
        self._cache_size = cache_size
        self._generation = 0
        self._cached_generation = 0
        app.on_partitions_revoked.connect(self._moved)
        app.on_partitions_assigned.connect(self._moved)

    async def _moved(self, *args: Any, **kwargs: Any) -> None:
        self._generation += 1

    @property
    def generation(self) -> int:
        """Counts assignments and revocations (the cache is emptied on each)."""
        return self._generation

    def forget(self) -> None:
        """Drop every cached record (they are read from the table again)."""
        self._cache.clear()
        self._pending.clear()

    def load(self, partition_of: Mapping[str, int]) -> dict[str, PatientRecord]:
        """The records of the patients of ``partition_of`` (patient id -> the partition
        of their readings); a fresh one for a newcomer."""
        if self._cached_generation != self._generation:
            self._cache.clear()
            self._pending.clear()  # the loop drains before judging after a move
            self._cached_generation = self._generation
        found: dict[str, PatientRecord] = {}
        for pid, partition in partition_of.items():
            record = self._cache.get(pid)
            if record is not None:
                self._cache.move_to_end(pid)
            else:
                record = self._unwritten(pid)
            if record is None:
                with in_partition(partition):
                    record = self._read(pid)
            found[pid] = record
        return found

    def _read(self, pid: str) -> PatientRecord:
        raw = self.table.get(pid.encode())
        if raw is None:
            return PatientRecord()
        try:
            record = decode_record(raw)
        except (KeyError, TypeError, ValueError):
            logger.warning("state record of %s is unreadable; starting it afresh", pseudonym(pid))
            return PatientRecord()
        for number in record.sealed:
            bucket = self.table.get(bucket_key(pid, number).encode())
            if bucket is None:
                continue
            try:
                record.remember_bucket(decode_bucket(bucket))
            except (KeyError, TypeError, ValueError):
                logger.warning(
                    "dedup bucket %d of %s is unreadable; skipped", number, pseudonym(pid)
                )
        return record

    def _unwritten(self, pid: str) -> PatientRecord | None:
        for batch in reversed(self._pending):
            if (record := batch.get(pid)) is not None:
                return record
        return None

    def keep(self, records: Mapping[str, PatientRecord]) -> None:
        """Cache ``records``, the newest state of their patients; until :meth:`settled`
        says their batch was written, they are read from here whatever the cache drops."""
        self._pending.append(dict(records))
        for pid, record in records.items():
            self._cache[pid] = record
            self._cache.move_to_end(pid)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def settled(self) -> None:
        """The oldest batch :meth:`keep` was given is written (or was given up)."""
        if self._pending:
            self._pending.popleft()

    async def write(self, writes: Sequence[Write]) -> None:
        """Send ``writes`` to the changelog, wait until Kafka acknowledged every one
        (retrying), then apply them to the local store."""
        if not writes:
            return
        topic = self.table.changelog_topic.get_topic_name()
        sent = await send_all(
            self.table.app.producer,
            [(topic, key.encode(), value, partition) for partition, key, value in writes],
        )
        # the RocksDB store's mark of how far it holds the changelog, as Faust's own writes
        # leave it (the in-memory store ignores it)
        newest: dict[int, int] = {}
        for meta in sent:
            newest[meta.partition] = max(newest.get(meta.partition, -1), meta.offset)
        for partition, offset in newest.items():
            store: Any = self.table.data
            store.set_persisted_offset(TP(topic, partition), offset)
        for partition, key, value in writes:
            with in_partition(partition):
                if value is None:
                    self.table.data.pop(key.encode(), None)
                else:
                    self.table.data[key.encode()] = value

    async def delete(self, keys: Sequence[tuple[int, str]]) -> None:
        """Delete ``(partition, key)`` entries: tombstones to the changelog, then locally."""
        if not keys:
            return
        topic = self.table.changelog_topic.get_topic_name()
        await send_all(self.table.app.producer, [(topic, key.encode(), None, p) for p, key in keys])
        for _, key in keys:
            self.table.data.pop(key.encode(), None)

    async def erase(self, patient_id: str, partition: int) -> dict[str, int]:
        """Delete every entry of ``patient_id`` (their record and dedup buckets, in
        ``partition``) and forget them in memory; what was deleted, counted."""
        prefix = f"{patient_id}|"
        keys = [key for key, _ in self.items() if key == patient_id or key.startswith(prefix)]
        self._cache.pop(patient_id, None)
        for batch in self._pending:
            batch.pop(patient_id, None)
        await self.delete([(partition, key) for key in keys])
        records = int(patient_id in keys)
        return {"state_records": records, "dedup_buckets": len(keys) - records}

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every ``(key, value)`` the local store holds (all partitions it has)."""
        for key, value in self.table.data.items():
            if isinstance(key, bytes) and isinstance(value, bytes):
                yield key.decode("utf-8", errors="replace"), value
