"""The patient's summary, pure (pghd/patient_view/summary.py): usual ranges, latest values,
trends, nights and findings, at a pinned clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from pghd.alerting import (
    Alert,
    AlertLabels,
    AlertState,
    NotificationOutcome,
    NotificationRecord,
    label_fingerprint,
)
from pghd.contracts import Severity
from pghd.patient_view.summary import (
    DailyTotal,
    FindingPoint,
    StoredBaseline,
    StoredLatest,
    StoredNight,
    SummaryInputs,
    findings,
    latest_readings,
    nightly,
    nights_phrase,
    since_phrase,
    summarize,
    trends,
    usual_by_channel,
)

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
ME, OTHER = "p-me", "p-other"


def baseline(
    channel: str = "heart_rate",
    *,
    mean: float = 64,
    spread: float = 3,
    at: datetime = NOW - timedelta(hours=1),
    context: str = "awake-06",
) -> StoredBaseline:
    return StoredBaseline(
        channel, context, mean, spread, mean - 4 * spread, mean + 4 * spread, 40, at
    )


def alert(
    patient: str = ME,
    problem: str = "heart_rate",
    *,
    opened: timedelta = timedelta(hours=5),
    delivered: bool = True,
    severity: Severity = Severity.WARNING,
    status: AlertState = AlertState.OPEN,
    **changes: Any,
) -> Alert:
    labels = AlertLabels(patient_id=patient, problem=problem)
    fingerprint = label_fingerprint(labels)
    fields: dict[str, Any] = {
        "alert_id": f"al-{patient}-{problem}",
        "fingerprint": fingerprint,
        "labels": labels,
        "severity": severity,
        "status": status,
        "summary": "CLINICIANS ONLY: HR 95 /min vs usual 64 (spread 3), z=10",
        "opened_at": NOW - opened,
        "updated_at": NOW - timedelta(minutes=10),
        "last_anomaly_at": NOW - timedelta(minutes=10),
        "anomaly_ids": [f"an-{patient}-{problem}"],
        "anomaly_count": 1,
        "notifications": [
            NotificationRecord(
                channel="ward",
                route="all",
                attempt=1,
                at=NOW - opened,
                outcome=NotificationOutcome.DELIVERED if delivered else NotificationOutcome.FAILED,
            )
        ],
    }
    if status is not AlertState.OPEN:
        fields |= {"acknowledged_at": NOW - timedelta(hours=1), "acknowledged_by": "nurse"}
    if status is AlertState.RESOLVED:
        fields |= {"resolved_at": NOW - timedelta(minutes=30), "resolved_by": "nurse"}
    return Alert(**(fields | changes))


def point(
    patient: str = ME, problem: str = "heart_rate", value: float = 95, **changes: Any
) -> FindingPoint:
    fields: dict[str, Any] = {
        "anomaly_id": f"an-{patient}-{problem}",
        "metric": problem,
        "channel": problem,
        "value": value,
        "at": NOW - timedelta(minutes=10),
        "phase": "onset",
    }
    return FindingPoint(**(fields | changes))


# --- usual range and latest ----------------------------------------------------------------


def test_the_usual_range_is_the_newest_baseline_of_each_channel() -> None:
    usual = usual_by_channel(
        [
            baseline(mean=70, at=NOW - timedelta(hours=3), context="sleep"),
            baseline(mean=64, at=NOW - timedelta(hours=1)),
            baseline("spo2", mean=97, spread=1, at=NOW - timedelta(days=2), context="awake"),
        ]
    )
    hr = usual["heart_rate"]
    assert (hr.centre, hr.spread, hr.low, hr.high, hr.context) == (64, 3, 52, 76, "awake-06")
    assert (usual["spo2"].low, usual["spo2"].high) == (93, 101)


def test_the_latest_value_of_each_channel_against_its_usual_range() -> None:
    usual = usual_by_channel([baseline(), baseline("blood_pressure.systolic", mean=120, spread=3)])
    latest = latest_readings(
        [
            StoredLatest("heart_rate", "heart_rate", "/min", 70, NOW - timedelta(hours=2)),
            StoredLatest("heart_rate", "heart_rate", "/min", 85, NOW - timedelta(minutes=5)),
            StoredLatest("blood_pressure", "blood_pressure.diastolic", "mm[Hg]", 80, NOW),
            StoredLatest("blood_pressure", "blood_pressure.systolic", "mm[Hg]", 100, NOW),
            StoredLatest("steps", "steps", "{steps}", 1200, NOW),
        ],
        usual,
    )
    assert [(r.channel, r.part, r.value, r.compared, r.change) for r in latest] == [
        ("heart_rate", None, 85, "above", "9 beats per minute above"),
        ("blood_pressure.diastolic", "diastolic", 80, None, None),
        ("blood_pressure.systolic", "systolic", 100, "below", "8 mmHg below"),
        ("steps", None, 1200, None, None),
    ]
    assert latest[0].name == "heart rate" and latest[0].usual == usual["heart_rate"]
    inside = latest_readings([StoredLatest("heart_rate", "heart_rate", "/min", 70, NOW)], usual)
    assert (inside[0].compared, inside[0].change) == ("within", "within")


# --- trends --------------------------------------------------------------------------------


def day(n: int) -> date:
    """``n`` UTC days before today."""
    return TODAY - timedelta(days=n)


def test_trends_compare_the_last_7_days_with_the_last_30_by_utc_day() -> None:
    daily = [
        DailyTotal("heart_rate", "heart_rate", day(0), 80 * 2, 2),  # today counts
        DailyTotal("heart_rate", "heart_rate", day(6), 70 * 8, 8),  # the 7th day back
        DailyTotal("heart_rate", "heart_rate", day(7), 60 * 10, 10),  # in the 30 only
        DailyTotal("heart_rate", "heart_rate", day(29), 60 * 20, 20),  # the 30th day back
        DailyTotal("heart_rate", "heart_rate", day(30), 500 * 9, 9),  # too old
        DailyTotal("heart_rate", "heart_rate", day(-1), 500 * 9, 9),  # tomorrow
    ]
    (hr,) = trends(daily, today=TODAY, usual={})
    assert hr.per == "reading" and (hr.days_7, hr.days_30) == (2, 4)
    assert hr.last_7_days == pytest.approx((160 + 560) / 10)  # each reading weighs the same
    assert hr.last_30_days == pytest.approx((160 + 560 + 600 + 1200) / 40)
    assert hr.change == pytest.approx(72 - 63)
    assert hr.direction == "up"


def test_steps_trend_by_daily_totals_and_steady_is_within_one_spread() -> None:
    daily = [
        DailyTotal("steps", "steps", day(1), 8000, 40),
        DailyTotal("steps", "steps", day(2), 6000, 30),
        DailyTotal("steps", "steps", day(10), 7000, 35),
        DailyTotal("heart_rate", "heart_rate", day(1), 66 * 10, 10),
        DailyTotal("heart_rate", "heart_rate", day(20), 62 * 10, 10),
        DailyTotal("spo2", "spo2", day(1), 90, 1),
        DailyTotal("spo2", "spo2", day(20), 100, 1),
    ]
    hr, spo2, steps = trends(daily, today=TODAY, usual=usual_by_channel([baseline()]))
    assert (steps.per, steps.last_7_days, steps.last_30_days) == ("day", 7000, 7000)
    assert steps.direction == "steady"
    assert (hr.change, hr.direction) == (pytest.approx(2), "steady"), "within one spread (3)"
    # no baseline: steady within 5 % of the 30-day figure (95 here: 90 is 5 below, 5.3 %)
    assert (spo2.change, spo2.direction) == (pytest.approx(-5), "down")


def test_trend_figures_are_rounded_to_2_decimals() -> None:
    daily = [
        DailyTotal("heart_rate", "heart_rate", day(n), 66 * 100 if n < 7 else 62.3 * 100, 100)
        for n in range(30)
    ]
    (hr,) = trends(daily, today=TODAY, usual={})
    assert (hr.last_7_days, hr.last_30_days, hr.change) == (66.0, 63.16, 2.84)


def test_a_channel_without_readings_this_week_has_no_weekly_figure() -> None:
    (hr,) = trends(
        [DailyTotal("heart_rate", "heart_rate", day(12), 600, 10)], today=TODAY, usual={}
    )
    assert (hr.last_7_days, hr.last_30_days, hr.change, hr.direction) == (None, 60, None, None)


# --- nights --------------------------------------------------------------------------------


def nights(values: list[float]) -> list[StoredNight]:
    """One night per value, the last one ending this morning."""
    last = NOW.replace(hour=6, minute=40)
    return [
        StoredNight(at=last - timedelta(days=len(values) - 1 - i), value=v)
        for i, v in enumerate(values)
    ]


def test_the_usual_night_is_the_median_of_earlier_calm_nights_once_there_are_14() -> None:
    early = nightly(nights([58.0] * 12 + [70.0]), now=NOW)
    assert early.usual is None and not any(n.elevated for n in early.nights)
    assert len(early.nights) == 13 and early.nights[-1].night == TODAY
    # 13 earlier nights judge nothing: the 14th counts among the calm ones
    assert nightly(nights([58.0] * 13 + [70.0]), now=NOW).usual == 58.0

    summary = nightly(nights([58.0] * 8 + [60.0] * 8 + [61.9, 63.0, 64.0]), now=NOW)
    # each judged against the median of the calm nights before it (59, then 60)
    assert [n.elevated for n in summary.nights[-3:]] == [False, True, True]
    # the elevated nights do not raise the usual: median of the 17 calm ones
    assert (summary.usual, summary.usual_nights) == (60.0, 17)
    assert len(summary.nights) == 14


def test_a_night_ending_after_now_is_not_shown() -> None:
    later = StoredNight(at=NOW + timedelta(hours=1), value=99)
    assert nightly([*nights([58.0]), later], now=NOW).nights[-1].value == 58.0


# --- words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ago", "words"),
    [
        (timedelta(minutes=20), "in the last hour"),
        (timedelta(minutes=90), "for the last hour"),
        (timedelta(hours=5, minutes=59), "for the last 5 hours"),
        (timedelta(hours=30), "since yesterday"),
        (timedelta(days=3, hours=2), "for 3 days"),
        (-timedelta(minutes=5), "in the last hour"),
    ],
)
def test_since_phrases(ago: timedelta, words: str) -> None:
    assert since_phrase(NOW - ago, NOW) == words


def test_nights_phrases() -> None:
    assert (nights_phrase(1), nights_phrase(3)) == ("last night", "for 3 nights")


# --- findings ------------------------------------------------------------------------------


def test_an_open_finding_in_the_patients_words_never_the_clinicians() -> None:
    usual = usual_by_channel([baseline()])
    (found,) = findings(
        [alert()],
        [point(value=85)],
        patient_id=ME,
        usual=usual,
        nights=nightly([], now=NOW),
        now=NOW,
    )
    assert found.message == (
        "Your heart rate has been 9 beats per minute above your usual for the last 5 hours;"
        " your care team has been told. You do not need to do anything unless they contact"
        " you or you feel unwell."
    )
    assert found.care_team_told and (found.metric, found.name) == ("heart_rate", "heart rate")
    assert "CLINICIANS" not in found.model_dump_json()


def test_the_care_team_is_said_told_only_once_a_notification_was_delivered() -> None:
    (found,) = findings(
        [alert(delivered=False, severity=Severity.CRITICAL)],
        [point(value=85)],
        patient_id=ME,
        usual=usual_by_channel([baseline()]),
        nights=nightly([], now=NOW),
        now=NOW,
    )
    assert not found.care_team_told and found.severity is Severity.CRITICAL
    assert "has been told" not in found.message
    assert "Your care team can see this" in found.message


def test_only_the_patients_own_open_and_acknowledged_alerts_most_severe_first() -> None:
    alerts = [
        alert(ME, "spo2", severity=Severity.INFO),
        alert(ME, "heart_rate", severity=Severity.CRITICAL, status=AlertState.ACKNOWLEDGED),
        alert(ME, "body_temperature", status=AlertState.RESOLVED),
        alert(OTHER, "heart_rate", severity=Severity.CRITICAL),
    ]
    found = findings(
        alerts,
        [point(ME, "spo2", 90), point(ME, "heart_rate", 50), point(OTHER, "heart_rate", 150)],
        patient_id=ME,
        usual=usual_by_channel([baseline(), baseline("spo2", mean=97, spread=1)]),
        nights=nightly([], now=NOW),
        now=NOW,
    )
    assert [(f.alert_id, f.status) for f in found] == [
        (f"al-{ME}-heart_rate", "acknowledged"),
        (f"al-{ME}-spo2", "open"),
    ]
    assert "2 beats per minute below" in found[0].message
    assert "3 % below" in found[1].message


def test_a_finding_without_a_stored_point_or_range_still_reads_plainly() -> None:
    (found,) = findings(
        [alert(opened=timedelta(days=2, hours=1))],
        [point(phase="resolved")],  # a resolution is no finding to describe
        patient_id=ME,
        usual={},
        nights=nightly([], now=NOW),
        now=NOW,
    )
    assert found.message.startswith(
        "Your heart rate has been different from your usual for 2 days;"
    )


def test_a_value_back_inside_a_moved_range_is_still_said_above_or_below() -> None:
    (found,) = findings(
        [alert()],
        [point(value=70)],
        patient_id=ME,
        usual=usual_by_channel([baseline()]),
        nights=nightly([], now=NOW),
        now=NOW,
    )
    assert "has been above your usual" in found.message


def test_a_nightly_finding_counts_the_nights_in_a_row() -> None:
    resting = nightly(nights([58.0] * 16 + [67.0, 67.0, 67.0]), now=NOW)
    rhr = point(ME, "resting_heart_rate", 67, anomaly_id="an-night", channel="resting_heart_rate")
    (found,) = findings(
        [alert(ME, "heart_rate", opened=timedelta(days=1), anomaly_ids=["an-night"])],
        [rhr],
        patient_id=ME,
        usual={},
        nights=resting,
        now=NOW,
    )
    assert found.message.startswith(
        "Your resting heart rate has been 9 beats per minute above your usual for 3 nights;"
        " your care team has been told."
    )
    assert found.metric == "resting_heart_rate"


def test_summarize_puts_it_all_together_for_the_one_patient() -> None:
    inputs = SummaryInputs(
        latest=[StoredLatest("heart_rate", "heart_rate", "/min", 85, NOW)],
        baselines=[baseline()],
        daily=[DailyTotal("heart_rate", "heart_rate", TODAY, 850, 10)],
        nights=nights([58.0]),
        findings=[point(value=85)],
    )
    summary = summarize(ME, inputs, [alert(), alert(OTHER)], now=NOW)
    assert (summary.patient_id, summary.as_of) == (ME, NOW)
    assert summary.latest[0].compared == "above"
    assert summary.trends[0].last_7_days == 85
    assert summary.nightly_resting_heart_rate.nights[0].value == 58.0
    assert [f.alert_id for f in summary.findings] == [f"al-{ME}-heart_rate"]
