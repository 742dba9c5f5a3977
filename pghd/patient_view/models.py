"""What the patient's summary is made of and what it answers: the points read from storage
(plain dataclasses) and the answer's models (pydantic, frozen). No logic: the usual ranges
are :mod:`pghd.patient_view.usual`, the summary's functions :mod:`pghd.patient_view.summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pghd.contracts import Severity

__all__ = [
    "Compared",
    "DailyTotal",
    "Direction",
    "Finding",
    "FindingPoint",
    "LatestReading",
    "Night",
    "NightlyRestingHeartRate",
    "StoredBaseline",
    "StoredLatest",
    "StoredNight",
    "Summary",
    "SummaryInputs",
    "Trend",
    "UsualRange",
]

Compared = Literal["within", "above", "below"]
Direction = Literal["up", "down", "steady"]


# --- what is read from storage ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredLatest:
    """The newest ``vitals`` point of one channel."""

    metric: str
    channel: str
    unit: str
    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class StoredBaseline:
    """A ``baselines`` point: one channel's baseline in one context bucket."""

    channel: str
    context: str
    mean: float
    spread: float
    low: float
    high: float
    n: int
    at: datetime


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """One UTC day of a channel's readings: their sum and how many."""

    metric: str
    channel: str
    day: date
    total: float
    count: int


@dataclass(frozen=True, slots=True)
class StoredNight:
    """A nightly resting heart rate (``resting_heart_rate``, kind ``nightly``): its wake time."""

    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class FindingPoint:
    """An ``anomalies`` point (never its explanation: that is the clinicians' text)."""

    anomaly_id: str
    metric: str
    channel: str
    value: float
    at: datetime
    phase: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryInputs:
    """Everything a summary is made of, for one patient."""

    latest: Sequence[StoredLatest] = ()
    baselines: Sequence[StoredBaseline] = ()
    daily: Sequence[DailyTotal] = ()
    nights: Sequence[StoredNight] = ()
    findings: Sequence[FindingPoint] = ()


# --- what the patient gets ------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class UsualRange(_Out):
    """A channel's usual range in one context: its baseline's centre ± z spreads (``low``,
    ``high``; z is the patient's care-plan ``z_warning`` for the channel, else the service's)."""

    centre: float
    spread: float
    low: float
    high: float
    context: str = Field(
        description="the baseline's context bucket: sleep, awake, awake-HH (6-hour UTC bins)"
    )
    readings: int = Field(description="how many readings shaped it")
    updated_at: datetime


class LatestReading(_Out):
    """The newest reading of one channel, against the usual range it falls in."""

    metric: str
    channel: str
    part: str | None = Field(description="the channel of a composite metric: systolic...")
    name: str = Field(description="the metric's plain name")
    unit: str
    value: float
    at: datetime
    usual: UsualRange | None = Field(
        description="the usual range of the context this reading is judged in; null when"
        " that cannot be told (heart and respiratory rate: judged only at rest or asleep)"
        " or there is none"
    )
    compared: Compared | None = Field(description="against the usual range; null without one")
    change: str | None = Field(description='in words: "9 beats per minute above", "within"')


class Trend(_Out):
    """A channel's last 7 days against its last 30 (UTC days, today included)."""

    metric: str
    channel: str
    part: str | None
    name: str
    unit: str
    per: Literal["reading", "day"] = Field(
        description="means of the readings, or of the daily totals (steps, sleep)"
    )
    last_7_days: float | None
    last_30_days: float | None
    days_7: int = Field(description="days with readings among the last 7")
    days_30: int = Field(description="days with readings among the last 30")
    change: float | None = Field(description="last_7_days - last_30_days")
    direction: Direction | None


class Night(_Out):
    """One night's resting heart rate."""

    night: date = Field(description="the date of the morning the night ended")
    at: datetime = Field(description="when it ended")
    value: float
    elevated: bool = Field(description="3 /min or more above the usual of the nights before")


class NightlyRestingHeartRate(_Out):
    """The last nights' resting heart rates and the patient's usual one."""

    unit: str = "/min"
    usual: float | None = Field(description="median of up to 28 earlier nights not elevated")
    usual_nights: int = Field(description="how many nights the usual is the median of")
    nights: list[Night]


class Finding(_Out):
    """An open (or acknowledged) alert about the patient, in the patient's words."""

    alert_id: str
    metric: str
    name: str
    severity: Severity
    status: str
    opened_at: datetime
    updated_at: datetime
    care_team_told: bool = Field(description="a notification of it was delivered to the team")
    message: str


class Summary(_Out):
    """What ``GET /v1/me/summary`` answers."""

    patient_id: str
    as_of: datetime
    latest: list[LatestReading]
    trends: list[Trend]
    nightly_resting_heart_rate: NightlyRestingHeartRate
    findings: list[Finding]
