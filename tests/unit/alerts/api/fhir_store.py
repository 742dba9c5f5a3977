"""A stand-in for the FHIR read API's InfluxDB reader in the route tests: stored readings and
findings in a list, paged in the same order and with the same cursors as the real reader
(tests/integration/test_fhir_read.py runs that one on real InfluxDB)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta

from pghd.export.records import UNKNOWN_DEVICE, StoredFinding, StoredReading
from pghd.fhir_read.cursor import Cursor, ReadingKey
from pghd.fhir_read.influx import ObservationPage
from pghd.fhir_read.search import ObservationSearch


def key_of(reading: StoredReading) -> ReadingKey:
    return ReadingKey(
        time=reading.time,
        source=reading.source,
        device=reading.device or UNKNOWN_DEVICE,
        metric=reading.metric.value,
        event_id=reading.event_id,
    )


class ListStore:
    """Readings and findings kept in memory; fails or stalls on demand."""

    def __init__(
        self, readings: Iterable[StoredReading] = (), findings: Iterable[StoredFinding] = ()
    ) -> None:
        self.readings = sorted(readings, key=key_of)
        self.findings = list(findings)
        self.searches: list[ObservationSearch] = []
        self.failure: Exception | None = None
        self.delay_s = 0.0

    async def page(self, search: ObservationSearch, *, now: datetime) -> ObservationPage:
        self.searches.append(search)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failure is not None:
            raise self.failure
        if search.matches_nothing:
            return ObservationPage()
        window = search.window
        chosen = [
            r
            for r in self.readings
            if r.patient_id == search.patient_id
            and (search.metrics is None or r.metric in search.metrics)
            and (window.start is None or r.time >= window.start)
            and (window.stop is None or r.time < window.stop)
            and (search.cursor is None or key_of(r) > search.cursor.after)
        ]
        page = chosen[: search.count]
        following = None
        if len(chosen) > search.count:
            following = Cursor(
                after=key_of(page[-1]), span=timedelta(hours=1), query=search.fingerprint
            )
        findings = [f for f in self.findings if f.patient_id == search.patient_id]
        return ObservationPage(readings=page, findings=findings, next=following)

    async def close(self) -> None:
        return None
