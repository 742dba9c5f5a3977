"""What makes a reading the same reading, and when one is skipped (pure functions).

A reading is a repeat when the same patient's same source (vendor and device) sent the same
``event_id`` before (:func:`reading_identity`), so patient A's ``event_id`` "shared-1"
never drops patient B's, and a watch's never drops a chest strap's. Each patient's state
record (:mod:`processors.state`) holds the digests of the readings judged within the dedup
window (``dedup_window_s``, 3 days by default) and ``through``, the Kafka position of the
last reading it holds; :func:`is_repeat` decides with both. A repeat arriving after the
window is judged again; its anomaly id is the same as the first time's, so the alerts
service still drops it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pghd.contracts import Measurement

__all__ = ["first_occurrences", "is_repeat", "reading_identity"]


def reading_identity(reading: Measurement) -> str:
    """What makes a reading the same reading: patient, source vendor, device, ``event_id``."""
    source = reading.source
    return f"{reading.patient_id}|{source.vendor}|{source.device_id or ''}|{reading.event_id}"


def is_repeat(*, partition: int, offset: int, through: tuple[int, int] | None, known: bool) -> bool:
    """Whether the reading at ``offset`` of ``partition`` was judged already and is skipped.

    ``through`` is the ``(partition, offset)`` of the last message whose effect the
    patient's record holds (``None``: none recorded): a reading at or before it is a replay
    of a batch the record holds. ``known``: the record holds the reading's digest (a client
    sent it again, as another message).
    """
    if through is not None and through[0] == partition and offset <= through[1]:
        return True
    return known


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
