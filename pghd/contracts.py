"""Wire contracts shared by every service: readings, anomalies and dead letters.

Every message carries ``schema_version``. Times are timezone-aware and normalised to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pghd.catalogue import CATALOGUE, MAX_INTERVAL, Metric

__all__ = [
    "ID_PATTERN",
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
    "UtcDatetime",
    "channel_key",
    "interval_problem",
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

    @model_validator(mode="after")
    def _shape_matches_metric(self) -> Measurement:
        spec = CATALOGUE[self.metric]
        if self.unit != spec.unit:
            raise ValueError(f"unit must be the canonical {spec.unit!r} for {self.metric.value}")
        problem = interval_problem(self.metric, self.effective_time, self.effective_end)
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
