"""The continuation cursor of a paged Observation search: where the last page ended.

Readings are served in one total order: time, then source, device, metric and event id as
stored (the ``vitals`` tags and the ``event_id`` field). A page ends after a whole reading;
the cursor names that reading's place in the order (:class:`ReadingKey`), so the next page
starts right after it without reading anything before it again, and every reading is served
exactly once however the pages are cut. It also carries the span of the last InfluxDB
window read (the next page starts with a window sized for the data's density) and a
fingerprint of the search it continues, so that it is not used with another one.

On the wire it is base64url (no padding) of a small JSON object: opaque to clients, who only
follow ``next`` links. Pure.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from pghd.export.records import format_time, parse_time

__all__ = ["Cursor", "CursorError", "ReadingKey", "decode_cursor", "encode_cursor"]

_VERSION = 1
_MAX_LENGTH = 2048


@dataclass(frozen=True, slots=True, order=True)
class ReadingKey:
    """A reading's place in the order of a search: time, then its stored tags and event id
    (``device`` as stored: ``unknown`` when the source named none)."""

    time: datetime
    source: str
    device: str
    metric: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended (the last reading served), how wide its last window was, and
    which search it belongs to (:attr:`query`, a fingerprint of patient, codes and dates)."""

    after: ReadingKey
    span: timedelta
    query: str


class CursorError(ValueError):
    """A cursor that was not made by this server (or by another version of it)."""


def encode_cursor(cursor: Cursor) -> str:
    """``cursor`` as the opaque text of a ``_cursor`` parameter."""
    key = cursor.after
    document = {
        "v": _VERSION,
        "t": format_time(key.time),
        "k": [key.source, key.device, key.metric, key.event_id],
        "s": cursor.span.total_seconds(),
        "q": cursor.query,
    }
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor of a ``_cursor`` parameter; :class:`CursorError` if it is not one."""
    if len(text) > _MAX_LENGTH:
        raise CursorError("the cursor is too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        document = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise CursorError("the cursor is not one this server made") from exc
    if not isinstance(document, dict) or document.get("v") != _VERSION:
        raise CursorError("the cursor is not one this server made")
    key, span, query = document.get("k"), document.get("s"), document.get("q")
    try:
        time = parse_time(document.get("t"))
    except OverflowError:  # 0001-01-01T00:00:00+14:00: before year 1 in UTC
        raise CursorError("the cursor is not one this server made") from None
    if (
        time is None
        or not isinstance(key, list)
        or len(key) != 4
        or not all(isinstance(part, str) for part in key)
        or not isinstance(span, int | float)
        or not 0 < span <= 400 * 86400
        or not isinstance(query, str)
    ):
        raise CursorError("the cursor is not one this server made")
    return Cursor(after=ReadingKey(time, *key), span=timedelta(seconds=float(span)), query=query)
