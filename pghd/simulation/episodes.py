"""Labelled clinical episodes injected into a simulated patient's data.

An :class:`Episode` is the ground truth a detector should find: which patient, what kind,
when, and which metrics show it. :func:`plan_episode` places one in a patient's schedule
after the first 40 % of the period (so a baseline forms first).

How each kind shows in the data:

- ``fever`` (1-3 days): a temperature of 38.3-39.8 °C every ~4 h (:func:`episode_samples`)
  and every heart rate raised by 10-20 bpm (:func:`hr_offset`); the patient does no
  workouts.
- ``tachycardia`` (40-120 min, awake): heart rate 125-150 bpm (:func:`hr_override`) while
  the patient sits still: no movement from 20 minutes before it to 15 minutes after it, so
  the devices count no steps (bucket devices send zeros, Apple-like ones send nothing), and
  no workout in the 90 minutes before it (not a recovery from exercise).
- ``rhr_rise`` (3-6 days): resting, sleeping and exercise heart rate all raised by
  10-15 bpm, as in the days before symptoms of an infection (Mishra et al. 2020, Nat.
  Biomed. Eng. 4:1208; Alavi et al. 2022, Nat. Med. 28:175).
- ``rhr_drift`` (7 days): heart rate rising 1.5 bpm a day for 7 days (the label covers
  those days), then staying up until the end of the period.
- ``desaturation`` (one night): SpO2 85-90 % every ~30 min.
- ``hypertensive`` (an instant): one blood pressure of 180-220 / 110-130 mmHg.
- ``hypoglycaemia`` (1 h): glucose 45-65 mg/dL every ~15 min.

The cohort generator drops its own normal readings where :func:`suppresses` says the
episode supplies them, adds :func:`hr_offset` to heart rates and lets
:func:`hr_override` replace them.
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
    "hr_override",
    "plan_episode",
    "quiet_windows",
    "suppresses",
]

Interval = tuple[datetime, datetime]

TACHYCARDIA_RANGE = (125.0, 150.0)
"""Heart rates of a resting tachycardia episode, bpm."""
QUIET_BEFORE = timedelta(minutes=20)
"""How long before a tachycardia episode the patient is already still."""
QUIET_AFTER = timedelta(minutes=15)
"""How long after it the patient stays still."""


class EpisodeKind(StrEnum):
    """Kinds of episode the simulator can inject."""

    FEVER = "fever"
    TACHYCARDIA = "tachycardia"
    RHR_RISE = "rhr_rise"
    RHR_DRIFT = "rhr_drift"
    DESATURATION = "desaturation"
    HYPERTENSIVE = "hypertensive"
    HYPOGLYCAEMIA = "hypoglycaemia"


METRICS: dict[EpisodeKind, tuple[Metric, ...]] = {
    EpisodeKind.FEVER: (Metric.BODY_TEMPERATURE, Metric.HEART_RATE, Metric.RESTING_HEART_RATE),
    EpisodeKind.TACHYCARDIA: (Metric.HEART_RATE,),
    EpisodeKind.RHR_RISE: (Metric.HEART_RATE, Metric.RESTING_HEART_RATE),
    EpisodeKind.RHR_DRIFT: (Metric.HEART_RATE, Metric.RESTING_HEART_RATE),
    EpisodeKind.DESATURATION: (Metric.SPO2,),
    EpisodeKind.HYPERTENSIVE: (Metric.BLOOD_PRESSURE,),
    EpisodeKind.HYPOGLYCAEMIA: (Metric.BLOOD_GLUCOSE,),
}

# Metrics whose normal readings an episode replaces inside its window.
_REPLACES: dict[EpisodeKind, frozenset[Metric]] = {
    EpisodeKind.FEVER: frozenset({Metric.BODY_TEMPERATURE}),
    EpisodeKind.DESATURATION: frozenset({Metric.SPO2}),
    EpisodeKind.HYPOGLYCAEMIA: frozenset({Metric.BLOOD_GLUCOSE}),
}

CALM = frozenset(
    {
        EpisodeKind.FEVER,
        EpisodeKind.TACHYCARDIA,
        EpisodeKind.DESATURATION,
        EpisodeKind.HYPOGLYCAEMIA,
    }
)
"""Kinds around which the patient does no workout (and keeps the watch on)."""


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


@dataclass(slots=True)
class Sample:
    """A reading in canonical units, before it is dressed as a ``ReadingIn`` dict.

    Treated as immutable (not frozen only because a frozen dataclass is several times
    slower to build, and a cohort builds millions).

    ``value`` is a float, or ``(systolic, diastolic)`` for blood pressure. ``context`` is
    the truth (what the patient was doing), sent only when the cohort is labelled;
    ``device_context`` is what the device itself reports (an Apple-Watch-like motion
    context on some heart rates), sent otherwise. ``end`` closes the interval of a steps
    count or a sleep session (``time`` is then its start). ``device`` names the device
    (``watch``, ``phone``, ``thermo``...; empty: the metric's usual one). ``arrival`` is
    when the reading reaches ingest (``None``: shortly after it was taken).
    """

    metric: Metric
    time: datetime
    value: float | tuple[float, float]
    context: Context | None = None
    end: datetime | None = None
    device: str = ""
    device_context: Context | None = None
    arrival: datetime | None = None


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


def _span(
    rng: random.Random, earliest: datetime, latest: datetime, length: timedelta
) -> Interval | None:
    """``length`` (whole seconds) placed at random in ``[earliest, latest]``."""
    length = timedelta(seconds=int(length.total_seconds()))
    if earliest + length > latest:
        return None
    start = (earliest + (latest - earliest - length) * rng.random()).replace(microsecond=0)
    return start, start + length


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
    night, a fever lasts one to three days (less if the period is shorter), a rise of the
    resting heart rate three to six days (at least three) and a drift seven.
    """
    margin = timedelta(hours=1)
    days = [(a + margin, b - margin) for a, b in awake]
    room = latest - earliest
    params: dict[str, float] = {}
    if kind is EpisodeKind.FEVER:
        length = min(timedelta(days=rng.uniform(1, 3)), room)
        if length < timedelta(hours=6):
            return None
        params = {
            "peak_temperature": round(rng.uniform(38.6, 39.7), 1),
            "hr_offset": round(rng.uniform(10, 20)),
        }
        span = _span(rng, earliest, latest, length)
    elif kind is EpisodeKind.RHR_RISE:
        length = min(timedelta(days=rng.uniform(3, 6)), room)
        if length < timedelta(days=3):
            return None
        params = {"hr_offset": round(rng.uniform(10, 15), 1)}
        span = _span(rng, earliest, latest, length)
    elif kind is EpisodeKind.RHR_DRIFT:
        params = {"per_day": 1.5, "days": 7.0}
        span = _span(rng, earliest, latest, timedelta(days=7))
    elif kind is EpisodeKind.DESATURATION:
        fitting = [n for n in nights if earliest <= n[0] and n[1] <= latest]
        if not fitting:
            return None
        span = rng.choice(fitting)
        params = {"nadir": rng.randint(85, 88)}
    else:
        length = {
            EpisodeKind.TACHYCARDIA: timedelta(minutes=rng.randint(40, 120)),
            EpisodeKind.HYPOGLYCAEMIA: timedelta(hours=1),
            EpisodeKind.HYPERTENSIVE: timedelta(minutes=1),
        }[kind]
        start = _place(rng, days, earliest=earliest, latest=latest, length=length)
        if start is None:
            return None
        span = (start, start + length)
        if kind is EpisodeKind.TACHYCARDIA:
            params = {"rate": rng.randint(130, 145)}
        elif kind is EpisodeKind.HYPERTENSIVE:
            params = {"systolic": rng.randint(182, 218), "diastolic": rng.randint(112, 128)}
        else:
            params = {"nadir": rng.randint(47, 58)}
    if span is None:
        return None
    return Episode(
        patient_id=patient_id,
        kind=kind,
        start=span[0],
        end=span[1],
        metrics=list(METRICS[kind]),
        params=params,
    )


def suppresses(episodes: Sequence[Episode], metric: Metric, when: datetime) -> bool:
    """Whether an episode supplies the readings of ``metric`` at ``when`` itself."""
    return any(metric in _REPLACES.get(e.kind, ()) and e.covers(when) for e in episodes)


def hr_offset(episodes: Sequence[Episode], when: datetime) -> float:
    """Beats per minute episodes add to every heart rate at ``when``.

    A fever and a rise of the resting heart rate add their offset while they last; a drift
    adds ``per_day`` for each day since its start, up to ``days`` days, and stays there.
    """
    offset = 0.0
    for e in episodes:
        if e.kind in (EpisodeKind.FEVER, EpisodeKind.RHR_RISE) and e.covers(when):
            offset += e.params["hr_offset"]
        elif e.kind is EpisodeKind.RHR_DRIFT and when >= e.start:
            days = min(e.params["days"], (when - e.start) / timedelta(days=1))
            offset += e.params["per_day"] * days
    return offset


def hr_override(episodes: Sequence[Episode], when: datetime) -> float | None:
    """The heart rate a tachycardia episode holds at ``when``, ``None`` outside one."""
    for e in episodes:
        if e.kind is EpisodeKind.TACHYCARDIA and e.covers(when):
            return e.params["rate"]
    return None


def quiet_windows(episodes: Sequence[Episode]) -> list[Interval]:
    """Intervals in which the patient must not move: a tachycardia, from 20 minutes before it
    to 15 minutes after it (so no step bucket that covers part of it counts a step)."""
    return [
        (e.start - QUIET_BEFORE, e.end + QUIET_AFTER)
        for e in episodes
        if e.kind is EpisodeKind.TACHYCARDIA
    ]


def _every(start: datetime, end: datetime, step: timedelta, rng: random.Random) -> list[datetime]:
    """Times from ``start`` to ``end`` about ``step`` apart (jittered by up to a fifth)."""
    times = []
    when = start + timedelta(seconds=round(rng.uniform(0, step.total_seconds() / 5)))
    while when <= end:
        times.append(when)
        jitter = rng.uniform(-0.2, 0.2) * step.total_seconds()
        when += timedelta(seconds=round(step.total_seconds() + jitter))
    return times


def _arrives(when: datetime, rng: random.Random) -> datetime:
    return when + timedelta(seconds=rng.randint(5, 60))


def episode_samples(episode: Episode, *, rng: random.Random) -> list[Sample]:
    """The extra readings that make ``episode`` visible, in canonical units and time order.

    Fever: a temperature every ~4 h between 38.3 and 39.8 °C. Desaturation: SpO2 85-90 %
    every ~30 min through the night. Hypertensive: one blood pressure of 180-220 / 110-130
    mmHg. Hypoglycaemia: glucose 45-65 mg/dL every ~15 min. The heart-rate kinds bring no
    readings of their own: they change the watch's (:func:`hr_offset`, :func:`hr_override`).
    """
    kind, p = episode.kind, episode.params
    samples: list[Sample] = []
    if kind is EpisodeKind.FEVER:
        peak = p["peak_temperature"]
        for when in _every(episode.start, episode.end, timedelta(hours=4), rng):
            value = min(39.75, max(38.35, peak + rng.gauss(0, 0.25)))
            samples.append(
                Sample(
                    Metric.BODY_TEMPERATURE,
                    when,
                    round(value, 1),
                    Context.REST,
                    arrival=_arrives(when, rng),
                )
            )
    elif kind is EpisodeKind.DESATURATION:
        for when in _every(episode.start, episode.end, timedelta(minutes=30), rng):
            value = min(90.0, max(85.0, p["nadir"] + rng.gauss(1, 1.2)))
            samples.append(
                Sample(Metric.SPO2, when, round(value), Context.SLEEP, arrival=_arrives(when, rng))
            )
    elif kind is EpisodeKind.HYPERTENSIVE:
        pair = (p["systolic"], p["diastolic"])
        samples.append(
            Sample(
                Metric.BLOOD_PRESSURE,
                episode.start,
                pair,
                Context.REST,
                arrival=_arrives(episode.start, rng),
            )
        )
    elif kind is EpisodeKind.HYPOGLYCAEMIA:
        for when in _every(episode.start, episode.end, timedelta(minutes=15), rng):
            value = min(63.5, max(46.5, p["nadir"] + rng.gauss(2, 3)))
            samples.append(
                Sample(
                    Metric.BLOOD_GLUCOSE,
                    when,
                    round(value, 1),
                    Context.REST,
                    arrival=_arrives(when, rng),
                )
            )
    return [s for s in samples if episode.start <= s.time <= episode.end]
