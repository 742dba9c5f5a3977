"""A patient's summary of their own data, from stored points and their alerts. Pure: the
points, the alerts, the care plan and the clock (``now``) come in, the :class:`Summary` goes
out (its models: :mod:`pghd.patient_view.models`).

**Usual range** (:mod:`pghd.patient_view.usual`). The processors keep a baseline per
channel per context bucket (``sleep``, ``awake``, ``awake-HH``); its band is centre ∓
``z_warning`` spreads (the care plan's z where it sets one), outside which the deviation
detector calls a reading far from the patient's usual. A reading is compared with the band
of the bucket it was, or would be, judged in; where that cannot be told (heart and
respiratory rate, judged only at rest or asleep) it has none.

**Latest.** The newest reading of each channel (blood pressure: systolic and diastolic
apart), any device, against its usual range (``within``, ``above``, ``below``, and in words,
:func:`pghd.feedback.wording.describe_change`).

**Trends.** By UTC calendar day, today included: ``last_7_days`` is the mean over the 7 days
ending today, ``last_30_days`` over the 30 days ending today (the last 7 among them), each
rounded to 2 decimals. For most channels that is the mean of the readings; for interval
metrics (steps, sleep) it is the mean of the daily totals, over the days that have any.
``direction`` is ``steady`` while the difference is within one spread of the channel's
baselines (the widest of its contexts; 5 % of the 30-day figure for a channel without one),
else ``up`` or ``down``.

**Nightly resting heart rate.** The last :data:`NIGHTS_SHOWN` nights the processors computed
(:mod:`processors.resting_hr`), each by the date of its morning. The usual is theirs too: the
median of up to 28 earlier nights that were not elevated (a night is elevated when it is 3
/min or more above the usual of the nights before it), shown once there are 14 of them.

**Findings.** The patient's open or acknowledged alerts, each in the reviewed wording
(:data:`pghd.feedback.wording.Kind.FINDING_OPENED`): the metric's plain name, how far its
latest finding was from the usual range, and since when (:func:`since_phrase`, or the nights
in a row for resting heart rate). A finding may have been judged awake or asleep: against
one range it is said how far; against both, only the side when both agree ("above");
otherwise "different from". "Your care team has been told" (the warning and critical
templates) is said only when a notification of the alert was delivered; otherwise the info
template ("your care team can see this") is used. The clinicians' text (``Alert.summary``,
the findings' explanations) never reaches the patient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from statistics import median

from pghd.alerting import Alert, NotificationOutcome
from pghd.care_plans import CarePlan
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Severity
from pghd.feedback.wording import Kind, describe_change, metric_name, render
from pghd.patient_view.models import (
    Compared,
    DailyTotal,
    Direction,
    Finding,
    FindingPoint,
    LatestReading,
    Night,
    NightlyRestingHeartRate,
    StoredLatest,
    StoredNight,
    Summary,
    SummaryInputs,
    Trend,
    UsualRange,
)
from pghd.patient_view.usual import UsualRanges, usual_ranges

__all__ = [
    "NIGHTLY_MARGIN",
    "NIGHTS_SHOWN",
    "findings",
    "latest_readings",
    "nightly",
    "nights_phrase",
    "since_phrase",
    "summarize",
    "trends",
]

NIGHTS_SHOWN = 14
NIGHTLY_WINDOW = 28
NIGHTLY_MIN_NIGHTS = 14
NIGHTLY_MARGIN = 3.0
"""/min above the usual from which a night counts as elevated (the processors' amber)."""
STEADY_SHARE = 0.05

_ORDER = {metric: i for i, metric in enumerate(CATALOGUE)}


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


def _compared(value: float, usual: UsualRange | None) -> Compared | None:
    if usual is None:
        return None
    return "above" if value > usual.high else "below" if value < usual.low else "within"


def latest_readings(latest: Iterable[StoredLatest], usual: UsualRanges) -> list[LatestReading]:
    """The newest reading of each (metric, channel), with the usual range it is compared
    with (:meth:`UsualRanges.for_reading`), in catalogue order."""
    newest: dict[tuple[str, str], StoredLatest] = {}
    for point in latest:
        key = (point.metric, point.channel)
        if key not in newest or point.at > newest[key].at:
            newest[key] = point
    found = []
    for (metric, channel), p in sorted(newest.items(), key=lambda kv: _sort_key(*kv[0])):
        band = usual.for_reading(channel, p.at)
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


def trends(daily: Iterable[DailyTotal], *, today: date, usual: UsualRanges) -> list[Trend]:
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
        spread = usual.widest_spread(channel)
        steady = spread if spread is not None else STEADY_SHARE * abs(last_30 or 0.0)
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


def _side(value: float, band: UsualRange) -> str:
    """Which side of ``band`` ``value`` lies on; inside it, of its centre (a value back
    inside a range that moved with it is still above or below the usual)."""
    if value > band.high:
        return "above"
    if value < band.low:
        return "below"
    if value == band.centre:
        return "different from"
    return "above" if value > band.centre else "below"


def _change(
    point: FindingPoint | None,
    usual: UsualRanges,
    nights: NightlyRestingHeartRate,
) -> str:
    if point is None:
        return "different from"
    if point.metric == Metric.RESTING_HEART_RATE.value and nights.usual is not None:
        return describe_change(point.metric, point.value, nights.usual, nights.usual)
    bands = usual.for_finding(point.channel, point.at)
    if len(bands) == 1:
        words = describe_change(point.metric, point.value, bands[0].low, bands[0].high)
        return words if words != "within" else _side(point.value, bands[0])
    sides = {_side(point.value, band) for band in bands}
    return sides.pop() if len(sides) == 1 else "different from"


def findings(
    alerts: Iterable[Alert],
    points: Sequence[FindingPoint],
    *,
    patient_id: str,
    usual: UsualRanges,
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
    patient_id: str,
    inputs: SummaryInputs,
    alerts: Iterable[Alert],
    *,
    now: datetime,
    plan: CarePlan | None = None,
) -> Summary:
    """The whole summary of ``patient_id`` at ``now``, under their care ``plan``."""
    usual = usual_ranges(inputs.baselines, plan=plan)
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
