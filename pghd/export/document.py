"""An export as bytes, written as its items arrive: a FHIR Bundle or an array of data points.

:func:`export_chunks` turns a patient's readings and findings (async iterables, as the
InfluxDB reader streams them) into the document's bytes in chunks of about
``chunk_bytes``: the Bundle's own elements first, then one entry per reading and per
finding, then the closing brackets. Nothing holds more than a chunk, so a history of any
length is served in constant memory. A Bundle without entries leaves ``entry`` out (FHIR
JSON has no empty arrays); the Open mHealth export is then ``[]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from pghd.export import fhir, omh
from pghd.export.records import StoredFinding, StoredReading

__all__ = ["MEDIA_TYPES", "ExportFormat", "export_chunks", "json_array_chunks"]


class ExportFormat(StrEnum):
    """The formats of an export."""

    FHIR = "fhir"
    OMH = "omh"


MEDIA_TYPES: dict[ExportFormat, str] = {
    ExportFormat.FHIR: "application/fhir+json",
    ExportFormat.OMH: "application/json",
}


async def json_array_chunks(
    items: AsyncIterable[Any],
    *,
    prefix: bytes = b"[",
    suffix: bytes = b"]",
    empty: bytes = b"[]",
    chunk_bytes: int = 64 * 1024,
) -> AsyncIterator[bytes]:
    """``prefix``, the items as JSON separated by commas, ``suffix``; ``empty`` when there is
    no item. Yields chunks of at least ``chunk_bytes`` (the last one may be shorter)."""
    buffer = bytearray()
    count = 0
    async for item in items:
        buffer += prefix if count == 0 else b",\n"
        buffer += orjson.dumps(item)
        count += 1
        if len(buffer) >= chunk_bytes:
            yield bytes(buffer)
            buffer.clear()
    buffer += suffix if count else empty
    yield bytes(buffer)


async def _mapped(
    readings: AsyncIterable[StoredReading],
    findings: AsyncIterable[StoredFinding],
    on_reading: Callable[[StoredReading], dict[str, Any]],
    on_finding: Callable[[StoredFinding], dict[str, Any]],
) -> AsyncIterator[dict[str, Any]]:
    async for reading in readings:
        yield on_reading(reading)
    async for finding in findings:
        yield on_finding(finding)


def export_chunks(
    format_: ExportFormat,
    patient_id: str,
    readings: AsyncIterable[StoredReading],
    findings: AsyncIterable[StoredFinding],
    *,
    now: datetime,
    chunk_bytes: int = 64 * 1024,
) -> AsyncIterator[bytes]:
    """The export document of ``patient_id``, readings first, then findings."""
    if format_ is ExportFormat.FHIR:
        head = orjson.dumps(fhir.bundle_head(patient_id, now=now))
        items = _mapped(
            readings,
            findings,
            lambda r: fhir.entry(fhir.observation(r)),
            lambda f: fhir.entry(fhir.detected_issue(f)),
        )
        return json_array_chunks(
            items,
            prefix=head[:-1] + b',"entry":[\n',
            suffix=b"\n]}\n",
            empty=head + b"\n",
            chunk_bytes=chunk_bytes,
        )
    items = _mapped(
        readings,
        findings,
        lambda r: omh.data_point(r, now=now),
        lambda f: omh.finding_point(f, now=now),
    )
    return json_array_chunks(
        items, prefix=b"[\n", suffix=b"\n]\n", empty=b"[]\n", chunk_bytes=chunk_bytes
    )
