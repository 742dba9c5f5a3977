"""A patient's chart of one metric over a span: which resolution, and the chart itself.
Pure: the span, the points and the usual ranges come in, the :class:`Chart` goes out.

A chart is drawn at ``raw`` resolution (every stored reading) or at a window of
:data:`STEPS` (the readings of each window averaged, or summed for interval metrics: steps,
sleep), each point at the start of its window. ``auto`` picks ``raw`` for spans up to
:data:`RAW_AUTO_SPAN` and otherwise the finest window that keeps a channel within
:data:`TARGET_POINTS` points (a 30-day chart: 3-hour windows, 240 points). A span is at most
:data:`MAX_SPAN`; a window that would give more than :data:`MAX_POINTS` points is refused,
``raw`` only for spans up to :data:`MAX_RAW_SPAN`, and a raw chart stops at
:data:`MAX_POINTS` per channel (``truncated``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import channel_key
from pghd.feedback.wording import metric_name
from pghd.patient_view.summary import UsualRange

__all__ = [
    "DEFAULT_SPAN",
    "MAX_POINTS",
    "MAX_RAW_SPAN",
    "MAX_SPAN",
    "RAW_AUTO_SPAN",
    "STEPS",
    "TARGET_POINTS",
    "Chart",
    "ChartChannel",
    "ChartPlan",
    "ChartPoint",
    "ChartRequestError",
    "Resolution",
    "chart",
    "plan",
]


class Resolution(StrEnum):
    """What a chart's points are: every reading, or one per window."""

    AUTO = "auto"
    RAW = "raw"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H3 = "3h"
    H6 = "6h"
    H12 = "12h"
    D1 = "1d"


STEPS: dict[Resolution, timedelta] = {
    Resolution.M5: timedelta(minutes=5),
    Resolution.M15: timedelta(minutes=15),
    Resolution.M30: timedelta(minutes=30),
    Resolution.H1: timedelta(hours=1),
    Resolution.H3: timedelta(hours=3),
    Resolution.H6: timedelta(hours=6),
    Resolution.H12: timedelta(hours=12),
    Resolution.D1: timedelta(days=1),
}
DEFAULT_SPAN = timedelta(days=7)
MAX_SPAN = timedelta(days=366)
RAW_AUTO_SPAN = timedelta(hours=6)
MAX_RAW_SPAN = timedelta(days=7)
TARGET_POINTS = 300
MAX_POINTS = 2000

Aggregate = Literal["none", "mean", "sum"]


class ChartRequestError(ValueError):
    """A chart that may not be drawn (span, resolution); ``str(exc)`` says why."""


@dataclass(frozen=True, slots=True)
class ChartPlan:
    """How a chart is read: the span, the window (None: raw) and how a window is reduced."""

    metric: Metric
    start: datetime
    end: datetime
    resolution: Resolution
    every: timedelta | None
    aggregate: Aggregate
    limit: int = MAX_POINTS

    @property
    def channels(self) -> list[str]:
        """The metric's channel keys (``blood_pressure.systolic``...)."""
        return [channel_key(self.metric, c.name) for c in CATALOGUE[self.metric].channels]


def plan(
    metric: Metric,
    *,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    resolution: Resolution = Resolution.AUTO,
) -> ChartPlan:
    """The chart of ``metric`` over ``[start, end)`` (default: the 7 days up to ``now``);
    :class:`ChartRequestError` for a span or resolution that may not be drawn."""
    end = end or now
    start = start or end - DEFAULT_SPAN
    span = end - start
    if span <= timedelta(0):
        raise ChartRequestError("start must be before end")
    if span > MAX_SPAN:
        raise ChartRequestError(f"a chart spans at most {MAX_SPAN.days} days")
    if resolution is Resolution.AUTO:
        resolution = _auto(span)
    if resolution is Resolution.RAW:
        if span > MAX_RAW_SPAN:
            raise ChartRequestError(
                f"raw readings are charted over at most {MAX_RAW_SPAN.days} days;"
                " choose a window (resolution) for a longer span"
            )
        return ChartPlan(metric, start, end, resolution, None, "none")
    every = STEPS[resolution]
    if span / every > MAX_POINTS:
        raise ChartRequestError(
            f"{resolution.value} windows over this span give more than {MAX_POINTS} points;"
            " choose a coarser resolution"
        )
    aggregate: Aggregate = "sum" if CATALOGUE[metric].interval else "mean"
    return ChartPlan(metric, start, end, resolution, every, aggregate)


def _auto(span: timedelta) -> Resolution:
    if span <= RAW_AUTO_SPAN:
        return Resolution.RAW
    for resolution, every in STEPS.items():
        if span / every <= TARGET_POINTS:
            return resolution
    return Resolution.D1


class ChartPoint(BaseModel):
    """A reading, or a window's mean (sum) at the window's start."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    value: float


class ChartChannel(BaseModel):
    """One channel's points, with the usual range as it stood at the chart's end."""

    model_config = ConfigDict(frozen=True)

    channel: str
    part: str | None
    usual: UsualRange | None
    points: list[ChartPoint]
    truncated: bool = Field(description="more raw readings than a chart holds: the first shown")


class Chart(BaseModel):
    """What ``GET /v1/me/readings`` answers."""

    model_config = ConfigDict(frozen=True)

    patient_id: str
    metric: Metric
    name: str
    unit: str
    start: datetime
    end: datetime
    resolution: Resolution
    aggregate: Aggregate = Field(description="none (raw), or how each window is reduced")
    channels: list[ChartChannel]


def chart(
    patient_id: str,
    chosen: ChartPlan,
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    usual: Mapping[str, UsualRange],
) -> Chart:
    """The chart of the plan from each channel's points (oldest first after sorting) and
    the usual ranges; every channel of the metric is listed, with or without points."""
    channels = []
    for channel in chosen.channels:
        points = sorted(series.get(channel, ()))
        channels.append(
            ChartChannel(
                channel=channel,
                part=channel.split(".", 1)[1] if "." in channel else None,
                usual=usual.get(channel),
                points=[ChartPoint(at=at, value=value) for at, value in points[: chosen.limit]],
                truncated=len(points) > chosen.limit,
            )
        )
    return Chart(
        patient_id=patient_id,
        metric=chosen.metric,
        name=metric_name(chosen.metric),
        unit=CATALOGUE[chosen.metric].unit,
        start=chosen.start,
        end=chosen.end,
        resolution=chosen.resolution,
        aggregate=chosen.aggregate,
        channels=channels,
    )
