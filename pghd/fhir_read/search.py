"""A FHIR search's parameters, parsed: ``Observation`` and ``Flag`` of one patient. Pure.

Observation: ``patient`` (required; ``p-1``, ``Patient/p-1`` or a URL ending so),
``code`` (``http://loinc.org|8867-4`` or ``8867-4``; several comma-separated are any of
them; a code pghd does not store, or another system, matches nothing), ``date`` (repeatable,
each narrowing the range: prefixes ``eq`` (default), ``ge``, ``gt``, ``le``, ``lt`` on a date
or dateTime, taken as the range its precision implies, UTC when it names no zone), ``_count``
(default 50, at most 500: more is served as 500), ``_cursor`` (the continuation of a paged
search, from a ``next`` link). Flag: ``patient``, ``status`` (``active``, ``inactive``,
comma-separated for both): open and acknowledged alerts are active, those resolved within
the last 30 days inactive (:func:`matching_alerts`).

Unknown parameters follow FHIR's ``Prefer: handling`` header: ``lenient`` (the default)
ignores them and the ``self`` link lists only the parameters applied; ``strict`` refuses the
search (:class:`SearchError`, a 400 OperationOutcome naming them). A parameter given
without a value is ignored, except ``patient``.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal

from pghd.alerting import Alert
from pghd.catalogue import Metric, metric_for_loinc
from pghd.contracts import ID_PATTERN
from pghd.export.fhir import LOINC
from pghd.export.records import format_time
from pghd.fhir_read.cursor import Cursor, CursorError, decode_cursor

__all__ = [
    "DEFAULT_COUNT",
    "FLAG_PARAMETERS",
    "MAX_COUNT",
    "OBSERVATION_PARAMETERS",
    "RECENTLY_RESOLVED",
    "FlagSearch",
    "FlagStatus",
    "ObservationSearch",
    "SearchError",
    "TimeRange",
    "date_range",
    "matching_alerts",
    "parse_flag_search",
    "parse_observation_search",
    "strict_handling",
]

DEFAULT_COUNT = 50
MAX_COUNT = 500
OBSERVATION_PARAMETERS = ("patient", "code", "date", "_count", "_cursor")
FLAG_PARAMETERS = ("patient", "status")
RECENTLY_RESOLVED = timedelta(days=30)
"""How long a resolved alert stays listed, as an ``inactive`` Flag."""

FlagStatus = Literal["active", "inactive"]
Params = Sequence[tuple[str, str]]

_PATIENT = re.compile(ID_PATTERN)
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SUPPORTED_PREFIXES = frozenset({"eq", "gt", "lt", "ge", "le"})


class SearchError(ValueError):
    """A search that cannot be run as given: what is wrong, with which parameter, and the
    OperationOutcome issue type (``invalid``, ``required``, ``not-supported``)."""

    def __init__(self, detail: str, *, parameter: str, code: str = "invalid") -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter
        self.code = code


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Times from ``start`` (inclusive) to ``stop`` (exclusive); None is unbounded."""

    start: datetime | None = None
    stop: datetime | None = None

    def narrowed(self, other: TimeRange) -> TimeRange:
        """The times in both ranges."""
        starts = [t for t in (self.start, other.start) if t is not None]
        stops = [t for t in (self.stop, other.stop) if t is not None]
        return TimeRange(max(starts, default=None), min(stops, default=None))

    @property
    def empty(self) -> bool:
        return self.start is not None and self.stop is not None and self.start >= self.stop


def strict_handling(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header asks for ``handling=strict`` (FHIR's search handling)."""
    if not prefer:
        return False
    tokens = (part.strip().lower().replace(" ", "") for part in prefer.split(","))
    return any(token.split(";")[0] == "handling=strict" for token in tokens)


def _add_months(moment: datetime, months: int) -> datetime:
    month = moment.month - 1 + months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _zone(text: str | None) -> tzinfo:
    """``Z``, ``+02:00`` or ``-05:30`` as a zone; none given is UTC."""
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _implied(value: str) -> tuple[datetime, datetime]:
    """The range a date or dateTime stands for at its precision: [start, end)."""
    found = _DATE.match(value)
    if found is None:
        raise ValueError(value)
    parts = found.groupdict()
    tz = _zone(parts["zone"])
    start = datetime(
        int(parts["year"]),
        int(parts["month"] or 1),
        int(parts["day"] or 1),
        int(parts["hour"] or 0),
        int(parts["minute"] or 0),
        int(parts["second"] or 0),
        int((parts["fraction"] or "0")[:6].ljust(6, "0")),
        tzinfo=tz,
    ).astimezone(UTC)
    if parts["month"] is None:
        return start, _add_months(start, 12)
    if parts["day"] is None:
        return start, _add_months(start, 1)
    if parts["hour"] is None:
        return start, start + timedelta(days=1)
    if parts["second"] is None:
        return start, start + timedelta(minutes=1)
    digits = min(len(parts["fraction"] or ""), 6)
    return start, start + timedelta(microseconds=10 ** (6 - digits))


def date_range(value: str) -> TimeRange:
    """The times one ``date`` parameter selects (``ge2026-12-01``, ``lt2026-12-01T08:00Z``);
    :class:`SearchError` when it is not a date or its prefix is not supported."""
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    text = value[2:] if value[:2] in _PREFIXES else value
    if prefix not in _SUPPORTED_PREFIXES:
        raise SearchError(
            f"date prefix {prefix!r} is not supported: use eq, ge, gt, le or lt",
            parameter="date",
            code="not-supported",
        )
    try:
        low, high = _implied(text)
    except OverflowError:  # 9999-12-31 ends in year 10000, 0001-01-01T00:00+14:00 starts in 0
        raise SearchError(
            f"date {value!r} is out of range: its range must lie within the years 1 to 9999",
            parameter="date",
        ) from None
    except ValueError:
        raise SearchError(
            f"date {value!r} is not a FHIR date or dateTime (2026-12-01, 2026-12-01T08:00:00Z)",
            parameter="date",
        ) from None
    return {
        "eq": TimeRange(low, high),
        "ge": TimeRange(start=low),
        "gt": TimeRange(start=high),
        "le": TimeRange(stop=high),
        "lt": TimeRange(stop=low),
    }[prefix]


def _patient(values: list[str]) -> str:
    if not values or not values[0]:
        raise SearchError(
            "patient is required: one search reads one patient's data (patient=<id>)",
            parameter="patient",
            code="required",
        )
    if len(values) > 1 or "," in values[0]:
        raise SearchError("give one patient per search", parameter="patient")
    value = values[0]
    patient_id = value.rsplit("Patient/", 1)[1] if "Patient/" in value else value
    if not _PATIENT.match(patient_id):
        raise SearchError(f"patient {value!r} is not a patient id", parameter="patient")
    return patient_id


def _codes(value: str) -> frozenset[Metric]:
    """The metrics of one ``code`` parameter (any of its comma-separated tokens)."""
    found: set[Metric] = set()
    for token in value.split(","):
        system, _, code = token.rpartition("|")
        if system not in ("", LOINC):
            continue  # another code system: pghd stores LOINC-coded readings only
        metric = metric_for_loinc(code.strip())
        if metric is not None:
            found.add(metric)
    return frozenset(found)


def _count(values: list[str]) -> int:
    if not values:
        return DEFAULT_COUNT
    if len(values) > 1:
        raise SearchError("give _count once", parameter="_count")
    try:
        count = int(values[0])
    except ValueError:
        detail = f"_count {values[0]!r} is not a whole number"
        raise SearchError(detail, parameter="_count") from None
    if count < 1:
        raise SearchError("_count must be 1 or more", parameter="_count")
    return min(count, MAX_COUNT)


def _grouped(
    params: Params, known: Sequence[str], *, strict: bool
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Values by known parameter (empty values dropped, but ``patient``'s), and the applied
    (name, value) pairs in their order; unknown names refused when ``strict``."""
    unknown = sorted({name for name, _ in params if name not in known})
    if unknown and strict:
        raise SearchError(
            f"unknown search parameters {unknown} (Prefer: handling=strict); known: "
            + ", ".join(known),
            parameter=unknown[0],
            code="not-supported",
        )
    values: dict[str, list[str]] = {name: [] for name in known}
    applied: list[tuple[str, str]] = []
    for name, value in params:
        if name in values and (value or name == "patient"):
            values[name].append(value)
            if not name.startswith("_"):
                applied.append((name, value))
    return values, applied


@dataclass(frozen=True, slots=True)
class ObservationSearch:
    """An Observation search: whose readings, of which metrics (None: every one; empty: no
    code given names one pghd stores), in which times, how many per page, after where."""

    patient_id: str
    metrics: frozenset[Metric] | None
    window: TimeRange
    count: int = DEFAULT_COUNT
    cursor: Cursor | None = None
    applied: tuple[tuple[str, str], ...] = ()

    @property
    def matches_nothing(self) -> bool:
        return (self.metrics is not None and not self.metrics) or self.window.empty

    @property
    def fingerprint(self) -> str:
        """What a cursor of this search is checked against: patient, metrics and times."""
        metrics = "*" if self.metrics is None else ",".join(sorted(m.value for m in self.metrics))
        times = [format_time(t) if t else "" for t in (self.window.start, self.window.stop)]
        text = "|".join([self.patient_id, metrics, *times])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_observation_search(params: Params, *, strict: bool = False) -> ObservationSearch:
    """The Observation search of ``params`` (the query's (name, value) pairs, in order);
    :class:`SearchError` when it cannot be run."""
    values, applied = _grouped(params, OBSERVATION_PARAMETERS, strict=strict)
    patient_id = _patient(values["patient"])
    metrics: frozenset[Metric] | None = None
    for code in values["code"]:  # repeated: every one must match (an AND)
        found = _codes(code)
        metrics = found if metrics is None else metrics & found
    window = TimeRange()
    for value in values["date"]:
        window = window.narrowed(date_range(value))
    search = ObservationSearch(
        patient_id=patient_id,
        metrics=metrics,
        window=window,
        count=_count(values["_count"]),
        applied=tuple(applied),
    )
    cursors = values["_cursor"]
    if len(cursors) > 1:
        raise SearchError("give _cursor once", parameter="_cursor")
    if not cursors:
        return search
    try:
        cursor = decode_cursor(cursors[0])
    except CursorError as exc:
        detail = f"_cursor: {exc}; follow the next link as given"
        raise SearchError(detail, parameter="_cursor") from None
    if cursor.query != search.fingerprint:
        raise SearchError(
            "_cursor belongs to another search (patient, code or date changed): follow the next"
            " link as given",
            parameter="_cursor",
        )
    return ObservationSearch(
        patient_id=search.patient_id,
        metrics=search.metrics,
        window=search.window,
        count=search.count,
        cursor=cursor,
        applied=search.applied,
    )


@dataclass(frozen=True, slots=True)
class FlagSearch:
    """A Flag search: whose alerts, in which statuses."""

    patient_id: str
    statuses: frozenset[FlagStatus]
    applied: tuple[tuple[str, str], ...] = ()


def parse_flag_search(params: Params, *, strict: bool = False) -> FlagSearch:
    """The Flag search of ``params``; :class:`SearchError` when it cannot be run."""
    values, applied = _grouped(params, FLAG_PARAMETERS, strict=strict)
    patient_id = _patient(values["patient"])
    statuses: set[FlagStatus] = {"active", "inactive"}
    for value in values["status"]:
        wanted = {token.strip() for token in value.split(",")}
        unknown = sorted(wanted - {"active", "inactive", "entered-in-error"})
        if unknown:
            raise SearchError(
                f"status {unknown} is not a Flag status (active, inactive)", parameter="status"
            )
        statuses = {status for status in statuses if status in wanted}
    return FlagSearch(patient_id=patient_id, statuses=frozenset(statuses), applied=tuple(applied))


def matching_alerts(alerts: Iterable[Alert], search: FlagSearch, *, now: datetime) -> list[Alert]:
    """The patient's alerts a Flag search lists, most recently updated first: open and
    acknowledged ones (``active``), those resolved within :data:`RECENTLY_RESOLVED`
    (``inactive``)."""
    found = [
        alert
        for alert in alerts
        if alert.patient_id == search.patient_id
        and (
            ("active" in search.statuses and alert.active)
            or (
                "inactive" in search.statuses
                and alert.resolved_at is not None
                and alert.resolved_at >= now - RECENTLY_RESOLVED
            )
        )
    ]
    return sorted(found, key=lambda a: (a.updated_at, a.alert_id), reverse=True)
