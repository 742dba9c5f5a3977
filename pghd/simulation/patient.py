"""One simulated patient: personal levels, a sleep/wake schedule, and a day's samples.

Pure functions of their ``random.Random``. A *cycle* runs from waking up to waking up the next
day: the awake part (heart rate, steps, spot checks) then the night (sleep heart rate, SpO2,
respiratory rate). All values are in canonical units; :mod:`pghd.simulation.cohort` dresses
them in each device's unit.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pghd.catalogue import Metric
from pghd.contracts import Context
from pghd.simulation.episodes import (
    Episode,
    EpisodeKind,
    Interval,
    Sample,
    hr_offset,
    plan_episode,
    suppresses,
)

__all__ = ["WEARABLE", "PatientProfile", "Schedule", "cycle_samples", "make_profile", "plan"]

_H = timedelta(hours=1)
WEARABLE = frozenset(
    {
        Metric.HEART_RATE,
        Metric.RESTING_HEART_RATE,
        Metric.HRV_SDNN,
        Metric.SPO2,
        Metric.RESPIRATORY_RATE,
        Metric.STEPS,
        Metric.SLEEP_DURATION,
    }
)
"""Metrics the watch reports: missing while it is not worn."""


@dataclass(frozen=True, slots=True)
class PatientProfile:
    """One simulated patient's personal levels and habits (canonical units, hours of day UTC)."""

    patient_id: str
    resting_hr: float
    day_hr_delta: float
    hrv: float
    spo2: float
    respiratory_rate: float
    temperature: float
    systolic: float
    diastolic: float
    glucose: float | None
    weight: float
    bedtime: float
    sleep_hours: float
    activity_rate: float
    us_units: bool
    glucose_mmol: bool
    weigh_day: int


def make_profile(patient_id: str, *, rng: random.Random, glucose: bool) -> PatientProfile:
    """Draw a patient's personal levels (resting heart rate 55-80, SpO2 96-98.5, ...)."""
    return PatientProfile(
        patient_id=patient_id,
        resting_hr=rng.uniform(55, 80),
        day_hr_delta=rng.uniform(8, 16),
        hrv=rng.uniform(25, 75),
        spo2=rng.uniform(96, 98.5),
        respiratory_rate=rng.uniform(13, 16.5),
        temperature=rng.uniform(36.5, 36.9),
        systolic=rng.uniform(105, 135),
        diastolic=rng.uniform(65, 84),
        glucose=rng.uniform(85, 120) if glucose else None,
        weight=rng.uniform(50, 110),
        bedtime=rng.uniform(21.5, 24.0),
        sleep_hours=rng.uniform(6.0, 8.5),
        activity_rate=rng.uniform(0.4, 0.9),
        us_units=rng.random() < 0.25,
        glucose_mmol=rng.random() < 0.5,
        weigh_day=rng.randrange(7),
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a patient sleeps, exercises and takes the watch off, and their episodes."""

    nights: list[Interval]
    bursts: list[tuple[datetime, datetime, float]]
    """Activity bursts: start, end, target heart rate."""
    gaps: list[Interval]
    episodes: list[Episode]


def _overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _inside(intervals: Sequence[Interval], when: datetime) -> bool:
    return any(lo <= when < hi for lo, hi in intervals)


def plan(
    p: PatientProfile,
    *,
    rng: random.Random,
    start: datetime,
    end: datetime,
    kinds: Sequence[EpisodeKind],
) -> Schedule:
    """Plan nights from before ``start`` to after ``end``, bursts, gaps and an episode.

    The first kind of ``kinds`` that fits becomes the patient's episode (none if empty). It
    starts after the first 40 % of the period, so a baseline can form first. Activity and
    gaps near an episode are dropped so it stays visible.
    """
    day0 = datetime.combine(start.date(), datetime.min.time(), UTC) - timedelta(days=2)
    nights: list[Interval] = []
    while not nights or nights[-1][1] < end + _H:
        bed = day0 + timedelta(days=len(nights), hours=p.bedtime + rng.gauss(0, 0.4))
        hours = min(10.0, max(4.0, p.sleep_hours + rng.gauss(0, 0.6)))
        nights.append((bed.replace(microsecond=0), (bed + hours * _H).replace(microsecond=0)))
    awake = [(a[1], b[0]) for a, b in itertools.pairwise(nights)]
    bursts, gaps = [], []
    for lo, hi in awake:
        for _ in range(1 + (rng.random() < 0.25)):
            if rng.random() < p.activity_rate:
                length = timedelta(minutes=rng.uniform(20, 75))
                at = lo + _H + (hi - lo - 2 * _H - length) * rng.random()
                bursts.append((at, at + length, rng.uniform(100, 150)))
        if rng.random() < 0.25:
            length = timedelta(hours=rng.uniform(1.5, 6))
            at = lo + (hi - lo - length) * rng.random()
            gaps.append((at, at + length))
    gaps += [(b - 0.5 * _H, w + 0.5 * _H) for b, w in nights if rng.random() < 0.07]
    episodes = []
    for kind in kinds:
        episode = plan_episode(
            kind,
            patient_id=p.patient_id,
            rng=rng,
            earliest=start + (end - start) * 0.4,
            latest=end - _H / 6,
            awake=awake,
            nights=nights,
        )
        if episode is not None:
            episodes.append(episode)
            break
    near = [(e.start - _H, e.end + _H) for e in episodes]
    busy = [
        w for w, e in zip(near, episodes, strict=True) if e.kind is not EpisodeKind.HYPERTENSIVE
    ]
    return Schedule(
        nights=nights,
        bursts=sorted(b for b in bursts if not any(_overlaps(b[:2], w) for w in busy)),
        gaps=sorted(g for g in gaps if not any(_overlaps(g, w) for w in near)),
        episodes=episodes,
    )


def _circadian(when: datetime) -> float:
    """+1 mid-afternoon, -1 in the small hours."""
    hour = when.hour + when.minute / 60
    return math.cos(2 * math.pi * (hour - 16) / 24)


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


class _Cycle:
    """Collects the samples of one cycle, dropping those the watch or an episode rules out."""

    def __init__(self, p: PatientProfile, s: Schedule, i: int, rng: random.Random) -> None:
        self.p, self.rng, self.episodes = p, rng, s.episodes
        self.last_night = s.nights[i - 1]
        self.wake, (self.bed, self.rise) = self.last_night[1], s.nights[i]
        self.bursts = [b for b in s.bursts if _overlaps(b[:2], (self.wake, self.rise))]
        self.gaps = [g for g in s.gaps if _overlaps(g, (self.wake - 12 * _H, self.rise))]
        self.out: list[Sample] = []

    def add(
        self,
        metric: Metric,
        when: datetime,
        value: float | tuple[float, float],
        context: Context | None = None,
    ) -> None:
        worn = metric not in WEARABLE or not _inside(self.gaps, when)
        if self.wake <= when < self.rise and worn and not suppresses(self.episodes, metric, when):
            self.out.append(Sample(metric, when.replace(microsecond=0), value, context))

    def at(self, lo: float, hi: float, *, base: datetime | None = None) -> datetime:
        """A time between ``lo`` and ``hi`` hours after ``base`` (waking up by default)."""
        return (base or self.wake) + timedelta(hours=self.rng.uniform(lo, hi))

    def maybe_evening(self) -> list[datetime]:
        """Half the days, a time in the hour or so before bed."""
        return [self.at(-1.5, -0.5, base=self.bed)] if self.rng.random() < 0.5 else []

    def awake_time(self) -> datetime:
        return self.wake + (self.bed - self.wake) * self.rng.random()

    def night_time(self) -> datetime:
        return self.bed + (self.rise - self.bed) * self.rng.random()

    def heart_rate(self) -> None:
        """Every 5-15 min: lower asleep, circadian when awake, 100-150 in activity bursts."""
        p, rng = self.p, self.rng
        when = self.wake + timedelta(seconds=rng.uniform(0, 600))
        while when < self.rise:
            burst = next((b for b in self.bursts if b[0] <= when < b[1]), None)
            c = _circadian(when)
            if when >= self.bed:
                hr, ctx = p.resting_hr - 3 + 1.5 * c + rng.gauss(0, 2.5), Context.SLEEP
            elif burst is not None:
                hr, ctx = burst[2] + rng.gauss(0, 5), Context.ACTIVITY
            else:
                hr, ctx = p.resting_hr + p.day_hr_delta + 4 * c + rng.gauss(0, 4), Context.REST
            hr += hr_offset(self.episodes, when)
            self.add(Metric.HEART_RATE, when, round(_clip(hr, 42, 190)), ctx)
            when += timedelta(seconds=rng.uniform(300, 900))

    def steps(self) -> None:
        """Steps per quarter hour while awake; 100-160 a minute during activity."""
        quarter = timedelta(minutes=15)
        when = datetime.fromtimestamp(math.ceil(self.wake.timestamp() / 900) * 900, UTC)
        while when < self.bed:
            active = sum(
                max(0.0, (min(b[1], when) - max(b[0], when - quarter)) / quarter)
                for b in self.bursts
            )
            idle = self.rng.uniform(0, 40) if self.rng.random() < 0.4 else self.rng.uniform(40, 400)
            steps = active * 15 * self.rng.uniform(100, 160) + (1 - active) * idle
            context = Context.ACTIVITY if active > 0.5 else None
            self.add(Metric.STEPS, when, round(steps), context)
            when += quarter

    def morning(self) -> None:
        """Last night's sleep and HRV, then today's resting heart rate."""
        p, rng = self.p, self.rng
        lo, hi = self.last_night
        if not _inside(self.gaps, lo + (hi - lo) / 2):
            hours = (hi - lo) / _H * rng.uniform(0.88, 0.97)
            self.add(Metric.SLEEP_DURATION, self.at(0.02, 0.15), round(hours, 2), Context.SLEEP)
            hrv = round(_clip(p.hrv + rng.gauss(0, 7), 10, 200), 1)
            self.add(Metric.HRV_SDNN, self.at(0.02, 0.15), hrv, Context.SLEEP)
        when = self.at(0.5, 1.5)
        rhr = p.resting_hr + rng.gauss(0, 1.5) + hr_offset(self.episodes, when)
        self.add(Metric.RESTING_HEART_RATE, when, round(rhr), Context.REST)

    def spot_checks(self) -> None:
        """Thermometer, cuff, glucometer, scale, and the watch's daytime SpO2/respiration."""
        p, rng = self.p, self.rng
        for when in [self.at(0.5, 1.5), self.at(6, 8), *self.maybe_evening()]:
            temp = p.temperature + 0.2 * _circadian(when) + rng.gauss(0, 0.12)
            self.add(Metric.BODY_TEMPERATURE, when, round(_clip(temp, 36.3, 37.2), 1))
        for when in [self.at(0.3, 1.0), *self.maybe_evening()]:
            sys = round(_clip(p.systolic + rng.gauss(0, 6), 95, 150))
            dia = round(_clip(p.diastolic + rng.gauss(0, 4), 55, 95))
            self.add(Metric.BLOOD_PRESSURE, when, (sys, dia), Context.REST)
        if p.glucose is not None:
            fasting = _clip(p.glucose + rng.gauss(0, 6), 70, 200)
            self.add(Metric.BLOOD_GLUCOSE, self.at(0.15, 0.5), round(fasting))
            for hours in (3, 7, 12):
                if rng.random() < 0.7:
                    meal = _clip(p.glucose + rng.uniform(20, 50) + rng.gauss(0, 8), 70, 200)
                    self.add(Metric.BLOOD_GLUCOSE, self.at(hours, hours + 1), round(meal))
        if self.wake.weekday() == p.weigh_day:
            self.add(Metric.WEIGHT, self.at(0.1, 0.3), round(p.weight + rng.gauss(0, 0.3), 1))
        for _ in range(rng.randint(1, 2)):
            spo2 = round(_clip(p.spo2 + rng.gauss(0, 0.8), 95, 99))
            self.add(Metric.SPO2, self.awake_time(), spo2, Context.REST)
        rr = round(_clip(p.respiratory_rate + rng.gauss(0, 0.8), 12, 18), 1)
        self.add(Metric.RESPIRATORY_RATE, self.awake_time(), rr, Context.REST)

    def night(self) -> None:
        """SpO2 and respiratory rate a few times while asleep."""
        p, rng = self.p, self.rng
        for _ in range(rng.randint(3, 5)):
            spo2 = round(_clip(p.spo2 - 0.5 + rng.gauss(0, 0.8), 95, 99))
            self.add(Metric.SPO2, self.night_time(), spo2, Context.SLEEP)
        for _ in range(3):
            rr = round(_clip(p.respiratory_rate - 0.8 + rng.gauss(0, 0.7), 12, 18), 1)
            self.add(Metric.RESPIRATORY_RATE, self.night_time(), rr, Context.SLEEP)


def cycle_samples(
    p: PatientProfile, schedule: Schedule, index: int, *, rng: random.Random
) -> list[Sample]:
    """Samples from waking after night ``index - 1`` until waking after night ``index``.

    Unsorted; episode samples are not included (see :func:`episode_samples`).
    """
    cycle = _Cycle(p, schedule, index, rng)
    cycle.heart_rate()
    cycle.steps()
    cycle.morning()
    cycle.spot_checks()
    cycle.night()
    return cycle.out
