"""Opening an Apple Health export and parsing it safely, in flat memory.

:func:`open_export` finds ``apple_health_export/export.xml`` in the zip (or takes the bare
XML) and streams it: a zip member is decompressed as it is read, and the stream counts the
bytes read so callers can show progress. :func:`iter_readings` parses it with
``defusedxml``'s ``iterparse``, which accepts the export's ``DOCTYPE`` and its internal subset
of ``ELEMENT``/``ATTLIST`` declarations but refuses any entity declaration (no entity bombs,
no external entities); each top-level element is handed to the
:class:`~pghd.apple_health.records.RecordMapper` when it ends and then dropped together
with the root's reference to it, so memory stays flat however large the export.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from pghd.apple_health.records import ExportStats, RecordMapper

__all__ = [
    "MEMBER",
    "ExportError",
    "ExportStream",
    "NotAnExport",
    "Readable",
    "UnsafeExport",
    "check_export",
    "iter_readings",
    "open_export",
]

MEMBER = "apple_health_export/export.xml"
_DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, OSError)  # corrupt zip member or file


class ExportError(ValueError):
    """The file cannot be imported; the message says why."""


class NotAnExport(ExportError):
    """Not an Apple Health export (no ``export.xml``, not XML, or not ``HealthData``)."""


class UnsafeExport(ExportError):
    """The XML declares entities or refers to external ones; refused, never expanded."""


class Readable(Protocol):
    """Anything with ``read(size) -> bytes`` (a file, a zip member, an :class:`ExportStream`)."""

    def read(self, size: int = -1, /) -> bytes: ...


class ExportStream:
    """A readable ``export.xml`` stream that counts the bytes read (``position``).

    ``total`` is the uncompressed size of ``export.xml``, so ``position / total`` is the
    share of the export parsed so far.
    """

    def __init__(self, raw: Readable, *, total: int, name: str) -> None:
        self._raw = raw
        self.total = total
        self.name = name
        self.position = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        self.position += len(data)
        return data


def _export_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    members = [
        info
        for info in archive.infolist()
        if PurePosixPath(info.filename).name == "export.xml" and not info.is_dir()
    ]
    if not members:
        raise NotAnExport("the zip holds no export.xml; is it an Apple Health export.zip?")
    return min(members, key=lambda info: (info.filename != MEMBER, len(info.filename)))


@contextmanager
def open_export(path: Path) -> Iterator[ExportStream]:
    """``export.xml`` of the export at ``path`` (an ``export.zip`` or the XML), streaming.

    Raises :class:`NotAnExport` when it is neither, ``FileNotFoundError`` when missing.
    """
    if zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise NotAnExport(f"{path.name} is not a readable zip: {exc}") from None
        with archive:
            info = _export_member(archive)
            try:
                member = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                # damaged entry, unsupported compression method, encrypted
                raise NotAnExport(f"{info.filename} cannot be read from the zip: {exc}") from None
            with member:
                yield ExportStream(member, total=info.file_size, name=info.filename)
        return
    with path.open("rb") as raw:
        head = raw.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith(b"<"):
            raise NotAnExport(f"{path.name} is neither a zip nor XML; expected export.zip")
        raw.seek(0)
        yield ExportStream(raw, total=path.stat().st_size, name=path.name)


def check_export(path: Path) -> None:
    """Refuse early what :func:`iter_readings` would refuse at its first element.

    Raises :class:`NotAnExport` (no ``export.xml``, not XML, root not ``HealthData``) or
    :class:`UnsafeExport` (entity declarations in the prolog).
    """
    with open_export(path) as stream:
        try:
            for _event, elem in iterparse(stream, events=("start",)):
                if elem.tag != "HealthData":
                    raise NotAnExport(f"the XML root is <{elem.tag}>, not <HealthData>")
                return
        except DefusedXmlException as exc:
            raise UnsafeExport(f"export.xml declares or references entities: {exc}") from None
        except ParseError as exc:
            raise NotAnExport(f"export.xml is not well-formed XML: {exc}") from None
        except _DAMAGED as exc:
            raise NotAnExport(f"the export is damaged: {exc}") from None
    raise NotAnExport("export.xml is empty")


def iter_readings(
    stream: Readable, *, patient_id: str, stats: ExportStats | None = None
) -> Iterator[dict[str, Any]]:
    """Readings of ``patient_id`` in ``stream`` (an ``export.xml``), in a deterministic order.

    Counts into ``stats`` as it goes. Raises :class:`UnsafeExport` on entity declarations or
    external references, :class:`NotAnExport` when the root is not ``HealthData``, and
    :class:`ExportError` when the XML is not well-formed (truncated, corrupt zip).
    """
    parser = RecordMapper(patient_id, stats if stats is not None else ExportStats())
    root: Element | None = None
    depth = 0
    try:
        for event, elem in iterparse(stream, events=("start", "end")):
            if event == "start":
                depth += 1
                if root is None:
                    if elem.tag != "HealthData":
                        raise NotAnExport(f"the XML root is <{elem.tag}>, not <HealthData>")
                    root = elem
                continue
            depth -= 1
            if depth == 1:
                yield from parser.element(elem)
                assert root is not None
                root.clear()
        yield from parser.finish()
    except DefusedXmlException as exc:
        raise UnsafeExport(f"export.xml declares or references entities, refused: {exc}") from None
    except ParseError as exc:
        raise ExportError(f"export.xml is not well-formed: {exc}") from None
    except _DAMAGED as exc:
        raise ExportError(f"the export is damaged: {exc}") from None
