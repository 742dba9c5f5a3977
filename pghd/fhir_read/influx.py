"""Reading one page of an Observation search from InfluxDB (the I/O around the pure parts).

A page starts where the search's cursor ended (or at its ``date`` range's start) and never
reads anything before it. The range is read within [1970, a day after now] whatever the
``date`` parameters say (readings are never outside it):

1. *seek*: the time of the patient's next reading (:func:`~pghd.fhir_read.flux.seek_query`,
   ``first()`` per series, which InfluxDB 2.x pushes down to storage: one point read per
   series), so a gap of months costs one query, not a walk through empty windows;
2. *windows* from there (:func:`~pghd.fhir_read.flux.window_query`), each asking for only as
   many rows as the page still needs, until one reading more than the page holds was seen
   (:class:`~pghd.fhir_read.paging.PageBuilder`), the range ends, or a window comes back
   empty (then seek again). A window's span adapts to the data's density as the export's do
   (:func:`~pghd.export.influx.next_span`) and travels in the cursor, so the next page
   starts with a fitting one;
3. *findings*: the ``anomalies`` of the page's time span, one query, to interpret the page's
   readings (:mod:`pghd.fhir_read.interpretation`).

Times compare exactly: the store writes readings' times as Python gives them, to the
microsecond, and InfluxDB gives them back so; a cursor's time is a reading's own.

Every query is bounded by the page: the rows read are at most the page's readings' rows and
the next reading's, plus what the windows' spans hold. Every failure is an
:class:`~pghd.export.influx.ExportStoreError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from pghd.export.influx import EPOCH, FluxReader, next_span
from pghd.export.records import (
    StoredFinding,
    StoredReading,
    finding_of,
    parse_time,
    readings_of,
)
from pghd.fhir_read import flux
from pghd.fhir_read.cursor import Cursor
from pghd.fhir_read.paging import PageBuilder
from pghd.fhir_read.search import ObservationSearch

__all__ = ["InfluxObservationReader", "ObservationPage", "ObservationStore"]

_AHEAD = timedelta(days=1)  # ingest takes readings up to 10 min ahead of its clock


@dataclass(frozen=True, slots=True)
class ObservationPage:
    """One page: its readings in the search's order, the findings of their time span, and
    the cursor of the next page (None on the last)."""

    readings: list[StoredReading] = field(default_factory=list)
    findings: list[StoredFinding] = field(default_factory=list)
    next: Cursor | None = None


class ObservationStore(Protocol):
    """Where the read API reads pages (:class:`InfluxObservationReader`, or a fake)."""

    async def page(self, search: ObservationSearch, *, now: datetime) -> ObservationPage: ...
    async def close(self) -> None: ...


def _bounds(search: ObservationSearch, now: datetime) -> tuple[datetime, datetime]:
    """The times a search reads, ``[start, stop)``: its ``date`` range within [1970, a day
    after ``now``], where readings can be (``date=ge1600-01-01`` or ``le2300-01-01`` would
    otherwise reach Flux's ``range``, which InfluxDB refuses before 1677 and after 2262)."""
    start = max(search.window.start or EPOCH, EPOCH)
    stop = min(search.window.stop or now + _AHEAD, now + _AHEAD)
    return start, stop


class InfluxObservationReader(FluxReader):
    """Reads the pages of Observation searches from one bucket."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        bucket: str,
        timeout_s: float = 30.0,
        first_span: timedelta = timedelta(days=1),
    ) -> None:
        super().__init__(url=url, token=token, org=org, timeout_s=timeout_s)
        self._bucket = bucket
        self._first_span = first_span

    async def _seek(
        self, search: ObservationSearch, start: datetime, stop: datetime
    ) -> datetime | None:
        """The time of the patient's next reading in ``[start, stop)``; None if there is none.
        Times at ``stop`` are dropped here, not in the query (see
        :func:`~pghd.fhir_read.flux.seek_query`): InfluxDB 1.8 answers them."""
        query = flux.seek_query(self._bucket, search.patient_id, search.metrics, start, stop)
        times = [
            moment
            async for values in self._records(query)
            if (moment := parse_time(values.get("_time"))) is not None and moment < stop
        ]
        return min(times, default=None)

    async def page(self, search: ObservationSearch, *, now: datetime) -> ObservationPage:
        """The page of ``search`` (see the module docstring)."""
        if search.matches_nothing:
            return ObservationPage()
        start, stop = _bounds(search, now)
        after, span = None, self._first_span
        if search.cursor is not None:
            after, span = search.cursor.after, search.cursor.span
            start = max(start, after.time)
        builder = PageBuilder(search.count)
        while start < stop and not builder.full:
            seek = await self._seek(search, start, stop)
            if seek is None:
                break
            start = max(start, seek)
            while start < stop and not builder.full:
                end = min(start + span, stop)
                query = flux.window_query(
                    self._bucket,
                    search.patient_id,
                    search.metrics,
                    start,
                    end,
                    after=after if after is not None and start <= after.time else None,
                    limit=builder.limit,
                )
                rows = builder.add([values async for values in self._records(query)])
                start, span = end, next_span(span, rows, target_rows=builder.target)
                if rows == 0:
                    break  # seek the next reading rather than walk through empty windows
        cut = builder.page()
        readings = list(readings_of(cut.rows))
        findings = await self._findings(search, readings)
        following = None
        if cut.more and cut.last is not None:
            following = Cursor(after=cut.last, span=span, query=search.fingerprint)
        return ObservationPage(readings=readings, findings=findings, next=following)

    async def _findings(
        self, search: ObservationSearch, readings: list[StoredReading]
    ) -> list[StoredFinding]:
        if not readings:
            return []
        first, last = readings[0].time, readings[-1].time
        query = flux.findings_query(
            self._bucket,
            search.patient_id,
            search.metrics,
            first,
            last + timedelta(microseconds=1),
        )
        return [
            finding
            async for values in self._records(query)
            if (finding := finding_of(values)) is not None
        ]
