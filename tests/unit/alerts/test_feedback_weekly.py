"""``weekly_summary``: fixed weeks from a Monday 08:00 UTC, readings counted once per reading
in the week they arrived, findings noted once, and one event per week, never twice, never for
a week the patient consented within or that had no readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from alerts.feedback.outbox import FeedbackPolicy, FeedbackState, WeekTally, admit
from alerts.feedback.weekly import (
    WEEK_ANCHOR,
    counted,
    highlights,
    noted,
    readings_of,
    summary,
    week_start,
)
from pghd import wire
from pghd.contracts import Severity
from pghd.erasure import new_marker
from pghd.feedback.events import FeedbackEvent, FindingDetails, WeeklyDetails, event_id
from pghd.feedback.subscription import new_secret, subscribe
from pghd.feedback.wording import Kind

MONDAY = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # a week's start
NEXT = MONDAY + timedelta(days=7)
CONSENTED = MONDAY - timedelta(days=3)


def _line(metric: str, channel: str, value: float, ns: int, source: str = "acme") -> str:
    return (
        f"vitals,channel={channel},device=cuff-1,metric={metric},patient_id=p1,source={source},"
        f'unit=mmHg value={value},event_id="e1" {ns}'
    )


def points(*lines: str) -> bytes:
    return orjson.dumps({"schema_version": 1, "patient_id": "p1", "lines": list(lines)})


def finding(kind: Kind, finding_id: str, at: datetime) -> FeedbackEvent:
    return FeedbackEvent(
        id=event_id(finding_id, kind.value),
        kind=kind,
        patient_id="p1",
        occurred_at=at,
        severity=Severity.WARNING,
        message="words",
        details=FindingDetails(finding_id=finding_id, metric="spo2", opened_at=at),
    )


def test_weeks_start_on_monday_at_0800_utc() -> None:
    assert WEEK_ANCHOR.weekday() == 0 and (WEEK_ANCHOR.hour, WEEK_ANCHOR.minute) == (8, 0)
    assert week_start(MONDAY) == MONDAY
    assert week_start(MONDAY - timedelta(seconds=1)) == MONDAY - timedelta(days=7)
    assert week_start(datetime(2026, 12, 6, 23, 59, tzinfo=UTC)) == MONDAY  # the Sunday after
    assert week_start(NEXT) == NEXT
    before_anchor = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)  # a Wednesday
    assert week_start(before_anchor) == datetime(2025, 12, 29, 8, 0, tzinfo=UTC)
    # a short configured week (the integration test's): spans of period_s from the anchor
    assert week_start(WEEK_ANCHOR + timedelta(seconds=17), period_s=8) == WEEK_ANCHOR + timedelta(
        seconds=16
    )


def test_readings_are_counted_once_per_reading_not_per_channel() -> None:
    bp = [_line("blood_pressure", "systolic", 120, 1), _line("blood_pressure", "diastolic", 80, 1)]
    other_time = _line("blood_pressure", "systolic", 118, 2)
    other_source = _line("blood_pressure", "systolic", 121, 1, source="other")
    baseline = "baselines,channel=heart_rate,context=sleep,patient_id=p1 mean=60 1765029900"
    anomaly = "anomalies,channel=spo2,metric=spo2,patient_id=p1 score=3 1765029900"
    assert readings_of(points(*bp)) == 1
    assert readings_of(points(*bp, other_time, other_source, baseline, anomaly)) == 3
    marker = wire.encode(new_marker("p1", at=MONDAY, by="admin"))
    assert readings_of(marker) == 0 and readings_of(b"garbage") == 0 and readings_of(None) == 0


def test_readings_are_tallied_in_the_week_and_on_the_day_they_arrived() -> None:
    state = FeedbackState(patient_id="p1", partition=0)
    state = counted(state, 3, at=MONDAY + timedelta(hours=1))
    state = counted(state, 2, at=MONDAY + timedelta(hours=5))  # same day
    state = counted(state, 1, at=MONDAY + timedelta(days=2))
    assert counted(state, 0, at=MONDAY) is state
    week = state.weeks[MONDAY.isoformat()]
    assert week.readings == 6 and week.days == ["2026-11-30", "2026-12-02"]
    state = counted(state, 4, at=NEXT + timedelta(minutes=1))
    assert state.weeks[NEXT.isoformat()].readings == 4
    later = counted(state, 1, at=NEXT + timedelta(days=7))
    assert MONDAY.isoformat() not in later.weeks, "only this week and the one before are kept"


def test_findings_are_noted_once_in_the_week_they_happened() -> None:
    state = FeedbackState(patient_id="p1", partition=0)
    opened = finding(Kind.FINDING_OPENED, "al-1", MONDAY + timedelta(days=1))
    state = noted(state, opened)
    assert noted(state, opened) is state, "an event read twice is noted once"
    state = noted(state, finding(Kind.FINDING_RESOLVED, "al-1", MONDAY + timedelta(days=2)))
    week = state.weeks[MONDAY.isoformat()]
    assert (week.opened, week.resolved) == (["al-1"], ["al-1"])


def test_highlights_are_the_reviewed_phrases() -> None:
    assert highlights(WeekTally(readings=3)) == "No new findings this week."
    both = WeekTally(readings=3, opened=["al-1", "al-2"], resolved=["al-0"])
    assert highlights(both) == (
        "New findings this week: 2; your care team has seen them."
        " Back within your usual range this week: 1."
    )
    assert highlights(WeekTally(resolved=["al-0"])) == (
        "No new findings this week. Back within your usual range this week: 1."
    )


def _week(readings: int, days: int = 2) -> FeedbackState:
    state = FeedbackState(patient_id="p1", partition=0)
    for day in range(days):
        state = counted(state, 0 if day else readings, at=MONDAY + timedelta(days=day, hours=1))
        if day:
            state = counted(state, 1, at=MONDAY + timedelta(days=day, hours=1))
    return state


def test_the_summary_of_the_week_just_over_is_made_once() -> None:
    state = _week(readings=4, days=2)  # 4 + 1 readings on 2 days
    state = noted(state, finding(Kind.FINDING_OPENED, "al-1", MONDAY + timedelta(days=1)))
    early, nothing = summary(state, now=NEXT - timedelta(seconds=1), consented_at=CONSENTED)
    assert nothing is None, "the week is not over"
    assert early.summary_done == MONDAY - timedelta(days=7), "the week before: no readings"
    done, event = summary(early, now=NEXT + timedelta(minutes=1), consented_at=CONSENTED)
    assert event is not None and event.kind is Kind.WEEKLY_SUMMARY
    assert event.id == event_id("p1", Kind.WEEKLY_SUMMARY.value, MONDAY.isoformat())
    assert event.occurred_at == NEXT and event.severity is Severity.INFO
    assert event.message == (
        "Your week: readings came in on 2 of the last 7 days (5 in all). New findings this"
        " week: 1; your care team has seen them."
    )
    assert event.details == WeeklyDetails(
        week_start=MONDAY, week_end=NEXT, readings=5, days=2, findings_opened=1
    )
    assert done.summary_done == MONDAY
    again, twice = summary(done, now=NEXT + timedelta(days=3), consented_at=CONSENTED)
    assert twice is None and again == done, "never made again for that week"
    # made again by a worker that did not store its decision (a crash): the same id, which
    # the outbox drops as a duplicate
    policy = FeedbackPolicy()
    registration = subscribe(
        "p1", url="https://a.example.org/h", kinds=[Kind.WEEKLY_SUMMARY], now=CONSENTED,
        secret=new_secret(),
    )  # fmt: skip
    queued, decision = admit(done, event, registration, now=NEXT, policy=policy)
    assert decision == "queued"
    _, remade = summary(state, now=NEXT + timedelta(minutes=2), consented_at=CONSENTED)
    assert remade == event
    assert admit(queued, remade, registration, now=NEXT, policy=policy)[1] == "duplicate"


def test_a_week_is_not_summarised_without_readings_consent_or_consent_from_its_start() -> None:
    after = NEXT + timedelta(minutes=1)
    empty = FeedbackState(patient_id="p1", partition=0)
    done, event = summary(empty, now=after, consented_at=CONSENTED)
    assert event is None and done.summary_done == MONDAY, "no readings: decided, nothing sent"
    state = _week(readings=4)
    late, event = summary(state, now=after, consented_at=MONDAY + timedelta(seconds=1))
    assert event is None and late.summary_done == MONDAY, "consented after the week began"
    on_time, event = summary(state, now=after, consented_at=MONDAY)
    assert event is not None and on_time.summary_done == MONDAY
    unconsented, event = summary(state, now=after, consented_at=None)
    assert event is None and unconsented is state


@pytest.mark.parametrize("period_s", [8.0, 3600.0])
def test_short_configured_weeks_work_the_same(period_s: float) -> None:
    start = week_start(MONDAY + timedelta(seconds=period_s * 3.5), period_s=period_s)
    state = counted(
        FeedbackState(patient_id="p1", partition=0),
        2,
        at=start + timedelta(seconds=1),
        period_s=period_s,
    )
    _, event = summary(
        state,
        now=start + timedelta(seconds=period_s),
        consented_at=start,
        period_s=period_s,
    )
    assert event is not None and event.details == WeeklyDetails(
        week_start=start, week_end=start + timedelta(seconds=period_s), readings=2, days=1
    )
