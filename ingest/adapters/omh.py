"""Open mHealth data points (``header`` + ``body``) to candidates.

Schemas taken (``header.schema_id.name``, namespace ``omh``, or ``ieee`` for the IEEE
1752.1 versions of the same schemas; any version): heart-rate, blood-pressure,
body-temperature, oxygen-saturation, respiratory-rate, step-count, blood-glucose,
body-weight, sleep-duration and sleep-episode (its ``total_sleep_time`` as
``sleep_duration``, over the episode's time interval). Units are the schemas' own
(``beats/min``, ``mmHg``, ``F``/``C``/``K``, ``%``, ``breaths/min``, ``steps``, ``mg/dL``,
``kg``/``lb``, ``sec``...), mapped here to the catalogue's UCUM units; the catalogue
converts them and refuses the others, naming the accepted ones.

Readings are stamped at ``effective_time_frame.date_time`` or at the start of its
``time_interval``, in each shape omh:time-interval allows: start + end, start + duration,
end + duration (a duration in any unit of omh:duration-unit-value, ``ps`` to ``yr``), or a
``date`` + ``part_of_day`` (placed by :mod:`ingest.adapters.times`: the start of that
quarter of the UTC day, with ``effective_precision``). Step counts and sleep keep an
interval's end instant as ``effective_end`` (:mod:`ingest.adapters.intervals`). A time frame
is refused where the schemas refuse it, with their reason (a ``date_time`` with no offset,
or a date alone; both a ``date_time`` and a ``time_interval``; an interval of none of its
shapes, or of two at once); an interval with a start and no end is taken as its start (it
has one meaning, though the schema wants an end).

The patient is ``header.user_id``; a data point without one takes the ``patient_id`` the
route was given (a query parameter); when both are there they must agree, and when neither
is there the data point is refused. ``header.id`` is the event id (hashed when it does not
fit ``ID_PATTERN``). Errors point into the posted document with JSON pointers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ingest.adapters.intervals import interval_end
from ingest.adapters.locations import Located
from ingest.adapters.times import PARTS_OF_DAY, leap_second, part_of_day
from ingest.intake import Candidate, error
from pghd.catalogue import Metric
from pghd.contracts import ID_PATTERN, TimePrecision

__all__ = ["NAMESPACES", "SCHEMAS", "data_point_candidate", "data_points"]

NAMESPACES = ("omh", "ieee")
SCHEMAS: dict[str, tuple[Metric, tuple[str, ...]]] = {
    "heart-rate": (Metric.HEART_RATE, ("heart_rate",)),
    "blood-pressure": (
        Metric.BLOOD_PRESSURE,
        ("systolic_blood_pressure", "diastolic_blood_pressure"),
    ),
    "body-temperature": (Metric.BODY_TEMPERATURE, ("body_temperature",)),
    "oxygen-saturation": (Metric.SPO2, ("oxygen_saturation",)),
    "respiratory-rate": (Metric.RESPIRATORY_RATE, ("respiratory_rate",)),
    "step-count": (Metric.STEPS, ("step_count",)),
    "blood-glucose": (Metric.BLOOD_GLUCOSE, ("blood_glucose",)),
    "body-weight": (Metric.WEIGHT, ("body_weight",)),
    "sleep-duration": (Metric.SLEEP_DURATION, ("sleep_duration",)),
    "sleep-episode": (Metric.SLEEP_DURATION, ("total_sleep_time",)),
}
"""schema name -> (metric, the body properties holding its value(s))."""
_EPISODES = frozenset({"sleep-episode"})
"""Schemas whose time frame must be an interval (the episode, onset to final awakening)."""

_UCUM = {
    "beats/min": "/min",
    "breaths/min": "/min",
    "mmHg": "mm[Hg]",
    "F": "[degF]",
    "C": "Cel",
    "K": "K",
    "steps": "{steps}",
    "sec": "s",
}
_SECONDS = {
    "ps": 1e-12,
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "wk": 604800.0,
    "Mo": 30.4375 * 86400.0,  # UCUM mo: a mean Julian month, 1/12 of a
    "yr": 365.25 * 86400.0,  # UCUM a: a mean Julian year
}
"""omh:duration-unit-value's units (UCUM's common synonyms) in seconds."""
_INTERVAL_SHAPES = (
    ("start_date_time", "end_date_time"),
    ("start_date_time", "duration"),
    ("end_date_time", "duration"),
    ("date", "part_of_day"),
)
"""The four shapes omh:time-interval allows (``oneOf``: exactly one may be complete)."""
_SHAPES_TEXT = "start + end, start + duration, end + duration, or date + part_of_day"
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTEXTS = {
    "at rest": "rest",
    "active": "activity",
    "during exercise": "activity",
    "during sleep": "sleep",
}
_ID = re.compile(ID_PATTERN)


def data_points(document: Any) -> tuple[list[Any], bool]:
    """The data points of a body (one object, or an array of them) and whether it was an array.

    Raises :class:`ValueError` when the body is neither, or an empty array.
    """
    if isinstance(document, dict):
        return [document], False
    if not isinstance(document, list):
        raise ValueError("the body must be a data point (object) or an array of them")
    if not document:
        raise ValueError("the array is empty")
    return document, True


class _Refusal(Exception):
    """Why a data point is refused, and where (JSON pointer)."""

    def __init__(self, where: str, detail: str, reason: str = "invalid") -> None:
        super().__init__(detail)
        self.where, self.detail, self.reason = where, detail, reason


def data_point_candidate(point: Any, *, pointer: str, patient_id: str | None) -> Located:
    """The candidate reading of one data point at JSON pointer ``pointer``."""
    try:
        reading, elements = _reading(point, pointer=pointer, patient_id=patient_id)
    except _Refusal as exc:
        errors = (error(exc.where, exc.detail),)
        return Located(Candidate(pointer=pointer, errors=errors, reason=exc.reason))
    return Located(Candidate(pointer=pointer, reading=reading), elements)


def _reading(
    point: Any, *, pointer: str, patient_id: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    if not isinstance(point, dict):
        raise _Refusal(pointer, "a data point must be an object with header and body")
    header, body = point.get("header"), point.get("body")
    if not isinstance(header, dict):
        raise _Refusal(f"{pointer}/header", "the data point has no header object")
    if not isinstance(body, dict):
        raise _Refusal(f"{pointer}/body", "the data point has no body object")
    schema = header.get("schema_id")
    if not isinstance(schema, dict):
        raise _Refusal(f"{pointer}/header/schema_id", "the header has no schema_id")
    name, namespace = schema.get("name"), schema.get("namespace")
    if namespace not in NAMESPACES or name not in SCHEMAS:
        detail = f"schema {namespace}:{name} is not taken; use omh with one of: " + ", ".join(
            SCHEMAS
        )
        raise _Refusal(f"{pointer}/header/schema_id", detail, "unsupported")
    metric, keys = SCHEMAS[name]
    reading: dict[str, Any] = {"metric": metric.value}
    elements: dict[str, str] = {"metric": f"{pointer}/header/schema_id/name"}

    user = header.get("user_id")
    if user is not None and patient_id is not None and user != patient_id:
        detail = f"header.user_id {user!r} contradicts the patient_id parameter {patient_id!r}"
        raise _Refusal(f"{pointer}/header/user_id", detail)
    if user is not None:
        reading["patient_id"], elements["patient_id"] = user, f"{pointer}/header/user_id"
    elif patient_id is not None:
        reading["patient_id"] = patient_id
    else:
        detail = "no patient: give header.user_id, or the patient_id query parameter"
        raise _Refusal(f"{pointer}/header/user_id", detail)

    units: list[str] = []
    names = ("systolic", "diastolic") if len(keys) > 1 else ("value",)
    for key, field_name in zip(keys, names, strict=True):
        value, unit = _unit_value(body.get(key), key=key, at=f"{pointer}/body/{key}")
        reading[field_name], elements[field_name] = value, f"{pointer}/body/{key}/value"
        elements.setdefault("unit", f"{pointer}/body/{key}/unit")
        units.append(unit)
    if len(set(units)) > 1:
        raise _Refusal(f"{pointer}/body/{keys[-1]}/unit", f"the units differ: {', '.join(units)}")
    reading["unit"] = _UCUM.get(units[0], units[0])

    frame = _time_frame(body.get("effective_time_frame"), at=f"{pointer}/body/effective_time_frame")
    if name in _EPISODES and not frame.interval:
        detail = f"a {name} needs a time_interval (from sleep onset to final awakening)"
        raise _Refusal(frame.start_at, detail)
    reading["effective_time"], elements["effective_time"] = frame.start, frame.start_at
    if frame.precision is not None and frame.precision_at is not None:
        reading["effective_precision"] = frame.precision.value
        elements["effective_precision"] = frame.precision_at
    end = interval_end(metric, frame.start, frame.end)
    if end is not None and frame.end_at is not None:
        reading["effective_end"], elements["effective_end"] = end, frame.end_at
    event = header.get("id")
    if isinstance(event, str) and event:
        reading["event_id"] = event if _ID.match(event) else _hashed(event)
        elements["event_id"] = f"{pointer}/header/id"
    relation = body.get("temporal_relationship_to_physical_activity") or body.get(
        "temporal_relationship_to_sleep"
    )
    if isinstance(relation, str) and relation in _CONTEXTS:
        reading["context"] = _CONTEXTS[relation]
    provenance = header.get("acquisition_provenance")
    if isinstance(provenance, dict) and isinstance(provenance.get("source_name"), str):
        reading["app"] = provenance["source_name"]
        elements["app"] = f"{pointer}/header/acquisition_provenance/source_name"
    return reading, elements


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unit_value(measure: Any, *, key: str, at: str) -> tuple[float, str]:
    if key == "step_count" and _is_number(measure):
        return float(measure), "steps"  # step-count 1.0 and 2.0 give a bare number
    if not isinstance(measure, dict):
        raise _Refusal(at, f"the body has no {key} object ({{value, unit}})")
    value, unit = measure.get("value"), measure.get("unit")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Refusal(f"{at}/value", f"{key}.value must be a number")
    if not isinstance(unit, str) or not unit:
        raise _Refusal(f"{at}/unit", f"{key}.unit is missing")
    return float(value), unit


@dataclass(frozen=True, slots=True)
class _Frame:
    """An effective time frame: its start, its end if the sender gave one, where each is;
    the span a date + part of day names; whether it is an interval."""

    start: datetime
    start_at: str
    end: datetime | None = None
    end_at: str | None = None
    precision: TimePrecision | None = None
    precision_at: str | None = None
    interval: bool = True


def _time_frame(frame: Any, *, at: str) -> _Frame:
    """When the reading was taken, as a start and (for a time interval) an end.

    An interval given as start + end, start + duration or end + duration becomes its start
    and end. The reading is stamped at the start: a step count or a night's sleep then
    belongs to the hour or day in which it began (an interval ending at midnight is not
    moved to the next day by daily windows), as FHIR's effectivePeriod.start is taken too;
    the end goes on as ``effective_end`` for interval metrics. A ``date_time`` is an instant;
    a date + part of day the start of that quarter of the UTC day, with its precision.
    """
    if not isinstance(frame, dict):
        raise _Refusal(at, "no effective_time_frame (date_time or time_interval)")
    if "date_time" in frame and "time_interval" in frame:
        detail = (
            "the time frame gives both date_time and time_interval: omh:time-frame is one"
            " of them (oneOf)"
        )
        raise _Refusal(at, detail)
    if "date_time" in frame:
        where = f"{at}/date_time"
        return _Frame(_date_time(frame["date_time"], at=where), where, interval=False)
    interval = frame.get("time_interval")
    if not isinstance(interval, dict):
        raise _Refusal(at, "effective_time_frame needs date_time or time_interval")
    at = f"{at}/time_interval"
    shapes = [shape for shape in _INTERVAL_SHAPES if all(key in interval for key in shape)]
    if len(shapes) > 1:
        given = " and ".join(" + ".join(shape) for shape in shapes)
        detail = (
            f"the time_interval gives {given}: omh:time-interval is exactly one of"
            f" {_SHAPES_TEXT} (oneOf)"
        )
        raise _Refusal(at, detail)
    shape = shapes[0] if shapes else None
    if shape == ("date", "part_of_day"):
        return _part_of_day(interval, at=at)
    if "start_date_time" in interval:
        where = f"{at}/start_date_time"
        start = _date_time(interval["start_date_time"], at=where)
        if shape == ("start_date_time", "end_date_time"):
            end_at = f"{at}/end_date_time"
            return _Frame(start, where, _date_time(interval["end_date_time"], at=end_at), end_at)
        if shape == ("start_date_time", "duration"):
            end_at = f"{at}/duration"
            end = _shifted(start, _duration(interval["duration"], at=end_at), at=end_at)
            return _Frame(start, where, end, end_at)
        return _Frame(start, where, interval=False)  # no end: the schema wants one
    if shape == ("end_date_time", "duration"):
        where = f"{at}/end_date_time"
        end = _date_time(interval["end_date_time"], at=where)
        span = _duration(interval["duration"], at=f"{at}/duration")
        return _Frame(_shifted(end, -span, at=f"{at}/duration"), where, end, where)
    raise _Refusal(at, f"the time_interval is none of {_SHAPES_TEXT} (omh:time-interval)")


def _part_of_day(interval: dict[str, Any], *, at: str) -> _Frame:
    text, part = interval["date"], interval["part_of_day"]
    day = _full_date(text) if isinstance(text, str) and _FULL_DATE.fullmatch(text) else None
    if day is None:
        detail = f"{text!r} is not an RFC 3339 full-date (YYYY-MM-DD), as omh:time-interval's date"
        raise _Refusal(f"{at}/date", detail)
    if not isinstance(part, str) or part not in PARTS_OF_DAY:
        detail = f"part_of_day {part!r} is none of omh:part-of-day's {', '.join(PARTS_OF_DAY)}"
        raise _Refusal(f"{at}/part_of_day", detail)
    placed = part_of_day(day, PARTS_OF_DAY[part])
    return _Frame(
        placed.when, f"{at}/date", precision=placed.precision, precision_at=f"{at}/part_of_day"
    )


def _full_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _date_time(value: Any, *, at: str) -> datetime:
    if not isinstance(value, str):
        raise _Refusal(at, "must be an RFC 3339 date-time string")
    if _FULL_DATE.fullmatch(value):
        detail = (
            f"{value!r} is a date alone: omh:date-time is an RFC 3339 date-time, with a time"
            " and an offset (a date goes in a time_interval with a part_of_day)"
        )
        raise _Refusal(at, detail)
    when = leap_second(value)
    if when is None:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            detail = f"{value!r} is not an RFC 3339 date-time (e.g. 2013-02-05T07:25:00Z)"
            raise _Refusal(at, detail) from None
    if when.tzinfo is None:
        detail = (
            f"{value!r} has no timezone offset (e.g. Z or +01:00): omh:date-time is an"
            " RFC 3339 date-time, which has one"
        )
        raise _Refusal(at, detail)
    return when


def _duration(value: Any, *, at: str) -> timedelta:
    if not isinstance(value, dict) or not _is_number(value.get("value")):
        raise _Refusal(at, "duration must be {value, unit}")
    unit = value.get("unit")
    if unit not in _SECONDS:
        detail = f"duration unit {unit!r} is not taken; use one of {', '.join(_SECONDS)}"
        raise _Refusal(f"{at}/unit", detail)
    try:
        return timedelta(seconds=float(value["value"]) * _SECONDS[unit])
    except (OverflowError, ValueError):
        raise _Refusal(f"{at}/value", "the duration is not a length of time pghd can use") from None


def _shifted(when: datetime, span: timedelta, *, at: str) -> datetime:
    try:
        return when + span
    except OverflowError:
        raise _Refusal(at, "the duration takes the interval out of the calendar") from None


def _hashed(value: str) -> str:
    return "omh-" + hashlib.sha256(value.encode()).hexdigest()[:32]
