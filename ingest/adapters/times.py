"""When a reading was taken, from every time shape FHIR R4 and Open mHealth allow.

One placement rule serves both formats. A time given as an instant (a FHIR dateTime or
instant with hours, minutes, seconds and an offset; an Open mHealth ``date_time``) is that
instant. A time given as less than an instant names a span of the calendar:

- a year, a month or a day: a FHIR R4 ``dateTime`` of ``YYYY``, ``YYYY-MM`` or
  ``YYYY-MM-DD``, which "SHALL" carry no timezone (R4 datatypes, dateTime);
- a quarter of a day: an Open mHealth ``time_interval`` of a ``date`` (RFC 3339
  full-date, no timezone) and a ``part_of_day``: night 00-06, morning 06-12,
  afternoon 12-18, evening 18-24 (the schema names the parts, not their hours).

The reading is stamped at the start of that span, its clock times read in UTC (there is no
timezone to read them in), and keeps the span as ``effective_precision``
(:class:`pghd.contracts.TimePrecision`). Start of span, because every interval is stamped
at its start already (a FHIR ``effectivePeriod``, an Open mHealth ``time_interval``), and
because it keeps the reading on its own UTC day in every daily window; UTC, because the
day then means the same day to every reader. The span is not an ``effective_end``: that is
only ever an instant the sender gave. A span that has begun in some time zone is not in
the future (:data:`pghd.readings.MAX_ZONE_AHEAD`).

Leap seconds (``23:59:60``, allowed by FHIR and RFC 3339) are read as the next second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pghd.contracts import PART_OF_DAY_HOURS, TimePrecision

__all__ = [
    "PARTS_OF_DAY",
    "Placed",
    "calendar_span",
    "fhir_time",
    "fhir_time_refusal",
    "leap_second",
    "part_of_day",
]

PARTS_OF_DAY = {
    p.value: p
    for p in (
        TimePrecision.MORNING,
        TimePrecision.AFTERNOON,
        TimePrecision.EVENING,
        TimePrecision.NIGHT,
    )
}
"""Open mHealth ``part_of_day`` values (the omh:part-of-day enum, in its order) to their span."""

_PARTIAL = re.compile(r"(\d{4})(?:-(\d{2}))?")
_LEAP = re.compile(r"(.*T\d{2}:\d{2}:)60((?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))")
_OFFSET = re.compile(r"(Z|[+-](\d{2}):(\d{2}))$")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Placed:
    """A reading's place in time: an instant, or the start of the span ``precision``."""

    when: datetime
    precision: TimePrecision | None = None


def calendar_span(year: int, month: int | None = None, day: int | None = None) -> Placed:
    """The start (UTC) of a year, a month or a day; raises ``ValueError`` for no such day."""
    if month is None:
        return Placed(datetime(year, 1, 1, tzinfo=UTC), TimePrecision.YEAR)
    if day is None:
        return Placed(datetime(year, month, 1, tzinfo=UTC), TimePrecision.MONTH)
    return Placed(datetime(year, month, day, tzinfo=UTC), TimePrecision.DAY)


def part_of_day(day: date, part: TimePrecision) -> Placed:
    """The start (UTC) of ``part`` of ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Placed(start + timedelta(hours=PART_OF_DAY_HOURS[part]), part)


def leap_second(text: str) -> datetime | None:
    """An ISO 8601 time whose second is ``60`` as the second after ``:59``; None otherwise."""
    match = _LEAP.fullmatch(text)
    if match is None:
        return None
    try:
        before = datetime.fromisoformat(f"{match.group(1)}59{match.group(2)}")
    except ValueError:
        return None
    return before + timedelta(seconds=1) if before.tzinfo is not None else None


def fhir_time(value: object) -> Placed | None:
    """A FHIR dateTime, instant or Period bound as fhir.resources (R4B) parsed it.

    fhir.resources gives an aware ``datetime`` for a time, a ``date`` for ``YYYY-MM-DD``,
    and the text for ``YYYY``, ``YYYY-MM`` and leap seconds; None: none of these.
    """
    if isinstance(value, datetime):
        return Placed(value) if value.tzinfo is not None else None
    if isinstance(value, date):
        return calendar_span(value.year, value.month, value.day)
    if not isinstance(value, str):
        return None
    leap = leap_second(value)
    if leap is not None:
        return Placed(leap)
    match = _PARTIAL.fullmatch(value)
    if match is None:
        return None
    month = match.group(2)
    try:
        return calendar_span(int(match.group(1)), None if month is None else int(month))
    except ValueError:
        return None


def fhir_time_refusal(value: str, *, instant: bool = False) -> str:
    """Why ``value`` is no FHIR R4 dateTime (or ``instant``), in the specification's words."""
    shape = (
        "YYYY-MM-DDThh:mm:ss[.sss] with Z or +hh:mm"
        if instant
        else "YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss[.sss] with Z or +hh:mm"
    )
    what = "instant" if instant else "dateTime"
    if "T" not in value:
        if instant:
            return (
                f"{value!r} is no FHIR instant: it SHALL be given at least to the second and "
                "SHALL include a time zone (e.g. 2026-11-25T08:00:00Z)"
            )
        if re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?(Z|[+-]\d{2}:\d{2})", value):
            return f"{value!r}: a FHIR date alone SHALL have no time zone (write {value[:10]})"
        if _DATE.fullmatch(value) and not _valid_date(value):
            return f"{value!r} is no date: FHIR dates SHALL be valid dates"
        return f"{value!r} is not a FHIR {what} ({shape})"
    day, clock = value.split("T", 1)
    offset = _OFFSET.search(clock)
    if offset is None:
        return (
            f"{value!r} has a time but no timezone offset: in a FHIR {what}, if hours and "
            "minutes are specified, a time zone SHALL be populated (e.g. Z or +01:00)"
        )
    time_part = clock[: offset.start()]
    if re.fullmatch(r"\d{2}:\d{2}", time_part):
        return (
            f"{value!r} has no seconds: FHIR R4 requires them with a time (they may be "
            "zero-filled, e.g. 08:00:00)"
        )
    if time_part.startswith("24:"):
        return f"{value!r}: the time 24:00 is not allowed in FHIR (write 00:00:00 of the next day)"
    if offset.group(2) is not None and (int(offset.group(2)), int(offset.group(3))) > (14, 0):
        return f"{value!r}: a FHIR timezone offset lies within ±14:00"
    if _DATE.fullmatch(day) and not _valid_date(day):
        return f"{value!r} is no date: FHIR dates SHALL be valid dates"
    return f"{value!r} is not a FHIR {what} ({shape})"


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
