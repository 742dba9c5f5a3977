"""One simulated patient: personal levels, devices, habits, a schedule, and a day's samples.

Pure functions of their ``random.Random``. A *cycle* runs from waking up to waking up the next
day: the awake part (heart rate, steps, spot checks) then the night. All values are in
canonical units; :mod:`pghd.simulation.cohort` dresses them in each device's unit.

**What the devices send** (as real feeds do: Fitbit, Garmin, Withings, Oura, Terra/Junction
deliver bare heart-rate samples, steps as a separate series of counts, sleep as sessions):

- *Heart rate* from the watch every 4-6 min (every ~1 min during a workout), with no
  ``context``. Only an Apple-Watch-like watch (30 % of patients) sets a motion context on
  some samples, as ``HKMetadataKeyHeartRateMotionContext`` does: ``rest`` (sedentary) on
  half the samples taken awake after at least 5 still minutes and on 30 % of those taken
  asleep (the watch only sees stillness), ``activity`` (active) on 90 % of those taken in a
  workout, none on all the others (moving about, commuting, the rest of the samples).
- *Steps* as counts over an interval (``effective_time`` its start, ``effective_end`` its
  end), by the watch's kind: 1-minute buckets (Fitbit-like, 20 % of patients), 15-minute
  buckets (Garmin-like, 50 %), or Apple-like samples of 2-10 minutes (a movement bout
  shorter than that is one sample) only while there were steps (30 %). Bucket devices
  send every bucket of a day the watch is used, zeros included (also while it lies off
  the wrist: it counts nothing then); Apple-like ones send nothing when there were none.
  20 % of patients also carry a phone counting steps (15-minute buckets or Apple-like
  samples; Apple-like with an Apple-like watch), which counts the walks it was carried
  on (commutes, 90 % of walks, 40 % of runs, 20 % of interval sessions, 30 % of moving
  about the house) at 90 % of the steps, so the same walk is counted by two devices.
- *Sleep* as one session a night (``effective_time`` falling asleep, ``effective_end``
  waking, value the hours asleep: 88-97 % of the span), posted 5-90 min after waking.
- Resting heart rate and HRV once a morning, SpO2 and respiratory rate a few times a day
  and night, and spot checks from a thermometer, a cuff, a glucometer and a scale.

**Physiology.** Asleep the heart rate is 3 bpm under the resting level; awake and still it
is the resting level plus a personal 6-12 bpm with a ±4 bpm circadian swing (peaking 9 h
after waking, so it follows the patient's own clock on a trip). Movement drives it towards
a target: a first-order response with a fast (60 %) and a slow (40 %) component, rising
over ~2-3 min and recovering over ~5-10 min after stopping (the slow component's time
constant is personal, 5-8 min), so a still patient right after a workout still has a raised
heart rate.

**Habits** (per awake day, rates drawn per patient): moving about (30 s - 4 min bouts at
40-100 steps a minute, a still spell of 3-120 min, exponential with a personal mean of
12-35 min, between them); walks (10-50 % of days, 20-60 min, heart rate 95-115, 100-120
steps/min); runs (40 % of patients run on 15-45 % of days, others rarely: 20-55 min, a
quarter of them long runs of 60-90 min, heart rate 135-175, 150-180 steps/min); interval
sessions (runners on 3-15 % of days: 20-40 min alternating 1-4 min hard, heart rate 150-175
at 160-185 steps/min, and easy, 105-125 at 100-120); commutes (55 % of patients, weekdays
not on a trip, 90 % of them: a 10-25 min walk in the morning and in the evening).

**Artefacts and gaps:** a heart-rate spike (+30-60 bpm on one reading; 0.8 % of samples,
2 % while moving), dropouts (3 % of samples, and on 60 % of days one run of 10-40 min);
the watch off the wrist for 1-5 h on 25 % of days and through 7 % of nights (then a
normal morning); 3 % of days without the watch at all (that day and night send nothing
from it). Travel: 15 % of patients take one 3-8-night trip on which the whole schedule
shifts by 5-9 hours (either way); times stay UTC on the wire. Late batches: 25 % of
patients have a phone that syncs late on 25-60 % of days: the steps (every device's) of a
1-6 h window, and on 40 % of those days the heart rate too, arrive together 1-6 h after
the window. Everything else arrives 5-60 s after its ``effective_end`` (or its
``effective_time`` for an instant).

**Known limitations:** no cycling or swimming (a high heart rate with no steps), no naps,
no jet lag (the body clock moves with the schedule at once), one sleep session a night.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pghd.catalogue import Metric
from pghd.contracts import Context
from pghd.simulation.episodes import (
    CALM,
    Episode,
    EpisodeKind,
    Interval,
    Sample,
    hr_offset,
    hr_override,
    plan_episode,
    quiet_windows,
    suppresses,
)

__all__ = [
    "MOVING",
    "WEARABLE",
    "WORKOUTS",
    "Exertion",
    "Move",
    "PatientProfile",
    "Schedule",
    "StepFormat",
    "Trip",
    "cycle_samples",
    "make_profile",
    "plan",
]

_H = timedelta(hours=1)
_MIN = timedelta(minutes=1)
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
_MANUAL = frozenset(
    {Metric.BODY_TEMPERATURE, Metric.BLOOD_PRESSURE, Metric.BLOOD_GLUCOSE, Metric.WEIGHT}
)
"""Spot checks the patient takes by hand: only while awake."""

WORKOUTS = frozenset({"walk", "run", "intervals"})
"""Kinds of :class:`Move` a watch records as a workout."""
MOVING = WORKOUTS | {"commute"}
"""Kinds of :class:`Move` the oracle labels call activity (moving about is not)."""

# Heart-rate response to movement: a fast and a slow first-order component (seconds).
_FAST_SHARE, _FAST_UP, _FAST_DOWN = 0.6, 36.0, 72.0
_SLOW_UP = 120.0
_LATE_METRICS = frozenset({Metric.STEPS})


class StepFormat(StrEnum):
    """How a device reports steps."""

    MINUTE = "minute"
    """Fitbit-like: a count for every minute, zeros included."""
    QUARTER = "quarter"
    """Garmin-like (and some phones): a count for every quarter hour, zeros included."""
    SAMPLES = "samples"
    """Apple-like: samples of a few minutes, only while there were steps."""


@dataclass(frozen=True, slots=True)
class PatientProfile:
    """One simulated patient's levels, devices and habits (canonical units, hours UTC)."""

    patient_id: str
    resting_hr: float
    day_hr_delta: float
    """Awake and still, the heart rate sits this far above ``resting_hr``."""
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
    us_units: bool
    glucose_mmol: bool
    weigh_day: int
    watch: StepFormat
    """The watch's steps; :attr:`StepFormat.SAMPLES` is an Apple-Watch-like watch."""
    phone: StepFormat | None
    """A phone also counting steps, if the patient has one."""
    recovery_minutes: float
    """Time constant of the slow part of the heart rate's recovery after movement."""
    still_minutes: float
    """Mean still spell between bouts of moving about."""
    commuter: bool
    walk_rate: float
    run_rate: float
    interval_rate: float
    run_hr: float
    run_cadence: float
    late_sync: float
    """Share of days on which the phone syncs a window of readings hours late (0: never)."""
    travels: bool

    @property
    def apple(self) -> bool:
        """Whether the watch is Apple-Watch-like (sets a motion context on heart rates)."""
        return self.watch is StepFormat.SAMPLES


def make_profile(patient_id: str, *, rng: random.Random, glucose: bool) -> PatientProfile:
    """Draw a patient's personal levels (resting heart rate 55-80, SpO2 96-98.5, ...),
    devices and habits (shares in the module docstring)."""
    levels = (
        rng.uniform(55, 80),
        rng.uniform(6, 12),
        rng.uniform(25, 75),
        rng.uniform(96, 98.5),
        rng.uniform(13, 16.5),
        rng.uniform(36.5, 36.9),
        rng.uniform(105, 135),
        rng.uniform(65, 84),
    )
    glucose_level = rng.uniform(85, 120) if glucose else None
    weight, bedtime = rng.uniform(50, 110), rng.uniform(21.5, 24.0)
    sleep_hours = rng.uniform(6, 8.5)
    us_units, glucose_mmol, weigh_day = rng.random() < 0.25, rng.random() < 0.5, rng.randrange(7)
    kind = rng.random()
    watch = StepFormat.SAMPLES if kind < 0.3 else StepFormat.QUARTER
    if 0.3 <= kind < 0.5:
        watch = StepFormat.MINUTE
    phone: StepFormat | None = None
    if rng.random() < 0.2:
        apple_phone = watch is StepFormat.SAMPLES or rng.random() < 0.5
        phone = StepFormat.SAMPLES if apple_phone else StepFormat.QUARTER
    runner = rng.random() < 0.4
    rhr, delta, hrv, spo2, rr, temperature, systolic, diastolic = levels
    return PatientProfile(
        patient_id=patient_id,
        resting_hr=rhr,
        day_hr_delta=delta,
        hrv=hrv,
        spo2=spo2,
        respiratory_rate=rr,
        temperature=temperature,
        systolic=systolic,
        diastolic=diastolic,
        glucose=glucose_level,
        weight=weight,
        bedtime=bedtime,
        sleep_hours=sleep_hours,
        us_units=us_units,
        glucose_mmol=glucose_mmol,
        weigh_day=weigh_day,
        watch=watch,
        phone=phone,
        recovery_minutes=rng.uniform(5, 8),
        still_minutes=rng.uniform(12, 35),
        commuter=rng.random() < 0.55,
        walk_rate=rng.uniform(0.1, 0.5),
        run_rate=rng.uniform(0.15, 0.45) if runner else rng.uniform(0, 0.04),
        interval_rate=rng.uniform(0.03, 0.15) if runner else 0.0,
        run_hr=rng.uniform(140, 165),
        run_cadence=rng.uniform(155, 175),
        late_sync=rng.uniform(0.25, 0.6) if rng.random() < 0.25 else 0.0,
        travels=rng.random() < 0.15,
    )


@dataclass(frozen=True, slots=True)
class Move:
    """A bout of movement: ``cadence`` steps a minute, the heart rate heading for ``hr``.

    ``kind`` is ``walk``, ``run`` or ``intervals`` (workouts; an interval session is one
    move per hard or easy phase), ``commute``, or ``potter`` (moving about). ``phone``:
    whether the phone, if the patient has one, was carried and counted it.
    """

    start: datetime
    end: datetime
    kind: str
    hr: float
    cadence: float
    phone: bool


@dataclass(frozen=True, slots=True)
class Trip:
    """A journey across time zones: the schedule runs ``shift_hours`` off from home."""

    start: datetime
    end: datetime
    shift_hours: float


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a patient sleeps, moves and goes without the watch, and their episodes."""

    nights: list[Interval]
    moves: list[Move]
    """Workouts and commutes (moving about the house is drawn per cycle)."""
    gaps: list[Interval]
    """The watch off the wrist: no heart rate; bucket devices count zeros."""
    absent: list[Interval]
    """Whole days (and the night after) without the watch: nothing from it at all."""
    episodes: list[Episode]
    trip: Trip | None = None


def _overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _inside(intervals: Sequence[Interval], when: datetime) -> bool:
    return any(lo <= when < hi for lo, hi in intervals)


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _whole(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def _workout(kind: str, p: PatientProfile, rng: random.Random) -> list[tuple[float, float, float]]:
    """The phases of one workout: ``(minutes, heart rate, cadence)`` each."""
    if kind == "walk":
        return [(rng.uniform(20, 60), rng.uniform(95, 115), rng.uniform(100, 120))]
    if kind == "run":
        minutes = rng.uniform(60, 90) if rng.random() < 0.25 else rng.uniform(20, 55)
        hr = _clip(p.run_hr + rng.gauss(0, 6), 135, 175)
        return [(minutes, hr, _clip(p.run_cadence + rng.gauss(0, 4), 150, 180))]
    phases, total, hard = [], rng.uniform(20, 40), True
    while total > 0.5:
        minutes = min(total, rng.uniform(1, 4))
        if hard:
            phases.append((minutes, rng.uniform(150, 175), rng.uniform(160, 185)))
        else:
            phases.append((minutes, rng.uniform(105, 125), rng.uniform(100, 120)))
        total, hard = total - minutes, not hard
    return phases


_CARRY = {"commute": 1.0, "walk": 0.9, "run": 0.4, "intervals": 0.2}


def _day_moves(
    p: PatientProfile, rng: random.Random, wake: datetime, bed: datetime, *, commutes: bool
) -> list[Move]:
    """Commutes and workouts of one awake day, none overlapping."""
    moves: list[Move] = []

    def free(lo: datetime, hi: datetime) -> bool:
        margin = 10 * _MIN
        return all(not _overlaps((lo - margin, hi + margin), (m.start, m.end)) for m in moves)

    if commutes:
        for lo_h, hi_h in ((0.8, 1.5), (9.0, 10.5)):
            at = _whole(wake + rng.uniform(lo_h, hi_h) * _H)
            length = timedelta(seconds=round(rng.uniform(10, 25) * 60))
            hr, cadence = rng.uniform(92, 108), rng.uniform(100, 118)
            if at + length < bed - _H:
                moves.append(Move(at, at + length, "commute", hr, cadence, True))
    for kind, rate in (("walk", p.walk_rate), ("run", p.run_rate), ("intervals", p.interval_rate)):
        if rng.random() >= rate:
            continue
        phases = _workout(kind, p, rng)
        total = timedelta(minutes=sum(m for m, _, _ in phases))
        carried = rng.random() < _CARRY[kind]
        room = bed - wake - 2.5 * _H - total
        for _ in range(6):
            if room <= timedelta(0):
                break
            at = _whole(wake + _H + room * rng.random())
            if free(at, at + total):
                for minutes, hr, cadence in phases:
                    end = at + timedelta(seconds=round(minutes * 60))
                    moves.append(Move(at, end, kind, hr, cadence, carried))
                    at = end
                break
    return moves


def plan(
    p: PatientProfile,
    *,
    rng: random.Random,
    start: datetime,
    end: datetime,
    kinds: Sequence[EpisodeKind],
) -> Schedule:
    """Plan nights from before ``start`` to after ``end``, moves, gaps, a trip and an episode.

    The first kind of ``kinds`` that fits becomes the patient's episode (none if empty). It
    starts after the first 40 % of the period, so a baseline can form first. Workouts near
    a calm episode (fever, tachycardia, desaturation, hypoglycaemia; for a tachycardia
    from 90 minutes before it) and watch gaps near any episode but a change of the resting
    heart rate are dropped so it stays visible.
    """
    day0 = datetime.combine(start.date(), datetime.min.time(), UTC) - timedelta(days=2)
    shift: dict[int, float] = {}
    first = length = 0
    if p.travels:
        span = (end - day0) / timedelta(days=1)
        first, length = rng.randint(3, max(3, int(span) - 2)), rng.randint(3, 8)
        hours = rng.uniform(5, 9) * rng.choice((-1, 1))
        shift = {n: hours for n in range(first, first + length)}
    nights: list[Interval] = []
    while not nights or nights[-1][1] < end + _H:
        n = len(nights)
        bed = day0 + timedelta(hours=24 * n + p.bedtime + shift.get(n, 0.0) + rng.gauss(0, 0.4))
        if nights:
            bed = max(bed, nights[-1][1] + 4 * _H)
        hours = min(10.0, max(4.0, p.sleep_hours + rng.gauss(0, 0.6)))
        nights.append((_whole(bed), _whole(bed + hours * _H)))
    trip = None
    if shift and first < len(nights):
        last = min(first + length, len(nights)) - 1
        trip = Trip(nights[first - 1][1], nights[last][1], shift[first])
    awake = [(a[1], b[0]) for a, b in itertools.pairwise(nights)]
    moves: list[Move] = []
    gaps: list[Interval] = []
    absent: list[Interval] = []
    for j, (wake, bed) in enumerate(awake):
        rise = nights[j + 1][1]
        away = trip is not None and trip.start <= wake < trip.end
        commutes = p.commuter and not away and wake.weekday() < 5 and rng.random() < 0.9
        moves += _day_moves(p, rng, wake, bed, commutes=commutes)
        if rng.random() < 0.03:
            absent.append((wake, rise))
        if rng.random() < 0.25:
            off = rng.uniform(1, 5) * _H
            if bed - wake > off:
                at = _whole(wake + (bed - wake - off) * rng.random())
                gaps.append((at, _whole(at + off)))
        if rng.random() < 0.07:
            gaps.append((bed - _H / 2, rise + _H / 2))
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
    calm = [
        (e.start - (1.5 * _H if e.kind is EpisodeKind.TACHYCARDIA else _H), e.end + _H)
        for e in episodes
        if e.kind in CALM
    ]
    near = [
        (e.start - _H, e.end + _H)
        for e in episodes
        if e.kind not in (EpisodeKind.RHR_RISE, EpisodeKind.RHR_DRIFT)
    ]
    return Schedule(
        nights=nights,
        moves=sorted(
            (m for m in moves if not any(_overlaps((m.start, m.end), w) for w in calm)),
            key=lambda m: m.start,
        ),
        gaps=sorted(g for g in gaps if not any(_overlaps(g, w) for w in near)),
        absent=sorted(a for a in absent if not any(_overlaps(a, w) for w in near)),
        episodes=episodes,
        trip=trip,
    )


def _approach(x: float, target: float, seconds: float, up: float, down: float) -> float:
    """A first-order response ``seconds`` on from ``x`` towards ``target``."""
    tau = up if target > x else down
    return target + (x - target) * math.exp(-seconds / tau)


class Exertion:
    """Beats per minute a day's movement adds to the heart rate, at any instant.

    Each move drives the heart rate towards ``max(floor, move.hr - still)`` above the still
    awake level (floor 10 bpm for workouts and commutes, 4 for moving about), through two
    first-order components: a fast one (60 %: time constant 36 s rising, 72 s falling) and
    a slow one (40 %: 120 s rising, ``recovery_minutes`` falling). So the rise takes ~2-3
    minutes and the recovery after stopping ~5-10. ``moves`` must not overlap.
    """

    def __init__(self, moves: Sequence[Move], *, still: float, recovery_minutes: float) -> None:
        self.slow_down = recovery_minutes * 60
        self.knots: list[float] = []
        self.states: list[tuple[float, float, float]] = []
        fast = slow = target = 0.0
        before = moves[0].start.timestamp() if moves else 0.0
        for m in moves:
            effort = max(10.0 if m.kind in MOVING else 4.0, m.hr - still)
            for at, goal in ((m.start.timestamp(), effort), (m.end.timestamp(), 0.0)):
                fast = _approach(fast, target, at - before, _FAST_UP, _FAST_DOWN)
                slow = _approach(slow, target, at - before, _SLOW_UP, self.slow_down)
                self.knots.append(at)
                self.states.append((goal, fast, slow))
                before, target = at, goal

    def __call__(self, ts: float) -> float:
        """The excess heart rate at ``ts`` (epoch seconds)."""
        k = bisect_right(self.knots, ts) - 1
        if k < 0:
            return 0.0
        target, fast, slow = self.states[k]
        if fast == slow == target:
            return target
        since = ts - self.knots[k]
        fast = _approach(fast, target, since, _FAST_UP, _FAST_DOWN)
        slow = _approach(slow, target, since, _SLOW_UP, self.slow_down)
        return _FAST_SHARE * fast + (1 - _FAST_SHARE) * slow


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


_DELAYS = [timedelta(seconds=n) for n in range(5, 61)]
"""How long after it was taken (or its interval ended) a reading normally arrives."""


def _within(spans: Sequence[tuple[float, float]], ts: float) -> bool:
    for lo, hi in spans:  # noqa: SIM110 (a loop: any() and its generator cost more here)
        if lo <= ts < hi:
            return True
    return False


def _meets(spans: Sequence[tuple[float, float]], lo: float, hi: float) -> bool:
    return any(a < hi and lo < b for a, b in spans)


class _Cycle:
    """Collects the samples of one cycle, dropping those the watch or an episode rules out.

    Hot paths work in epoch seconds (``ts``): a cohort makes millions of samples.
    """

    def __init__(self, p: PatientProfile, s: Schedule, i: int, rng: random.Random) -> None:
        self.p, self.rng, self.episodes = p, rng, s.episodes
        self.last_night = s.nights[i - 1]
        self.wake, (self.bed, self.rise) = self.last_night[1], s.nights[i]
        window = (self.wake - 12 * _H, self.rise)
        self.gaps = [g for g in [*s.gaps, *s.absent] if _overlaps(g, window)]
        self.gap_ts = [(lo.timestamp(), hi.timestamp()) for lo, hi in self.gaps]
        self.absent_ts = [
            (a.timestamp(), b.timestamp()) for a, b in s.absent if _overlaps((a, b), window)
        ]
        self.quiet = quiet_windows(s.episodes)
        self.hr_episodes = [
            e for e in s.episodes if Metric.HEART_RATE in e.metrics and e.start < self.rise
        ]
        self.still = p.resting_hr + p.day_hr_delta
        planned = [m for m in s.moves if self.wake <= m.start < self.rise]
        self.moves = sorted([*planned, *self._potter(planned)], key=lambda m: m.start)
        self.starts = [m.start.timestamp() for m in self.moves]
        self.ends = [m.end.timestamp() for m in self.moves]
        self.exertion = Exertion(self.moves, still=self.still, recovery_minutes=p.recovery_minutes)
        self.late: tuple[datetime, datetime, datetime, bool] | None = None
        if p.late_sync and rng.random() < p.late_sync:
            length = rng.uniform(1, 6) * _H
            if self.bed - self.wake > length:
                lo = _whole(self.wake + (self.bed - self.wake - length) * rng.random())
                hi = _whole(lo + length)
                self.late = (lo, hi, _whole(hi + rng.uniform(1, 6) * _H), rng.random() < 0.4)
        self.out: list[Sample] = []

    def _potter(self, planned: Sequence[Move]) -> list[Move]:
        """Bouts of moving about between still spells, away from the planned moves."""
        rng, p = self.rng, self.p
        margin = 2 * _MIN
        blocked = [(m.start - margin, m.end + margin) for m in planned] + self.quiet
        out: list[Move] = []
        when = self.wake + 15 * _MIN
        while True:
            pause = _clip(rng.expovariate(1 / p.still_minutes), 3, 120)
            when = _whole(when + pause * _MIN)
            length = timedelta(seconds=round(rng.uniform(30, 240)))
            if when + length >= self.bed:
                return out
            block = next((b for b in blocked if _overlaps(b, (when, when + length))), None)
            if block is not None:
                when = _whole(block[1])
                continue
            hr, cadence = self.still + rng.uniform(8, 18), rng.uniform(40, 100)
            out.append(Move(when, when + length, "potter", hr, cadence, rng.random() < 0.3))
            when += length

    def arrival(self, metric: Metric, when: datetime, end: datetime | None = None) -> datetime:
        """When a reading taken at ``when`` (over ``[when, end)``) reaches ingest."""
        late = self.late
        if (
            late is not None
            and late[0] <= when < late[1]
            and (metric is Metric.STEPS or (late[3] and metric is Metric.HEART_RATE))
        ):
            return late[2]
        return (end or when) + _DELAYS[int(self.rng.random() * 56)]

    def add(
        self,
        metric: Metric,
        when: datetime,
        value: float | tuple[float, float],
        context: Context | None = None,
    ) -> None:
        """Keep a sample of the watch or a spot check, unless ruled out."""
        if not self.wake <= when < self.rise:
            return
        if metric in WEARABLE and _inside(self.gaps, when):
            return
        if (metric in _MANUAL and when >= self.bed) or suppresses(self.episodes, metric, when):
            return
        when = _whole(when)
        device = "watch" if metric in WEARABLE else ""
        arrival = self.arrival(metric, when)
        self.out.append(Sample(metric, when, value, context, None, device, None, arrival))

    def at(self, lo: float, hi: float, *, base: datetime | None = None) -> datetime:
        """A time between ``lo`` and ``hi`` hours after ``base`` (waking up by default)."""
        return (base or self.wake) + timedelta(hours=self.rng.uniform(lo, hi))

    def circadian(self, when: datetime) -> float:
        """+1 nine hours after waking (mid-afternoon), -1 in the small hours."""
        hours = (when - self.wake) / _H
        return math.cos(2 * math.pi * (hours - 9) / 24)

    def maybe_evening(self) -> list[datetime]:
        """Half the days, a time in the hour or so before bed."""
        return [self.at(-1.5, -0.5, base=self.bed)] if self.rng.random() < 0.5 else []

    def awake_time(self) -> datetime:
        return self.wake + (self.bed - self.wake) * self.rng.random()

    def night_time(self) -> datetime:
        return self.bed + (self.rise - self.bed) * self.rng.random()

    def heart_rate(self) -> None:
        """Every 4-6 min (~1 min in a workout): see the module docstring."""
        rng = self.rng
        wake, bed, rise = self.wake.timestamp(), self.bed.timestamp(), self.rise.timestamp()
        dropouts: list[tuple[float, float]] = []
        if rng.random() < 0.6:
            at = rng.uniform(wake, rise)
            dropouts.append((at, at + rng.uniform(600, 2400)))
        quiet = [(lo.timestamp(), hi.timestamp() + 600) for lo, hi in self.quiet]
        ts = wake + rng.uniform(0, 300)
        while ts < rise:
            k = bisect_right(self.starts, ts) - 1
            move = self.moves[k] if k >= 0 and ts < self.ends[k] else None
            workout = move is not None and move.kind in WORKOUTS
            calm = bool(quiet) and _within(quiet, ts)
            dropped = rng.random() < 0.03 or _within(dropouts, ts)
            if (calm or not dropped) and not _within(self.gap_ts, ts):
                self._heart_rate(ts, move, k, asleep=ts >= bed, calm=calm)
            ts += rng.uniform(50, 70) if workout else rng.uniform(240, 360)

    def _heart_rate(
        self, ts: float, move: Move | None, k: int, *, asleep: bool, calm: bool
    ) -> None:
        p, rng = self.p, self.rng
        when = _utc(ts)
        c = math.cos(2 * math.pi * ((ts - self.wake.timestamp()) / 3600 - 9) / 24)
        if asleep:
            hr, truth = p.resting_hr - 3 + 1.5 * c + rng.gauss(0, 2.5), Context.SLEEP
        else:
            hr = self.still + 4 * c + rng.gauss(0, 3)
            truth = Context.ACTIVITY if move is not None and move.kind in MOVING else Context.REST
        hr += self.exertion(ts)
        held = hr_override(self.hr_episodes, when) if self.hr_episodes else None
        if held is not None:
            hr = _clip(held + rng.gauss(0, 4), 125, 150)
        else:
            if self.hr_episodes:
                hr += hr_offset(self.hr_episodes, when)
            if not calm and rng.random() < (0.02 if move is not None else 0.008):
                hr += rng.uniform(30, 60)
        reported = None
        if p.apple:
            if asleep:
                reported = Context.REST if rng.random() < 0.3 else None
            elif move is not None:
                if move.kind in WORKOUTS and rng.random() < 0.9:
                    reported = Context.ACTIVITY
            else:
                since = self.ends[k] if k >= 0 else self.wake.timestamp()
                if ts - since >= 300 and rng.random() < 0.5:
                    reported = Context.REST
        value = round(_clip(hr, 40, 200))
        arrival = self.arrival(Metric.HEART_RATE, when)
        self.out.append(
            Sample(Metric.HEART_RATE, when, value, truth, None, "watch", reported, arrival)
        )

    def _pieces(self, device: str) -> list[tuple[float, float, float, Move]]:
        """What ``device`` counted: ``(start, end, steps a minute, move)`` (epoch seconds)."""
        out = []
        for m, start, end in zip(self.moves, self.starts, self.ends, strict=True):
            if device == "phone":
                if m.phone:
                    out.append((start, end, m.cadence * 0.9, m))
                continue
            spans = [(start, end)]
            for lo, hi in self.gap_ts:
                if lo < end and start < hi:
                    spans = [
                        piece
                        for a, b in spans
                        for piece in ((a, min(b, lo)), (max(a, hi), b))
                        if piece[1] > piece[0]
                    ]
            out += [(a, b, m.cadence, m) for a, b in spans]
        return out

    def steps(self) -> None:
        """The watch's steps and the phone's, each in its device's format."""
        self._steps("watch", self.p.watch)
        if self.p.phone is not None:
            self._steps("phone", self.p.phone)

    def _steps(self, device: str, form: StepFormat) -> None:
        if form is StepFormat.SAMPLES:
            self._step_samples(device)
        else:
            self._step_buckets(device, 60 if form is StepFormat.MINUTE else 900)

    def _step_buckets(self, device: str, size: int) -> None:
        """A count for every bucket of the cycle (zeros too), none on a day without it."""
        rng, out, late = self.rng, self.out, self.late
        lo, hi = self.wake.timestamp(), self.rise.timestamp()
        first = math.ceil(lo / size) * size
        n = math.ceil((hi - first) / size)
        counts, busy = [0.0] * n, [0.0] * n
        for a, b, cadence, move in self._pieces(device):
            moving = move.kind in MOVING
            for k in range(max(0, int((a - first) // size)), min(n, int((b - first) // size) + 1)):
                left = first + k * size
                overlap = min(b, left + size) - max(a, left)
                if overlap > 0:
                    counts[k] += overlap / 60 * cadence
                    if moving:
                        busy[k] += overlap
        absent = self.absent_ts if device == "watch" else []
        width = timedelta(seconds=size)
        when = _utc(first)
        late_lo = late[0] if late is not None else None
        steps, activity, delays = Metric.STEPS, Context.ACTIVITY, _DELAYS
        for k in range(n):
            until = when + width
            if not absent or not _meets(absent, when.timestamp(), until.timestamp()):
                count = round(counts[k] * rng.uniform(0.95, 1.05)) if counts[k] else 0
                context = activity if busy[k] > size / 2 else None
                if late_lo is not None and late_lo <= when:
                    arrival = self.arrival(steps, when, until)
                else:
                    arrival = until + delays[int(rng.random() * 56)]
                out.append(Sample(steps, when, count, context, until, device, None, arrival))
            when = until

    def _step_samples(self, device: str) -> None:
        """Apple-like: samples of 2-10 minutes (a short bout is one) only when there were steps."""
        rng = self.rng
        for a, b, cadence, move in self._pieces(device):
            context = Context.ACTIVITY if move.kind in MOVING else None
            at = a
            while at < b:
                # 2-9.5 min; a tail under 30 s joins the sample before (at most 10 min)
                span = b - at if move.kind == "potter" else min(b - at, rng.uniform(120, 570))
                if b - at - span < 30:
                    span = b - at
                start, end = int(at), int(at + span)
                count = round(span / 60 * cadence * rng.uniform(0.95, 1.05))
                if end > start and count >= 1:
                    when, until = _utc(start), _utc(end)
                    arrival = self.arrival(Metric.STEPS, when, until)
                    self.out.append(
                        Sample(Metric.STEPS, when, count, context, until, device, None, arrival)
                    )
                at += span

    def morning(self) -> None:
        """Last night's sleep session and HRV, then today's resting heart rate."""
        p, rng = self.p, self.rng
        lo, hi = self.last_night
        if not _inside(self.gaps, lo + (hi - lo) / 2):
            hours = round((hi - lo) / _H * rng.uniform(0.88, 0.97), 2)
            arrival = hi + timedelta(seconds=rng.randint(300, 5400))
            self.out.append(
                Sample(
                    Metric.SLEEP_DURATION,
                    lo,
                    hours,
                    Context.SLEEP,
                    end=hi,
                    device="watch",
                    arrival=arrival,
                )
            )
            hrv = round(_clip(p.hrv + rng.gauss(0, 7), 10, 200), 1)
            self.add(Metric.HRV_SDNN, self.at(0.02, 0.15), hrv, Context.SLEEP)
        when = self.at(0.5, 1.5)
        rhr = p.resting_hr + rng.gauss(0, 1.5) + hr_offset(self.episodes, when)
        self.add(Metric.RESTING_HEART_RATE, when, round(rhr), Context.REST)

    def spot_checks(self) -> None:
        """Thermometer, cuff, glucometer, scale, and the watch's daytime SpO2/respiration."""
        p, rng = self.p, self.rng
        for when in [self.at(0.5, 1.5), self.at(6, 8), *self.maybe_evening()]:
            temp = p.temperature + 0.2 * self.circadian(when) + rng.gauss(0, 0.12)
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

    Unsorted, each with its ``arrival``; a steps count belongs to the cycle its interval
    starts in, last night's sleep session to the morning it is posted. Episode samples are
    not included (see :func:`pghd.simulation.episodes.episode_samples`). Every sample
    arrives after the cycle began.
    """
    cycle = _Cycle(p, schedule, index, rng)
    cycle.heart_rate()
    cycle.steps()
    cycle.morning()
    cycle.spot_checks()
    cycle.night()
    return cycle.out
