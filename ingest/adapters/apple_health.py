"""Apple Health exports (``export.zip`` or ``export.xml``) to candidates, a batch at a time.

The parsing itself is :mod:`pghd.apple_health` (pure and streaming; the ``pghd import
apple-health`` command uses it too): supported record types, unit mapping, blood-pressure
pairing, sleep per night and the deterministic event ids are described there. This adapter
numbers the readings it yields and wraps each as a :class:`~ingest.intake.Candidate` for
:func:`~ingest.intake.triage`; the pointer names the reading's position in the export's
reading sequence (``export.xml#/readings/17``), the order being deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from ingest.intake import Candidate
from pghd.apple_health import ExportStats, Readable, iter_readings

__all__ = ["candidate_batches"]


def candidate_batches(
    stream: Readable, *, patient_id: str, size: int, stats: ExportStats
) -> Iterator[list[Candidate]]:
    """Candidates of ``stream``'s readings for ``patient_id``, ``size`` at a time.

    Raises :class:`pghd.apple_health.ExportError` (and its kinds) as the parser does.
    """
    readings: Iterator[dict[str, Any]] = iter_readings(stream, patient_id=patient_id, stats=stats)
    index = 0
    while batch := list(islice(readings, size)):
        yield [
            Candidate(pointer=f"export.xml#/readings/{index + i}", reading=reading)
            for i, reading in enumerate(batch)
        ]
        index += len(batch)
