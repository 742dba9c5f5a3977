"""A patient's chart, pure (pghd/patient_view/chart.py): resolutions and bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pghd.catalogue import Metric
from pghd.patient_view.chart import (
    MAX_POINTS,
    ChartRequestError,
    Resolution,
    chart,
    plan,
)
from pghd.patient_view.summary import StoredBaseline, usual_by_channel

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


def test_the_chart_lists_every_channel_with_its_usual_range_and_bounds_raw_points() -> None:
    chosen = plan(Metric.BLOOD_PRESSURE, now=NOW, start=NOW - timedelta(days=2))
    systolic = [(NOW - timedelta(hours=i), 120.0 + i) for i in range(3)]
    usual = usual_by_channel(
        [StoredBaseline("blood_pressure.systolic", "awake", 120, 4, 104, 136, 30, NOW)]
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
    assert sys_.usual is not None and (sys_.usual.low, sys_.usual.high) == (104, 136)
    assert dia.usual is None and not sys_.truncated

    raw = plan(Metric.HEART_RATE, now=NOW, start=NOW - timedelta(hours=1))
    many = [(NOW - timedelta(seconds=i), 70.0) for i in range(MAX_POINTS + 1)]
    (hr,) = chart("p1", raw, {"heart_rate": many}, {}).channels
    assert len(hr.points) == MAX_POINTS and hr.truncated
