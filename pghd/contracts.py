"""Wire contracts shared by every service: readings, anomalies and dead letters.

Every message carries ``schema_version``. Times are timezone-aware and normalised to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pghd.catalogue import CATALOGUE, MAX_INTERVAL, Metric

__all__ = [
    "ID_PATTERN",
    "PART_OF_DAY_HOURS",
    "SCHEMA_VERSION",
    "Anomaly",
    "BaselineSnapshot",
    "Context",
    "DeadLetter",
    "Measurement",
    "PatientId",
    "Phase",
    "Severity",
    "Source",
    "TimePrecision",
    "UtcDatetime",
    "channel_key",
    "interval_problem",
    "precision_problem",
    "span_end",
]

SCHEMA_VERSION: Literal[1] = 1
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
PatientId = Annotated[str, Field(pattern=ID_PATTERN, description="Opaque patient identifier")]


class Context(StrEnum):
    """What the patient was doing when the reading was taken."""

    REST = "rest"
    SLEEP = "sleep"
    ACTIVITY = "activity"


class TimePrecision(StrEnum):
    """How much of the calendar a reading's time names, when its sender gave less than an
    instant: a year, a month or a day (a FHIR dateTime ``YYYY``, ``YYYY-MM``,
    ``YYYY-MM-DD``), or a quarter of a day (an Open mHealth date with a ``part_of_day``).

    ``effective_time`` is then the start of that span read in UTC, since neither standard
    gives a date a timezone: a year or a month from its first day, a day from 00:00, a
    part of day from its first hour (:data:`PART_OF_DAY_HOURS`). The reading was taken at
    some time within the span (:func:`span_end`).
    """

    YEAR = "year"
    MONTH = "month"
    DAY = "day"
    NIGHT = "night"
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


PART_OF_DAY_HOURS: dict[TimePrecision, int] = {
    TimePrecision.NIGHT: 0,
    TimePrecision.MORNING: 6,
    TimePrecision.AFTERNOON: 12,
    TimePrecision.EVENING: 18,
}
"""The first hour of each part of a day; each lasts six hours (night 00-06, morning 06-12,
afternoon 12-18, evening 18-24)."""


def span_end(start: datetime, precision: TimePrecision) -> datetime:
    """Where the span of ``precision`` starting at ``start`` ends (exclusive)."""
    if precision is TimePrecision.YEAR:
        return start.replace(year=start.year + 1)
    if precision is TimePrecision.MONTH:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if precision is TimePrecision.DAY:
        return start + timedelta(days=1)
    return start + timedelta(hours=6)


def precision_problem(start: datetime, precision: TimePrecision | None) -> str | None:
    """What is wrong with ``start`` as the start of a ``precision`` span, if anything."""
    if precision is None:
        return None
    utc = start.astimezone(UTC)
    hour = PART_OF_DAY_HOURS.get(precision, 0)
    first_day = precision in (TimePrecision.YEAR, TimePrecision.MONTH)
    if (
        (utc.hour, utc.minute, utc.second, utc.microsecond) == (hour, 0, 0, 0)
        and (utc.day == 1 or not first_day)
        and (utc.month == 1 or precision is not TimePrecision.YEAR)
    ):
        return None
    what = {
        TimePrecision.YEAR: "a year (January 1, 00:00:00Z)",
        TimePrecision.MONTH: "a month (its first day, 00:00:00Z)",
        TimePrecision.DAY: "a day (00:00:00Z)",
    }.get(precision, f"the {precision.value} of a day ({hour:02d}:00:00Z)")
    return f"with effective_precision {precision.value!r}, effective_time must start {what}"


class Phase(StrEnum):
    """Where an anomaly stands in its episode."""

    ONSET = "onset"
    UPDATE = "update"
    RESOLVED = "resolved"
    WITHDRAWN = "withdrawn"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Source(BaseModel):
    """Who sent a reading: the authenticated vendor, and the device or app if known."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: Annotated[str, Field(pattern=ID_PATTERN)]
    device_id: Annotated[str, Field(max_length=128)] | None = None
    app: Annotated[str, Field(max_length=128)] | None = None


def interval_problem(metric: Metric, start: datetime, end: datetime | None) -> str | None:
    """What is wrong with ``end`` as the end of a ``metric`` reading starting at ``start``."""
    if end is None:
        return None
    if not CATALOGUE[metric].interval:
        return f"{metric.value} is measured at an instant: it takes no effective_end"
    if end <= start:
        return "effective_end must be after effective_time (the interval's start)"
    if end - start > MAX_INTERVAL:
        hours = MAX_INTERVAL.total_seconds() / 3600
        return f"an interval may span at most {hours:g} hours"
    return None


def channel_key(metric: Metric, channel: str) -> str:
    """Name of one numeric series: ``heart_rate`` or ``blood_pressure.systolic``."""
    return metric.value if channel == metric.value else f"{metric.value}.{channel}"


class Measurement(BaseModel):
    """One canonical reading, as it travels on ``pghd.measurements.v1``.

    Scalar metrics carry ``value``; blood pressure carries ``components``
    (``systolic`` and ``diastolic``) as one reading, as FHIR does. ``unit`` is always the
    metric's canonical UCUM unit.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Annotated[str, Field(pattern=ID_PATTERN)]
    patient_id: PatientId
    metric: Metric
    value: float | None = None
    components: dict[str, float] | None = None
    unit: str
    effective_time: UtcDatetime
    received_at: UtcDatetime
    source: Source
    context: Context | None = None
    effective_end: UtcDatetime | None = None
    """End of the interval an interval metric covers (steps, sleep); ``effective_time`` is
    then its start. ``None``: an instant, or an interval whose end the sender did not give."""
    effective_precision: TimePrecision | None = None
    """The span the sender's time named when it was less than an instant (a date, a part
    of a day...); ``effective_time`` is then the span's start. ``None``: an instant."""

    @model_validator(mode="after")
    def _shape_matches_metric(self) -> Measurement:
        spec = CATALOGUE[self.metric]
        if self.unit != spec.unit:
            raise ValueError(f"unit must be the canonical {spec.unit!r} for {self.metric.value}")
        problem = interval_problem(
            self.metric, self.effective_time, self.effective_end
        ) or precision_problem(self.effective_time, self.effective_precision)
        if problem is not None:
            raise ValueError(problem)
        if spec.is_composite:
            names = {c.name for c in spec.channels}
            if self.components is None or set(self.components) != names:
                raise ValueError(f"{self.metric.value} needs components {sorted(names)}")
            if self.value is not None:
                raise ValueError(f"{self.metric.value} carries components, not value")
        elif self.value is None or self.components is not None:
            raise ValueError(f"{self.metric.value} carries a single value")
        return self

    def channels(self) -> list[tuple[str, float]]:
        """Each numeric series in this reading as ``(channel_key, value)``."""
        if self.components is not None:
            spec = CATALOGUE[self.metric]
            return [
                (channel_key(self.metric, c.name), self.components[c.name]) for c in spec.channels
            ]
        assert self.value is not None
        return [(self.metric.value, self.value)]


class BaselineSnapshot(BaseModel):
    """The personal baseline a reading was judged against."""

    model_config = ConfigDict(frozen=True)

    mean: float
    spread: float
    low: float
    high: float
    n: int


class Anomaly(BaseModel):
    """A reading (or run of readings) that departs from the patient's normal or a clinical band."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    anomaly_id: str
    patient_id: PatientId
    metric: Metric
    channel: str = Field(description="channel key, e.g. heart_rate or blood_pressure.systolic")
    detector: str
    severity: Severity
    score: float
    value: float
    unit: str
    baseline: BaselineSnapshot | None = None
    observed_at: UtcDatetime
    detected_at: UtcDatetime
    explanation: str
    event_ids: list[str]
    contributing: list[str] = Field(
        default_factory=list, description="other detectors that agreed on the same reading"
    )
    episode_id: str | None = Field(
        default=None,
        description="the episode (one departure of the patient from their normal, on any "
        "channels) this anomaly belongs to; every anomaly of the episode carries it; none on a "
        "data-quality note (a reading after a long gap)",
    )
    phase: Phase | None = Field(
        default=None,
        description="onset (the episode opens), update (a problem joined or its severity "
        "rose, or a reminder), "
        "resolved (back within normal), withdrawn (a provisional finding the late data "
        "disproved)",
    )
    context: Context | None = Field(
        default=None, description="what the patient was doing, as given or inferred"
    )


class DeadLetter(BaseModel):
    """A message a stage could not take, with the reason, on ``pghd.dlq.v1``."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    stage: str
    reason: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str
    failed_at: UtcDatetime
