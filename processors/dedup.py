"""Deduplication keys and their time bound, for the ``seen`` table (pure functions).

A reading is a repeat when the same patient's same source (vendor and device) sent the same
``event_id`` before: the key is :func:`reading_key`, so patient A's ``event_id`` "shared-1"
never drops patient B's, and a watch's never drops a chest strap's. Keys begin with the
patient id, the unit of partitioning.

The table holds ``reading key -> {"t": judged at (ms), "p": partition, "o": offset}``
and, for anomalies being sent, ``anomaly|<id> -> {"intent_ms": ms, "p": partition[,
"sent": true]}``. Both are bounded by time: an entry older than the window
(``dedup_window_s``, 3 days by default) counts as absent (:func:`is_current`) and a periodic
sweep deletes it (:func:`expired_entries`) from the local store and, with a tombstone, from
the compacted changelog, in the partition the entry names. A repeat arriving after the
window is judged again; its anomaly id is the same as the first time's, so the alerts
service still drops it.

A reading's mark and its effect on the patient's state are written to two tables, which a
crash can leave one without the other. The patient's state therefore also records the Kafka
position it holds everything up to (``PatientState.through``), and :func:`is_repeat` decides
with both: a reading at or before that position is in the state already, whatever ``seen``
says; a mark made by this very message (same partition and offset) but beyond that position
belongs to a batch whose state was lost, so the reading is judged again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence, Set
from typing import Any

from pghd.contracts import Measurement

__all__ = [
    "ANOMALY_PREFIX",
    "entry",
    "expired_entries",
    "first_occurrences",
    "is_current",
    "is_repeat",
    "key_of",
    "reading_identity",
    "reading_key",
]

ANOMALY_PREFIX = "anomaly|"


def reading_identity(reading: Measurement) -> str:
    """What makes a reading the same reading: patient, source vendor, device, ``event_id``."""
    source = reading.source
    return f"{reading.patient_id}|{source.vendor}|{source.device_id or ''}|{reading.event_id}"


def reading_key(reading: Measurement) -> str:
    """The ``seen`` key of ``reading``: ``<patient_id>|<digest of its identity>``."""
    source = reading.source
    return key_of(
        patient_id=reading.patient_id,
        vendor=source.vendor,
        device_id=source.device_id,
        event_id=reading.event_id,
    )


def key_of(*, patient_id: str, vendor: str, device_id: str | None, event_id: str) -> str:
    """:func:`reading_key` from the parts of a reading's identity."""
    identity = f"{patient_id}|{vendor}|{device_id or ''}|{event_id}"
    digest = hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()
    return f"{patient_id}|{digest}"


def entry(*, now_ms: int, partition: int, offset: int) -> dict[str, int]:
    """The ``seen`` value of a reading judged at ``now_ms``, read at ``offset`` of
    ``partition``."""
    return {"t": now_ms, "p": partition, "o": offset}


def _stamp(value: Any) -> int | None:
    if not isinstance(value, dict):
        return None
    stamp = value.get("t", value.get("intent_ms"))
    return stamp if isinstance(stamp, int) else None


def is_current(value: Any, *, now_ms: int, window_ms: int) -> bool:
    """Whether a ``seen`` value still counts (present and younger than the window).

    A value without a time (written before entries carried one) counts.
    """
    if value is None:
        return False
    stamp = _stamp(value)
    return stamp is None or now_ms - stamp < window_ms


def is_repeat(
    mark: Any,
    *,
    partition: int,
    offset: int,
    through: tuple[int, int] | None,
    now_ms: int,
    window_ms: int,
) -> bool:
    """Whether the reading at ``offset`` of ``partition`` was judged already and is skipped.

    ``mark`` is its ``seen`` value; ``through`` the ``(partition, offset)`` of the last
    message whose effect the patient's state holds (``None``: none recorded).
    """
    if through is not None and through[0] == partition and offset <= through[1]:
        return True
    if not is_current(mark, now_ms=now_ms, window_ms=window_ms):
        return False
    own = isinstance(mark, dict) and mark.get("p") == partition and mark.get("o") == offset
    return not own


def expired_entries(
    items: Iterable[tuple[Any, Any]], *, now_ms: int, window_ms: int, owned: Set[int]
) -> list[tuple[str, int]]:
    """``(key, partition)`` of the entries of ``items`` older than the window, in the
    partitions this worker ``owned``; entries without a time or partition are kept."""
    out: list[tuple[str, int]] = []
    for key, value in items:
        stamp = _stamp(value)
        if stamp is None or now_ms - stamp < window_ms:
            continue
        partition = value.get("p")
        if isinstance(partition, int) and partition in owned and isinstance(key, str):
            out.append((key, partition))
    return out


def first_occurrences(readings: Sequence[Measurement]) -> tuple[list[Measurement], list[str]]:
    """``readings`` without repeats within them (same :func:`reading_identity`), in order,
    and the identities of the repeats left out."""
    unique: list[Measurement] = []
    repeats: list[str] = []
    seen: set[str] = set()
    for reading in readings:
        identity = reading_identity(reading)
        if identity in seen:
            repeats.append(identity)
        else:
            seen.add(identity)
            unique.append(reading)
    return unique, repeats
