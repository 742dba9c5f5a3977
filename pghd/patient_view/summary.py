"""A patient's summary of their own data, from stored points and their alerts. Pure: the
points, the alerts and the clock (``now``) come in, the :class:`Summary` goes out.

**Usual range.** The processors write a ``baselines`` point whenever a channel's baseline
learns a reading (:mod:`processors.judge`): its centre (``mean``), its robust spread, and
``low``/``high`` = centre ∓ ``z_warning`` (4) spreads, the band outside which the deviation
detector calls a reading far from the patient's usual. That band is the usual range shown
here, with its centre and spread; it is the channel's most recent baseline point, whatever
its context bucket (``sleep``, ``awake``, ``awake-HH``), which is named alongside.

**Latest.** The newest reading of each channel (blood pressure: systolic and diastolic
apart), any device, against the usual range (``within``, ``above``, ``below``, and in words,
:func:`pghd.feedback.wording.describe_change`).

**Trends.** By UTC calendar day, today included: ``last_7_days`` is the mean over the 7 days
ending today, ``last_30_days`` over the 30 days ending today (the last 7 among them), each
rounded to 2 decimals. For most channels that is the mean of the readings; for interval
metrics (steps, sleep) it is the mean of the daily totals, over the days that have any.
``direction`` is ``steady`` while the difference is within one spread of the channel's
baseline (5 % of the 30-day figure for a channel without one), else ``up`` or ``down``.

**Nightly resting heart rate.** The last :data:`NIGHTS_SHOWN` nights the processors computed
(:mod:`processors.resting_hr`), each by the date of its morning. The usual is theirs too: the
median of up to 28 earlier nights that were not elevated (a night is elevated when it is 3
/min or more above the usual of the nights before it), shown once there are 14 of them.

**Findings.** The patient's open or acknowledged alerts, each in the reviewed wording
(:data:`pghd.feedback.wording.Kind.FINDING_OPENED`): the metric's plain name, how far its
latest finding was from the usual range, and since when (:func:`since_phrase`, or the nights
in a row for resting heart rate). "Your care team has been told" (the warning and critical
templates) is said only when a notification of the alert was delivered; otherwise the info
template ("your care team can see this") is used. The clinicians' text (``Alert.summary``,
the findings' explanations) never reaches the patient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import median
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pghd.alerting import Alert, NotificationOutcome
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Severity
from pghd.feedback.wording import Kind, describe_change, metric_name, render

__all__ = [
    "NIGHTLY_MARGIN",
    "NIGHTS_SHOWN",
    "DailyTotal",
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
    "findings",
    "latest_readings",
    "nightly",
    "nights_phrase",
    "since_phrase",
    "summarize",
    "trends",
    "usual_by_channel",
]

NIGHTS_SHOWN = 14
NIGHTLY_WINDOW = 28
NIGHTLY_MIN_NIGHTS = 14
NIGHTLY_MARGIN = 3.0
"""/min above the usual from which a night counts as elevated (the processors' amber)."""
STEADY_SHARE = 0.05

Compared = Literal["within", "above", "below"]
Direction = Literal["up", "down", "steady"]

_ORDER = {metric: i for i, metric in enumerate(CATALOGUE)}


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
    """A channel's usual range: its baseline's centre ± 4 spreads (``low``, ``high``)."""

    centre: float
    spread: float
    low: float
    high: float
    context: str = Field(description="the baseline's context: sleep, awake, awake-HH (UTC)")
    readings: int = Field(description="how many readings shaped it")
    updated_at: datetime


class LatestReading(_Out):
    """The newest reading of one channel, against the usual range."""

    metric: str
    channel: str
    part: str | None = Field(description="the channel of a composite metric: systolic...")
    name: str = Field(description="the metric's plain name")
    unit: str
    value: float
    at: datetime
    usual: UsualRange | None
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


# --- the pure functions ---------------------------------------------------------------------


def _metric(metric: str) -> Metric | None:
    try:
        return Metric(metric)
    except ValueError:
        return None


def _part(channel: str) -> str | None:
    return channel.split(".", 1)[1] if "." in channel else None


def _sort_key(metric: str, channel: str) -> tuple[int, str]:
    known = _metric(metric)
    return (_ORDER[known] if known is not None else len(_ORDER)), channel


def _unit(metric: str) -> str:
    known = _metric(metric)
    return CATALOGUE[known].unit if known is not None else ""


def usual_by_channel(baselines: Iterable[StoredBaseline]) -> dict[str, UsualRange]:
    """The most recent baseline of each channel, as its usual range."""
    newest: dict[str, StoredBaseline] = {}
    for point in baselines:
        held = newest.get(point.channel)
        if held is None or (point.at, point.context) > (held.at, held.context):
            newest[point.channel] = point
    return {
        channel: UsualRange(
            centre=p.mean,
            spread=p.spread,
            low=p.low,
            high=p.high,
            context=p.context,
            readings=p.n,
            updated_at=p.at,
        )
        for channel, p in newest.items()
    }


def _compared(value: float, usual: UsualRange | None) -> Compared | None:
    if usual is None:
        return None
    return "above" if value > usual.high else "below" if value < usual.low else "within"


def latest_readings(
    latest: Iterable[StoredLatest], usual: Mapping[str, UsualRange]
) -> list[LatestReading]:
    """The newest reading of each (metric, channel), with its usual range, in catalogue order."""
    newest: dict[tuple[str, str], StoredLatest] = {}
    for point in latest:
        key = (point.metric, point.channel)
        if key not in newest or point.at > newest[key].at:
            newest[key] = point
    found = []
    for (metric, channel), p in sorted(newest.items(), key=lambda kv: _sort_key(*kv[0])):
        band = usual.get(channel)
        words = None if band is None else describe_change(metric, p.value, band.low, band.high)
        found.append(
            LatestReading(
                metric=metric,
                channel=channel,
                part=_part(channel),
                name=metric_name(metric),
                unit=p.unit,
                value=p.value,
                at=p.at,
                usual=band,
                compared=_compared(p.value, band),
                change=words,
            )
        )
    return found


def _is_interval(metric: str) -> bool:
    known = _metric(metric)
    return known is not None and CATALOGUE[known].interval


def _window(days: Sequence[DailyTotal], *, per_day: bool) -> float | None:
    if not days:
        return None
    if per_day:
        return sum(d.total for d in days) / len(days)
    count = sum(d.count for d in days)
    return sum(d.total for d in days) / count if count else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def trends(
    daily: Iterable[DailyTotal], *, today: date, usual: Mapping[str, UsualRange]
) -> list[Trend]:
    """Each channel's last 7 days against its last 30 (see the module docstring)."""
    by_channel: dict[tuple[str, str], dict[date, DailyTotal]] = {}
    first = today - timedelta(days=29)
    for total in daily:
        if first <= total.day <= today and total.count > 0:
            days = by_channel.setdefault((total.metric, total.channel), {})
            held = days.get(total.day)
            days[total.day] = (
                total
                if held is None
                else DailyTotal(
                    total.metric,
                    total.channel,
                    total.day,
                    held.total + total.total,
                    held.count + total.count,
                )
            )
    week_start = today - timedelta(days=6)
    found = []
    for (metric, channel), days in sorted(by_channel.items(), key=lambda kv: _sort_key(*kv[0])):
        per_day = _is_interval(metric)
        month = list(days.values())
        week = [d for d in month if d.day >= week_start]
        last_7, last_30 = _window(week, per_day=per_day), _window(month, per_day=per_day)
        change = None if last_7 is None or last_30 is None else _round(last_7 - last_30)
        band = usual.get(channel)
        steady = band.spread if band is not None else STEADY_SHARE * abs(last_30 or 0.0)
        direction: Direction | None = None
        if change is not None:
            direction = "steady" if abs(change) <= steady else "up" if change > 0 else "down"
        found.append(
            Trend(
                metric=metric,
                channel=channel,
                part=_part(channel),
                name=metric_name(metric),
                unit=_unit(metric),
                per="day" if per_day else "reading",
                last_7_days=_round(last_7),
                last_30_days=_round(last_30),
                days_7=len(week),
                days_30=len(month),
                change=change,
                direction=direction,
            )
        )
    return found


def nightly(nights: Iterable[StoredNight], *, now: datetime) -> NightlyRestingHeartRate:
    """The last nights and the usual, judged night by night as the processors do."""
    by_night: dict[date, StoredNight] = {}
    for point in nights:
        if point.at > now:
            continue
        night = point.at.astimezone(UTC).date()
        if night not in by_night or point.at > by_night[night].at:
            by_night[night] = point
    judged: list[Night] = []
    calm: list[float] = []  # values of the nights that were not elevated, oldest first
    for night, point in sorted(by_night.items()):
        earlier = calm[-NIGHTLY_WINDOW:]
        elevated = (
            len(earlier) >= NIGHTLY_MIN_NIGHTS and point.value >= median(earlier) + NIGHTLY_MARGIN
        )
        judged.append(Night(night=night, at=point.at, value=point.value, elevated=elevated))
        if not elevated:
            calm.append(point.value)
    basis = calm[-NIGHTLY_WINDOW:]
    enough = len(basis) >= NIGHTLY_MIN_NIGHTS
    return NightlyRestingHeartRate(
        usual=median(basis) if enough else None,
        usual_nights=len(basis) if enough else 0,
        nights=judged[-NIGHTS_SHOWN:],
    )


def since_phrase(opened_at: datetime, now: datetime) -> str:
    """How long a finding has lasted, in words: "in the last hour", "for the last 5 hours",
    "since yesterday", "for 3 days"."""
    hours = max(0.0, (now - opened_at) / timedelta(hours=1))
    if hours < 1:
        return "in the last hour"
    if hours < 2:
        return "for the last hour"
    if hours < 24:
        return f"for the last {math.floor(hours)} hours"
    if hours < 48:
        return "since yesterday"
    return f"for {math.floor(hours / 24)} days"


def nights_phrase(nights: int) -> str:
    """Nights in a row, in words: "last night", "for 3 nights"."""
    return "last night" if nights <= 1 else f"for {nights} nights"


def _elevated_streak(summary: NightlyRestingHeartRate) -> int:
    streak = 0
    for night in reversed(summary.nights):
        if not night.elevated:
            break
        streak += 1
    return streak


def _told(alert: Alert) -> bool:
    return any(n.outcome is NotificationOutcome.DELIVERED for n in alert.notifications)


def _latest_point(alert: Alert, points: Sequence[FindingPoint]) -> FindingPoint | None:
    """The alert's newest finding that is not a resolution or a withdrawal (an alert lists
    the ids of its latest anomalies, so its newest is always among them)."""
    listed = [
        p
        for p in points
        if p.anomaly_id in alert.anomaly_ids and p.phase not in ("resolved", "withdrawn")
    ]
    return max(listed, key=lambda p: p.at) if listed else None


def _change(
    point: FindingPoint | None,
    usual: Mapping[str, UsualRange],
    nights: NightlyRestingHeartRate,
) -> str:
    if point is None:
        return "different from"
    if point.metric == Metric.RESTING_HEART_RATE.value and nights.usual is not None:
        return describe_change(point.metric, point.value, nights.usual, nights.usual)
    band = usual.get(point.channel)
    if band is None:
        return "different from"
    words = describe_change(point.metric, point.value, band.low, band.high)
    if words != "within":
        return words
    if point.value == band.centre:
        return "different from"
    return "above" if point.value > band.centre else "below"


def findings(
    alerts: Iterable[Alert],
    points: Sequence[FindingPoint],
    *,
    patient_id: str,
    usual: Mapping[str, UsualRange],
    nights: NightlyRestingHeartRate,
    now: datetime,
) -> list[Finding]:
    """The patient's open and acknowledged alerts in their words, most severe first, then
    the most recently updated (alerts of anyone else are ignored)."""
    found = []
    mine = [a for a in alerts if a.patient_id == patient_id and a.active]
    mine.sort(key=lambda a: (-a.severity.rank, -a.updated_at.timestamp(), a.alert_id))
    for alert in mine:
        point = _latest_point(alert, points)
        metric = point.metric if point is not None else alert.problem
        streak = _elevated_streak(nights) if metric == Metric.RESTING_HEART_RATE.value else 0
        since = nights_phrase(streak) if streak else since_phrase(alert.opened_at, now)
        told = _told(alert)
        fields = {
            "metric": metric_name(metric),
            "change": _change(point, usual, nights),
            "since": since,
        }
        message = render(Kind.FINDING_OPENED, alert.severity if told else Severity.INFO, fields)
        found.append(
            Finding(
                alert_id=alert.alert_id,
                metric=metric,
                name=metric_name(metric),
                severity=alert.severity,
                status=alert.status.value,
                opened_at=alert.opened_at,
                updated_at=alert.updated_at,
                care_team_told=told,
                message=message,
            )
        )
    return found


def summarize(
    patient_id: str, inputs: SummaryInputs, alerts: Iterable[Alert], *, now: datetime
) -> Summary:
    """The whole summary of ``patient_id`` at ``now``."""
    usual = usual_by_channel(inputs.baselines)
    nights = nightly(inputs.nights, now=now)
    return Summary(
        patient_id=patient_id,
        as_of=now,
        latest=latest_readings(inputs.latest, usual),
        trends=trends(inputs.daily, today=now.astimezone(UTC).date(), usual=usual),
        nightly_resting_heart_rate=nights,
        findings=findings(
            alerts,
            inputs.findings,
            patient_id=patient_id,
            usual=usual,
            nights=nights,
            now=now,
        ),
    )
