"""A patient's chart, pure (pghd/patient_view/chart.py): resolutions, bounds, and the usual
ranges each point is compared with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pghd.catalogue import Metric
from pghd.patient_view import usual as usual_module
from pghd.patient_view.chart import (
    AHEAD,
    EARLIEST,
    MAX_POINTS,
    ChartRequestError,
    Resolution,
    chart,
    plan,
)
from pghd.patient_view.models import StoredBaseline
from pghd.patient_view.usual import usual_ranges

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("span", "resolution", "points"),
    [
        (timedelta(hours=6), Resolution.RAW, None),
        (timedelta(days=1), Resolution.M5, 288),
        (timedelta(days=7), Resolution.H1, 168),
        (timedelta(days=30), Resolution.H3, 240),
        (timedelta(days=90), Resolution.H12, 180),
        (timedelta(days=366), Resolution.D1, 366),
    ],
)
def test_auto_picks_raw_for_short_spans_else_a_few_hundred_points(
    span: timedelta, resolution: Resolution, points: int | None
) -> None:
    chosen = plan(Metric.HEART_RATE, now=NOW, start=NOW - span)
    assert chosen.resolution is resolution
    if points is None:
        assert (chosen.every, chosen.aggregate) == (None, "none")
    else:
        assert chosen.every is not None and span / chosen.every == points
        assert chosen.aggregate == "mean"


def test_the_default_span_is_the_last_7_days_and_steps_are_summed() -> None:
    chosen = plan(Metric.STEPS, now=NOW)
    assert (chosen.start, chosen.end) == (NOW - timedelta(days=7), NOW)
    assert (chosen.resolution, chosen.aggregate) == (Resolution.H1, "sum")
    ending = plan(Metric.SPO2, now=NOW, end=NOW - timedelta(days=1))
    assert ending.start == NOW - timedelta(days=8)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (None, datetime(1, 1, 2, tzinfo=UTC), "end"),  # end - 7 days: before year 1
        (None, datetime.fromisoformat("9999-12-31T23:00-05:00"), "end"),  # past 9999 in UTC
        (datetime.fromisoformat("0001-01-01T00:00+05:00"), None, "start"),  # before year 1
        (datetime(1969, 12, 31, 23, tzinfo=UTC), None, "start"),
        (None, NOW + timedelta(days=1, seconds=1), "end"),
    ],
)
def test_times_out_of_range_are_refused_naming_the_field(
    start: datetime | None, end: datetime | None, field: str
) -> None:
    with pytest.raises(ChartRequestError, match=f"^{field} must be from 1970-01-01") as refused:
        plan(Metric.HEART_RATE, now=NOW, start=start, end=end)
    assert refused.value.field == field


def test_times_at_the_bounds_are_charted() -> None:
    first = plan(Metric.SPO2, now=NOW, start=EARLIEST, end=EARLIEST + timedelta(days=1))
    assert first.start == EARLIEST
    ahead = plan(Metric.SPO2, now=NOW, end=NOW + AHEAD)
    assert ahead.start == NOW + AHEAD - timedelta(days=7)


@pytest.mark.parametrize(
    ("start", "end", "resolution", "why"),
    [
        (NOW, NOW, Resolution.AUTO, "start must be before end"),
        (NOW - timedelta(days=367), NOW, Resolution.AUTO, "at most 366 days"),
        (NOW - timedelta(days=8), NOW, Resolution.RAW, "at most 7 days"),
        (NOW - timedelta(days=30), NOW, Resolution.M5, "more than 2000 points"),
    ],
)
def test_spans_and_resolutions_that_would_be_unbounded_are_refused(
    start: datetime, end: datetime, resolution: Resolution, why: str
) -> None:
    with pytest.raises(ChartRequestError, match=why):
        plan(Metric.HEART_RATE, now=NOW, start=start, end=end, resolution=resolution)


def test_the_chart_lists_every_channel_with_its_usual_ranges_and_bounds_raw_points() -> None:
    chosen = plan(Metric.BLOOD_PRESSURE, now=NOW, start=NOW - timedelta(days=2))
    systolic = [(NOW - timedelta(hours=i), 120.0 + i) for i in range(3)]
    usual = usual_ranges(
        [
            StoredBaseline("blood_pressure.systolic", "awake", 120, 4, 104, 136, 30, NOW),
            StoredBaseline("blood_pressure.systolic", "sleep", 110, 4, 94, 126, 30, NOW),
        ]
    )
    drawn = chart("p1", chosen, {"blood_pressure.systolic": systolic}, usual)
    assert (drawn.metric, drawn.name, drawn.unit) == (
        Metric.BLOOD_PRESSURE,
        "blood pressure",
        "mm[Hg]",
    )
    sys_, dia = drawn.channels
    assert (sys_.channel, sys_.part, dia.channel, dia.points) == (
        "blood_pressure.systolic",
        "systolic",
        "blood_pressure.diastolic",
        [],
    )
    assert [p.value for p in sys_.points] == [122, 121, 120], "oldest first"
    assert [(b.context, b.low, b.high) for b in sys_.usual] == [
        ("awake", 104, 136),
        ("sleep", 94, 126),
    ]
    assert {p.usual_context for p in sys_.points} == {"awake"}, "as without a context"
    assert dia.usual == [] and not sys_.truncated

    raw = plan(Metric.HEART_RATE, now=NOW, start=NOW - timedelta(hours=1))
    many = [(NOW - timedelta(seconds=i), 70.0) for i in range(MAX_POINTS + 1)]
    (hr,) = chart("p1", raw, {"heart_rate": many}, usual_ranges([])).channels
    assert len(hr.points) == MAX_POINTS and hr.truncated


def test_a_heart_rate_chart_gives_every_contexts_band_and_compares_no_point_with_one() -> None:
    """A 7-day chart ending at 03:00 is not drawn against the sleep band alone: each band
    comes with its context, and a heart rate whose context is not known has none."""
    end = NOW.replace(hour=3, minute=0)
    chosen = plan(Metric.HEART_RATE, now=NOW, end=end)
    usual = usual_ranges(
        [
            StoredBaseline("heart_rate", context, mean, 3, mean - 12, mean + 12, 40, at)
            for context, mean, at in (
                ("awake-12", 74, end - timedelta(hours=14)),
                ("sleep", 55, end - timedelta(minutes=5)),
            )
        ]
    )
    points = [(end - timedelta(hours=h), 80.0) for h in range(1, 48)]
    (hr,) = chart("p1", chosen, {"heart_rate": points}, usual).channels
    assert [b.context for b in hr.usual] == ["awake-12", "sleep"]
    assert {p.usual_context for p in hr.points} == {None}


def test_a_window_is_compared_with_a_bucket_only_when_it_lies_in_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were SpO2 binned by six UTC hours: an hourly point (even the first, cut short at
    the chart's start) has its bin's range, a 12-hour one none."""
    monkeypatch.setitem(usual_module.TIME_BINNED, "spo2", 6)
    usual = usual_ranges(
        [StoredBaseline("spo2", f"awake-{h:02d}", 97, 1, 93, 101, 20, NOW) for h in (0, 6, 12, 18)]
    )
    start = datetime(2026, 3, 9, 11, 30, tzinfo=UTC)
    hourly = plan(Metric.SPO2, now=NOW, start=start, resolution=Resolution.H1)
    points = [(start, 96.0), (start + timedelta(minutes=30), 96.0)]
    (spo2,) = chart("p1", hourly, {"spo2": points}, usual).channels
    assert [p.usual_context for p in spo2.points] == ["awake-06", "awake-12"]
    halves = plan(Metric.SPO2, now=NOW, start=start, resolution=Resolution.H12)
    (spo2,) = chart("p1", halves, {"spo2": [(NOW.replace(hour=0), 96.0)]}, usual).channels
    assert [p.usual_context for p in spo2.points] == [None]
