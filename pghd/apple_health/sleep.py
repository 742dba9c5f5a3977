"""Sleep per night: one source's asleep segments summed over a noon-to-noon night.

Apple Watch (and sleep apps) write one ``HKCategoryTypeIdentifierSleepAnalysis`` record per
stage, a few minutes each, plus ``InBed`` and ``Awake`` spells. The asleep values
(``Asleep``, ``AsleepUnspecified``, ``AsleepCore``, ``AsleepDeep``, ``AsleepREM``) of one
source are gathered per night (noon to noon in the record's own UTC offset) and summed with
overlaps counted once; the night spans from the earliest asleep start to the latest asleep
end. A night is closed once a segment of the same source starts two nights later, and at
the end of the export, so only a couple of nights per source are ever open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["ASLEEP_PREFIX", "Night", "Nights"]

ASLEEP_PREFIX = "HKCategoryValueSleepAnalysisAsleep"
NIGHT_SHIFT = timedelta(hours=12)


@dataclass
class Night:
    """The asleep segments of one source in one night, as far as read."""

    source: str
    night_of: str
    """ISO date of the evening the night began."""
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    first: str = ""
    """``startDate`` of the first segment, as written in the export."""
    last: str = ""
    """``endDate`` of the segment that ends last, as written in the export."""
    last_end: datetime | None = None
    device: str | None = None

    @property
    def onset(self) -> datetime | None:
        """When the earliest asleep segment began (segments need not come in time order)."""
        return min((start for start, _ in self.intervals), default=None)

    def asleep_seconds(self) -> float:
        """Seconds asleep, overlapping segments counted once."""
        seconds, covered = 0.0, None
        for start, end in sorted(self.intervals):
            if covered is not None:
                start = max(start, covered)
            if end > start:
                seconds += (end - start).total_seconds()
            covered = end if covered is None else max(covered, end)
        return seconds


class Nights:
    """The open nights of every source."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Night] = {}

    def add(
        self,
        *,
        source: str,
        start: datetime,
        end: datetime,
        texts: tuple[str, str],
        device: str | None,
    ) -> list[Night]:
        """Add one asleep segment (``texts``: its dates as written); the nights it closes."""
        night_of = (start - NIGHT_SHIFT).date()
        stale = (night_of - timedelta(days=1)).isoformat()
        closed = [
            self._open.pop(key) for key in list(self._open) if key[0] == source and key[1] < stale
        ]
        key = (source, night_of.isoformat())
        night = self._open.setdefault(key, Night(source=source, night_of=key[1]))
        night.intervals.append((start, end))
        night.first = night.first or texts[0]
        if night.last_end is None or end >= night.last_end:
            night.last_end, night.last = end, texts[1]
        night.device = night.device or device
        return closed

    def close_all(self) -> list[Night]:
        """Every night still open, in the order they were opened."""
        closed = list(self._open.values())
        self._open.clear()
        return closed
