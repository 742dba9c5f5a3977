"""Labelled clinical episodes injected into a simulated patient's data.

An :class:`Episode` is the ground truth a detector should find: which patient, what kind,
when, and which metrics show it. :func:`plan_episode` places one in a patient's schedule and
:func:`episode_samples` produces the readings that make it visible (in canonical units).
The cohort generator drops its own normal readings where :func:`suppresses` says the episode
supplies them, and adds :func:`hr_offset` to heart rates during a fever.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from pghd.catalogue import Metric
from pghd.contracts import Context, UtcDatetime

__all__ = [
    "Episode",
    "EpisodeKind",
    "Interval",
    "Sample",
    "episode_samples",
    "hr_offset",
    "plan_episode",
    "suppresses",
]

Interval = tuple[datetime, datetime]


class EpisodeKind(StrEnum):
    """Kinds of episode the simulator can inject."""

    FEVER = "fever"
    TACHYCARDIA = "tachycardia"
    DESATURATION = "desaturation"
    HYPERTENSIVE = "hypertensive"
    HYPOGLYCAEMIA = "hypoglycaemia"


METRICS: dict[EpisodeKind, tuple[Metric, ...]] = {
    EpisodeKind.FEVER: (Metric.BODY_TEMPERATURE, Metric.HEART_RATE, Metric.RESTING_HEART_RATE),
    EpisodeKind.TACHYCARDIA: (Metric.HEART_RATE,),
    EpisodeKind.DESATURATION: (Metric.SPO2,),
    EpisodeKind.HYPERTENSIVE: (Metric.BLOOD_PRESSURE,),
    EpisodeKind.HYPOGLYCAEMIA: (Metric.BLOOD_GLUCOSE,),
}

# Metrics whose normal readings an episode replaces inside its window.
_REPLACES: dict[EpisodeKind, frozenset[Metric]] = {
    EpisodeKind.FEVER: frozenset({Metric.BODY_TEMPERATURE}),
    EpisodeKind.TACHYCARDIA: frozenset({Metric.HEART_RATE}),
    EpisodeKind.DESATURATION: frozenset({Metric.SPO2}),
    EpisodeKind.HYPERTENSIVE: frozenset(),
    EpisodeKind.HYPOGLYCAEMIA: frozenset({Metric.BLOOD_GLUCOSE}),
}


class Episode(BaseModel):
    """One injected episode: the label a detector is scored against."""

    model_config = ConfigDict(frozen=True)

    patient_id: str
    kind: EpisodeKind
    start: UtcDatetime
    end: UtcDatetime
    metrics: list[Metric]
    params: dict[str, float] = Field(
        default_factory=dict, description="the episode's own levels, e.g. peak temperature"
    )

    def covers(self, when: datetime) -> bool:
        """Whether ``when`` falls inside the episode (its end included)."""
        return self.start <= when <= self.end


@dataclass(frozen=True, slots=True)
class Sample:
    """A reading in canonical units, before it is dressed as a ``ReadingIn`` dict.

    ``value`` is a float, or ``(systolic, diastolic)`` for blood pressure.
    """

    metric: Metric
    time: datetime
    value: float | tuple[float, float]
    context: Context | None = None


def _fits(window: Interval, earliest: datetime, latest: datetime, length: timedelta) -> bool:
    return max(window[0], earliest) + length <= min(window[1], latest)


def _place(
    rng: random.Random,
    windows: Sequence[Interval],
    *,
    earliest: datetime,
    latest: datetime,
    length: timedelta,
) -> datetime | None:
    """A random start such that ``[start, start + length]`` lies in one of ``windows``."""
    fitting = [w for w in windows if _fits(w, earliest, latest, length)]
    if not fitting:
        return None
    lo, hi = rng.choice(fitting)
    first = max(lo, earliest)
    room = (min(hi, latest) - length - first).total_seconds()
    return first + timedelta(seconds=round(rng.uniform(0, room)))


def plan_episode(
    kind: EpisodeKind,
    *,
    patient_id: str,
    rng: random.Random,
    earliest: datetime,
    latest: datetime,
    awake: Sequence[Interval],
    nights: Sequence[Interval],
) -> Episode | None:
    """Place a ``kind`` episode between ``earliest`` and ``latest``; ``None`` if it cannot fit.

    Short episodes go in an awake interval (away from its edges), desaturation takes a whole
    night, and a fever lasts one to three days (less if the period is shorter).
    """
    margin = timedelta(hours=1)
    days = [(a + margin, b - margin) for a, b in awake]
    params: dict[str, float] = {}
    if kind is EpisodeKind.FEVER:
        length = min(timedelta(days=rng.uniform(1, 3)), latest - earliest)
        length = timedelta(seconds=int(length.total_seconds()))
        if length < timedelta(hours=6):
            return None
        start = earliest + (latest - earliest - length) * rng.random()
        start = start.replace(microsecond=0)
        params = {
            "peak_temperature": round(rng.uniform(38.6, 39.7), 1),
            "hr_offset": round(rng.uniform(10, 20)),
        }
        return _episode(patient_id, kind, start, start + length, params)
    if kind is EpisodeKind.DESATURATION:
        fitting = [n for n in nights if earliest <= n[0] and n[1] <= latest]
        if not fitting:
            return None
        night = rng.choice(fitting)
        return _episode(patient_id, kind, night[0], night[1], {"nadir": rng.randint(85, 88)})
    length = {
        EpisodeKind.TACHYCARDIA: timedelta(hours=1),
        EpisodeKind.HYPOGLYCAEMIA: timedelta(hours=1),
        EpisodeKind.HYPERTENSIVE: timedelta(minutes=1),
    }[kind]
    start_or_none = _place(rng, days, earliest=earliest, latest=latest, length=length)
    if start_or_none is None:
        return None
    if kind is EpisodeKind.TACHYCARDIA:
        params = {"rate": rng.randint(135, 155)}
    elif kind is EpisodeKind.HYPERTENSIVE:
        params = {"systolic": rng.randint(182, 218), "diastolic": rng.randint(112, 128)}
    else:
        params = {"nadir": rng.randint(47, 58)}
    return _episode(patient_id, kind, start_or_none, start_or_none + length, params)


def _episode(
    patient_id: str, kind: EpisodeKind, start: datetime, end: datetime, params: dict[str, float]
) -> Episode:
    return Episode(
        patient_id=patient_id,
        kind=kind,
        start=start,
        end=end,
        metrics=list(METRICS[kind]),
        params=params,
    )


def suppresses(episodes: Sequence[Episode], metric: Metric, when: datetime) -> bool:
    """Whether an episode supplies the readings of ``metric`` at ``when`` itself."""
    return any(metric in _REPLACES[e.kind] and e.covers(when) for e in episodes)


def hr_offset(episodes: Sequence[Episode], when: datetime) -> float:
    """Beats per minute a fever adds to the heart rate at ``when``."""
    return sum(
        e.params.get("hr_offset", 0.0)
        for e in episodes
        if e.kind is EpisodeKind.FEVER and e.covers(when)
    )


def _every(start: datetime, end: datetime, step: timedelta, rng: random.Random) -> list[datetime]:
    """Times from ``start`` to ``end`` about ``step`` apart (jittered by up to a fifth)."""
    times = []
    when = start + timedelta(seconds=round(rng.uniform(0, step.total_seconds() / 5)))
    while when <= end:
        times.append(when)
        jitter = rng.uniform(-0.2, 0.2) * step.total_seconds()
        when += timedelta(seconds=round(step.total_seconds() + jitter))
    return times


def episode_samples(episode: Episode, *, rng: random.Random) -> list[Sample]:
    """The readings that make ``episode`` visible, in canonical units and time order.

    Fever: a temperature every ~4 h between 38.3 and 39.8 °C (heart rates are raised by the
    cohort through :func:`hr_offset`). Tachycardia: heart rate at rest 130-160 every ~3 min.
    Desaturation: SpO2 85-90 % every ~30 min through the night. Hypertensive: one blood
    pressure of 180-220 / 110-130 mmHg. Hypoglycaemia: glucose 45-65 mg/dL every ~15 min.
    """
    kind, p = episode.kind, episode.params
    samples: list[Sample] = []
    if kind is EpisodeKind.FEVER:
        peak = p["peak_temperature"]
        for when in _every(episode.start, episode.end, timedelta(hours=4), rng):
            value = min(39.75, max(38.35, peak + rng.gauss(0, 0.25)))
            samples.append(Sample(Metric.BODY_TEMPERATURE, when, round(value, 1), Context.REST))
    elif kind is EpisodeKind.TACHYCARDIA:
        for when in _every(episode.start, episode.end, timedelta(minutes=3), rng):
            value = min(160.0, max(130.0, p["rate"] + rng.gauss(0, 4)))
            samples.append(Sample(Metric.HEART_RATE, when, round(value), Context.REST))
    elif kind is EpisodeKind.DESATURATION:
        for when in _every(episode.start, episode.end, timedelta(minutes=30), rng):
            value = min(90.0, max(85.0, p["nadir"] + rng.gauss(1, 1.2)))
            samples.append(Sample(Metric.SPO2, when, round(value), Context.SLEEP))
    elif kind is EpisodeKind.HYPERTENSIVE:
        pair = (p["systolic"], p["diastolic"])
        samples.append(Sample(Metric.BLOOD_PRESSURE, episode.start, pair, Context.REST))
    else:
        for when in _every(episode.start, episode.end, timedelta(minutes=15), rng):
            value = min(63.5, max(46.5, p["nadir"] + rng.gauss(2, 3)))
            samples.append(Sample(Metric.BLOOD_GLUCOSE, when, round(value, 1), Context.REST))
    return [s for s in samples if episode.start <= s.time <= episode.end]
