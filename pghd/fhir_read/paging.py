"""A page of readings cut from InfluxDB rows, whole readings only. Pure.

The store writes one ``vitals`` point per channel of a reading (blood pressure: two). Rows
come sorted by :class:`~pghd.fhir_read.cursor.ReadingKey` and then channel, so a reading's
rows are adjacent. :class:`PageBuilder` takes the rows of successive InfluxDB windows until
it has seen one reading more than the page holds (so it knows there is a next page), and
:meth:`PageBuilder.page` keeps the rows of the first ``count`` readings.

Each window is asked for at most :meth:`PageBuilder.limit` rows: room for every channel of
every reading still missing and of the one after. A window that filled its limit therefore
holds that extra reading's first row, so the page's readings all arrived whole, and a window
under its limit was read whole. Either way nothing is read twice or skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pghd.catalogue import CATALOGUE
from pghd.export.records import parse_time
from pghd.fhir_read.cursor import ReadingKey

__all__ = ["MAX_CHANNELS", "Page", "PageBuilder", "row_key"]

MAX_CHANNELS = max(len(spec.channels) for spec in CATALOGUE.values())
"""The most ``vitals`` points one reading is stored as."""

Row = Mapping[str, Any]


def row_key(row: Row) -> ReadingKey | None:
    """The reading a pivoted ``vitals`` row belongs to; None without a time."""
    time = parse_time(row.get("_time"))
    if time is None:
        return None
    return ReadingKey(
        time=time,
        source=str(row.get("source") or ""),
        device=str(row.get("device") or ""),
        metric=str(row.get("metric") or ""),
        event_id=str(row.get("event_id") or ""),
    )


@dataclass(frozen=True, slots=True)
class Page:
    """The rows of a page's readings, the last reading's key, and whether more follow."""

    rows: list[Row]
    last: ReadingKey | None
    more: bool


@dataclass
class PageBuilder:
    """Collects window after window of sorted rows until ``count`` + 1 readings are seen."""

    count: int
    _rows: list[Row] = field(default_factory=list)
    _keys: list[ReadingKey] = field(default_factory=list)

    @property
    def full(self) -> bool:
        """Whether a reading beyond the page was seen (there is a next page)."""
        return len(self._keys) > self.count

    @property
    def limit(self) -> int:
        """The most rows the next window may need: every channel of the readings still
        missing and of one more."""
        return MAX_CHANNELS * max(1, self.count + 1 - len(self._keys))

    @property
    def target(self) -> int:
        """The rows a window should aim at (for sizing the next window's span)."""
        return MAX_CHANNELS * (self.count + 1)

    def add(self, rows: Iterable[Row]) -> int:
        """Take one window's rows (sorted, each after every row taken before); how many."""
        taken = 0
        for row in rows:
            key = row_key(row)
            if key is None:
                continue
            if not self._keys or self._keys[-1] != key:
                self._keys.append(key)
            self._rows.append(row)
            taken += 1
        return taken

    def page(self) -> Page:
        """The first ``count`` readings' rows; ``more`` when another reading was seen."""
        if not self.full:
            last = self._keys[-1] if self._keys else None
            return Page(rows=list(self._rows), last=last, more=False)
        last = self._keys[self.count - 1]
        rows = [row for row in self._rows if (key := row_key(row)) is not None and key <= last]
        return Page(rows=rows, last=last, more=True)
