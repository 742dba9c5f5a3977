"""What clients post (``ReadingIn``) and how it becomes a canonical :class:`Measurement`.

``canonicalize`` converts units, checks the physiologically possible range and derives an
``event_id`` when the client gave none, so a retried post of the same reading is the same
event downstream.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pghd.catalogue import CATALOGUE, Metric, UnitError, channel_spec, convert
from pghd.contracts import (
    ID_PATTERN,
    Context,
    Measurement,
    PatientId,
    Source,
    TimePrecision,
    interval_problem,
    precision_problem,
)

__all__ = [
    "EARLIEST_EFFECTIVE_TIME",
    "MAX_FUTURE",
    "MAX_ZONE_AHEAD",
    "FieldProblem",
    "ReadingIn",
    "ReadingRejected",
    "canonicalize",
    "derive_event_id",
    "parse_retention",
]

MAX_FUTURE = timedelta(minutes=10)
"""How far ahead of the server's clock a reading may be (device clocks drift a little)."""

MAX_ZONE_AHEAD = timedelta(hours=14)
"""How far the furthest time zone runs ahead of UTC (UTC+14; FHIR's offsets stop there). A
date carries no timezone, so a reading of a day (or part of one) is placed by its UTC
clock times; it is in the future only when that day has begun nowhere: it may start up to
this much (and :data:`MAX_FUTURE`) after the server's clock."""

# A device whose clock was never set reports the Unix epoch (1970-01-01) or the GPS epoch
# (1980-01-06), and no consumer wearable or health app recorded readings before 2000: a
# time before that floor is a clock fault, not a reading, and would land far outside every
# retention window and baseline. It also keeps times well inside what datetime and
# InfluxDB's nanosecond timestamps (1677..2262) can hold in any time zone.
EARLIEST_EFFECTIVE_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Readings with an ``effective_time`` before this are refused."""


class ReadingIn(BaseModel):
    """One reading as a device or app posts it to ``POST /v1/measurements``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "patient_id": "patient-001",
                    "metric": "body_temperature",
                    "value": 100.4,
                    "unit": "[degF]",
                    "effective_time": "2026-11-25T08:00:00Z",
                    "device_id": "watch-42",
                    "context": "rest",
                }
            ]
        },
    )

    event_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = Field(
        default=None, description="idempotency key; derived from the reading when omitted"
    )
    patient_id: PatientId
    metric: Metric
    value: float | None = Field(default=None, allow_inf_nan=False)
    systolic: float | None = Field(default=None, allow_inf_nan=False)
    diastolic: float | None = Field(default=None, allow_inf_nan=False)
    unit: Annotated[str, Field(min_length=1, max_length=32)]
    effective_time: AwareDatetime = Field(
        description="when it was measured, with its UTC offset; refused before 2000-01-01 "
        "or more than 10 minutes ahead of the server's clock"
    )
    device_id: Annotated[str, Field(max_length=128)] | None = None
    app: Annotated[str, Field(max_length=128)] | None = None
    context: Context | None = None
    effective_end: AwareDatetime | None = Field(
        default=None,
        description="for a metric counted over an interval (steps, sleep_duration): when the "
        "interval ended, with its UTC offset; effective_time is then its start. Refused on "
        "other metrics, when not after effective_time, or when the interval exceeds 26 hours",
    )
    effective_precision: TimePrecision | None = Field(
        default=None,
        description="when the time is known only to a year, month, day or part of a day "
        "(night 00-06, morning 06-12, afternoon 12-18, evening 18-24): that span, "
        "effective_time being its start in UTC (e.g. a weight of 2026-11-25: "
        "effective_time 2026-11-25T00:00:00Z, effective_precision day). Omitted: an instant",
    )

    @model_validator(mode="after")
    def _value_shape(self) -> ReadingIn:
        if CATALOGUE[self.metric].is_composite:
            if self.systolic is None or self.diastolic is None:
                raise ValueError(f"{self.metric.value} needs both systolic and diastolic")
            if self.value is not None:
                raise ValueError(f"{self.metric.value} takes systolic and diastolic, not value")
        elif self.value is None:
            raise ValueError(f"{self.metric.value} needs a value")
        elif self.systolic is not None or self.diastolic is not None:
            raise ValueError("systolic/diastolic are only for blood_pressure")
        return self


class FieldProblem(BaseModel):
    """One thing wrong with one field of one item."""

    field: str
    message: str


class ReadingRejected(ValueError):
    """A reading that is well-formed JSON but not acceptable (unit, range, time)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def derive_event_id(reading: ReadingIn, vendor: str) -> str:
    """A stable id for a reading without a client-supplied one."""
    parts = [
        vendor,
        reading.device_id or "",
        reading.patient_id,
        reading.metric.value,
        reading.effective_time.isoformat(),
        repr(reading.value),
        repr(reading.systolic),
        repr(reading.diastolic),
        reading.unit,
    ]
    if reading.effective_end is not None:  # only then: ids of instants stay as they were
        parts.append(reading.effective_end.isoformat())
    if reading.effective_precision is not None:  # likewise
        parts.append(reading.effective_precision.value)
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return f"d-{digest}"


def canonicalize(
    reading: ReadingIn,
    *,
    vendor: str,
    received_at: datetime,
    max_age: timedelta | None = None,
) -> Measurement:
    """Turn a posted reading into a canonical :class:`Measurement`.

    Raises :class:`ReadingRejected` listing every problem (unit, range, systolic not above
    diastolic, time before :data:`EARLIEST_EFFECTIVE_TIME`, more than ``max_age`` before
    ``received_at`` (the raw retention: InfluxDB would refuse to store it) or over
    :data:`MAX_FUTURE` ahead of it), each message giving the bound it broke.
    """
    spec = CATALOGUE[reading.metric]
    problems: list[FieldProblem] = []
    raw = (
        {"systolic": reading.systolic, "diastolic": reading.diastolic}
        if spec.is_composite
        else {"value": reading.value}
    )
    converted: dict[str, float] = {}
    for field_name, value in raw.items():
        assert value is not None
        try:
            canonical = convert(reading.metric, value, reading.unit)
        except UnitError as exc:
            problems.append(FieldProblem(field="unit", message=str(exc)))
            break
        channel = (
            spec.channels[0] if field_name == "value" else channel_spec(reading.metric, field_name)
        )
        low, high = channel.possible
        what = reading.metric.value if field_name == "value" else channel.name
        if not low <= canonical <= high:
            problems.append(
                FieldProblem(
                    field=field_name,
                    message=(
                        f"{canonical:g} {spec.unit} is outside the possible range "
                        f"{low:g} to {high:g} {spec.unit} for {what}"
                    ),
                )
            )
        converted[field_name] = round(canonical, 4)
    if not problems and spec.is_composite and converted["systolic"] <= converted["diastolic"]:
        problems.append(
            FieldProblem(
                field="diastolic",
                message=(
                    f"{converted['diastolic']:g} {spec.unit} is not below the systolic "
                    f"{converted['systolic']:g} {spec.unit}"
                ),
            )
        )
    problems.extend(
        _time_problems(
            reading.effective_time,
            received_at=received_at,
            max_age=max_age,
            precision=reading.effective_precision,
        )
    )
    problems.extend(_end_problems(reading, received_at=received_at, converted=converted))
    if problems:
        raise ReadingRejected(problems)
    # Every field below is valid by construction: ``reading`` was validated as a ReadingIn,
    # the unit, components and interval were checked above, the times are made UTC here.
    # Validating the Measurement again cost a third of ingest's time per reading; the
    # property tests (tests/unit/test_readings_properties.py) validate what this builds.
    end = reading.effective_end
    return Measurement.model_construct(
        event_id=reading.event_id or derive_event_id(reading, vendor),
        patient_id=reading.patient_id,
        metric=reading.metric,
        value=None if spec.is_composite else converted["value"],
        components=converted if spec.is_composite else None,
        unit=spec.unit,
        effective_time=reading.effective_time.astimezone(UTC),
        received_at=received_at.astimezone(UTC),
        source=_source(vendor, reading.device_id, reading.app),
        context=reading.context,
        effective_end=None if end is None else end.astimezone(UTC),
        effective_precision=reading.effective_precision,
    )


@lru_cache(maxsize=4096)
def _source(vendor: str, device_id: str | None, app: str | None) -> Source:
    """The (validated, immutable) source of a reading; devices post many readings each."""
    return Source(vendor=vendor, device_id=device_id, app=app)


def _end_problems(
    reading: ReadingIn, *, received_at: datetime, converted: dict[str, float]
) -> list[FieldProblem]:
    """What is wrong with ``reading.effective_end`` (naming the bound it broke), if anything."""
    end = reading.effective_end
    if end is None:
        return []
    problem = interval_problem(reading.metric, reading.effective_time, end)
    if problem is None and end > received_at + MAX_FUTURE:
        minutes = MAX_FUTURE.total_seconds() / 60
        problem = f"is more than {minutes:g} minutes in the future"
    hours = (end - reading.effective_time).total_seconds() / 3600
    slept = converted.get("value") if reading.metric is Metric.SLEEP_DURATION else None
    if problem is None and slept is not None and slept > hours + 1 / 60:
        problem = f"the interval lasts {hours:.2f} h, less than the {slept:g} h slept in it"
    return [] if problem is None else [FieldProblem(field="effective_end", message=problem)]


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} days" if days != 1 else "1 day"


def parse_retention(text: str) -> timedelta | None:
    """A retention such as ``90d``, ``12w``, ``2160h`` or ``30m``; ``None`` for ``0``, ``off``,
    ``inf`` or an empty string (keep for ever). Raises ``ValueError`` on anything else."""
    value = text.strip().lower()
    if value in ("", "0", "off", "inf", "infinite", "none"):
        return None
    match = _RETENTION.fullmatch(value)
    if match is None:
        raise ValueError(f"retention {text!r} is not a number followed by m, h, d or w")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        return None
    return timedelta(**{_RETENTION_UNITS[unit]: amount})


_ZERO = timedelta(0)
_RETENTION = re.compile(r"(\d+)([mhdw])")
_RETENTION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _time_problems(
    effective_time: datetime,
    *,
    received_at: datetime,
    max_age: timedelta | None,
    precision: TimePrecision | None = None,
) -> list[FieldProblem]:
    """The problem with ``effective_time`` (naming the bound it broke), if any."""
    wrong = precision_problem(effective_time, precision)
    if wrong is not None:
        return [FieldProblem(field="effective_precision", message=wrong)]
    latest = received_at + MAX_FUTURE + (MAX_ZONE_AHEAD if precision is not None else _ZERO)
    oldest = None if max_age is None else received_at - max_age
    if effective_time < EARLIEST_EFFECTIVE_TIME:
        bound = f"before {EARLIEST_EFFECTIVE_TIME.isoformat()}, the earliest accepted time"
    elif oldest is not None and max_age is not None and effective_time < oldest:
        bound = (
            f"older than the raw retention of {_days(max_age)} "
            f"(before {oldest.astimezone(UTC).isoformat(timespec='seconds')}): "
            "the time-series store would not keep it"
        )
    elif effective_time > latest and precision is not None:
        ahead = MAX_ZONE_AHEAD.total_seconds() / 3600
        bound = (
            f"the start of a {precision.value} that has begun in no time zone yet (later than "
            f"{latest.astimezone(UTC).isoformat(timespec='seconds')}: the server's clock, "
            f"{MAX_FUTURE.total_seconds() / 60:g} minutes of drift and the {ahead:g} hours "
            "UTC+14 runs ahead)"
        )
    elif effective_time > latest:
        minutes = MAX_FUTURE.total_seconds() / 60
        bound = (
            f"more than {minutes:g} minutes in the future "
            f"(after {latest.astimezone(UTC).isoformat(timespec='seconds')})"
        )
    else:
        return []
    return [FieldProblem(field="effective_time", message=f"is {bound}")]
