"""``device_silent``: a patient's source (vendor) sent nothing for a day.

The alerts worker watches ``pghd.points.v1`` (the readings the processors judged, one record
per patient and batch, co-partitioned with their anomalies) for the patients who consented
to ``device_silent``, and keeps in their feedback state when each source's readings last
*arrived* (the record's Kafka time, not the readings' own times: a phone that uploads a
backlog is connected). :func:`seen` moves that time on (in steps of ``granularity_s``, so a
watch posting every minute does not write the state every minute); :func:`silent` finds the
sources quiet for ``after_s`` and makes one event per silence: told once, until readings of
that source arrive again. A source is known only once a reading of it arrived after the
patient consented (or since the worker kept their state): a device that never sent anything
is not "silent".

Pure: points records, states and times in; states and events out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import orjson

from alerts.feedback.outbox import FeedbackState
from pghd.contracts import Severity
from pghd.feedback.events import FeedbackEvent, SilenceDetails, at_words, event_id
from pghd.feedback.wording import Kind, render

__all__ = ["VITALS", "seen", "silent", "sources_of", "tags_of"]

VITALS = "vitals"
"""The measurement of the readings themselves (``processors/points.py``)."""

_UNESCAPE = {"n": "\n", "t": "\t", "r": "\r"}


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at unescaped ``separator``s, escapes kept."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, escaped = [], False
    for char in text:
        if escaped:
            out.append(_UNESCAPE.get(char, char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out).rstrip(" ") if text.endswith("\\ ") else "".join(out)


def tags_of(line: str) -> tuple[str, dict[str, str]]:
    """The measurement and tags of one line of line protocol."""
    head = _split(line, " ")[0]
    measurement, *pairs = _split(head, ",")
    tags: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key:
            tags[_unescape(key)] = _unescape(value)
    return _unescape(measurement), tags


def sources_of(value: bytes | None) -> set[str]:
    """The sources of the readings in one ``pghd.points.v1`` record (none for anything else:
    an erasure marker, a record it cannot read)."""
    try:
        lines = orjson.loads(value or b"").get("lines")
    except (orjson.JSONDecodeError, AttributeError):
        return set()
    found: set[str] = set()
    for line in lines if isinstance(lines, list) else ():
        if isinstance(line, str) and line.startswith(VITALS + ","):
            measurement, tags = tags_of(line)
            if measurement == VITALS and tags.get("source"):
                found.add(tags["source"])
    return found


def seen(
    state: FeedbackState, sources: Iterable[str], *, at: datetime, granularity_s: float = 300.0
) -> FeedbackState:
    """``state`` with ``sources`` seen at ``at`` (a source already seen less than
    ``granularity_s`` before keeps its time: the same state is returned)."""
    step = timedelta(seconds=granularity_s)
    moved = {
        source: at
        for source in sources
        if (last := state.last_seen.get(source)) is None or at - last >= step
    }
    if not moved:
        return state
    return state.model_copy(update={"last_seen": {**state.last_seen, **moved}})


def _event(patient_id: str, source: str, last: datetime, *, after: timedelta) -> FeedbackEvent:
    return FeedbackEvent(
        id=event_id(patient_id, Kind.DEVICE_SILENT.value, source, last.isoformat()),
        kind=Kind.DEVICE_SILENT,
        patient_id=patient_id,
        occurred_at=last + after,
        severity=Severity.INFO,
        message=render(
            Kind.DEVICE_SILENT, Severity.INFO, {"source": source, "since": at_words(last)}
        ),
        details=SilenceDetails(source=source, last_reading_at=last),
    )


def silent(
    state: FeedbackState, *, now: datetime, after_s: float
) -> tuple[FeedbackState, list[FeedbackEvent]]:
    """The sources of ``state`` quiet for ``after_s`` and not told yet: their events, and the
    state that remembers them told (until the source is seen again)."""
    after = timedelta(seconds=after_s)
    events = [
        _event(state.patient_id, source, last, after=after)
        for source, last in sorted(state.last_seen.items())
        if now - last >= after and state.silence_told.get(source) != last
    ]
    if not events:
        return state, []
    told = {**state.silence_told}
    for event in events:
        assert isinstance(event.details, SilenceDetails)
        told[event.details.source] = event.details.last_reading_at
    return state.model_copy(update={"silence_told": told}), events
