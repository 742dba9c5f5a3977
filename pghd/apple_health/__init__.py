"""Apple Health exports (``export.zip`` or its ``export.xml``) as readings, streaming.

:mod:`pghd.apple_health.export` opens an export and parses it safely in flat memory;
:mod:`pghd.apple_health.records` says what becomes a reading (units, blood-pressure
pairing, sleep per night, deterministic event ids). Pure: no environment, no network; the
``pghd import apple-health`` command and ingest's upload endpoint do the I/O.
"""

from pghd.apple_health.export import (
    MEMBER,
    ExportError,
    ExportStream,
    NotAnExport,
    Readable,
    UnsafeExport,
    check_export,
    iter_readings,
    open_export,
)
from pghd.apple_health.records import QUANTITY_TYPES, ExportStats, RecordMapper

__all__ = [
    "MEMBER",
    "QUANTITY_TYPES",
    "ExportError",
    "ExportStats",
    "ExportStream",
    "NotAnExport",
    "Readable",
    "RecordMapper",
    "UnsafeExport",
    "check_export",
    "iter_readings",
    "open_export",
]
