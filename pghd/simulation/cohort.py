"""A deterministic synthetic cohort: readings as devices send them, plus episode labels.

Pure: no clock, no I/O; ``random.Random`` seeded from ``seed`` and the patient id, so the same
arguments give the same readings. Each patient has personal levels, devices, a sleep/wake
rhythm, workouts, hours the watch is not worn and late syncs (:mod:`pghd.simulation.patient`
describes what is sent and with what shares); a share of them carry one labelled episode
(:mod:`pghd.simulation.episodes`).

Readings come in **arrival order** (:meth:`Cohort.arrivals`): most arrive 5-60 s after they
were taken (after the end of a steps interval or sleep session), but a late phone sync
delivers hours of steps (sometimes heart rate too) at once, so arrival order is not
effective-time order. Readings carry no ``context`` unless the device sets one (an
Apple-Watch-like watch on some heart rates); ``labels=True`` puts the true context on every
reading instead (oracle labels, the old behaviour), on otherwise identical readings.

Readings are generated one sleep/wake cycle at a time per patient and merged across the
cohort, so a large cohort never sits in memory at once (about a day of readings per
patient does).
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pghd.catalogue import GLUCOSE_MG_DL_PER_MMOL_L, POUND_KG, Metric
from pghd.simulation.episodes import Episode, EpisodeKind, Sample, episode_samples
from pghd.simulation.patient import (
    WEARABLE,
    PatientProfile,
    Schedule,
    cycle_samples,
    make_profile,
    plan,
)

__all__ = ["Arrival", "Cohort", "generate_cohort", "render"]

_DEVICE = {
    Metric.BODY_TEMPERATURE: "thermo",
    Metric.BLOOD_PRESSURE: "cuff",
    Metric.BLOOD_GLUCOSE: "gluco",
    Metric.WEIGHT: "scale",
}
_UNIT = {
    Metric.HEART_RATE: "/min",
    Metric.RESTING_HEART_RATE: "/min",
    Metric.HRV_SDNN: "ms",
    Metric.SPO2: "%",
    Metric.RESPIRATORY_RATE: "/min",
    Metric.BODY_TEMPERATURE: "Cel",
    Metric.BLOOD_PRESSURE: "mmHg",
    Metric.BLOOD_GLUCOSE: "mg/dL",
    Metric.STEPS: "{steps}",
    Metric.WEIGHT: "kg",
    Metric.SLEEP_DURATION: "h",
}


def _stamp(when: datetime) -> str:
    """``when`` (UTC, whole seconds) as ``2026-11-25T12:00:00Z``."""
    return when.isoformat()[:19] + "Z"


def _celsius_to_fahrenheit(value: float) -> float:
    return round(value * 9 / 5 + 32, 1)


def _kg_to_lb(value: float) -> float:
    return round(value / POUND_KG, 1)


def _mg_dl_to_mmol_l(value: float) -> float:
    return round(value / GLUCOSE_MG_DL_PER_MMOL_L, 1)


class _Renderer:
    """Dresses one patient's samples; per device and metric, the fixed parts are cached."""

    def __init__(self, p: PatientProfile, *, seed: int, labels: bool) -> None:
        self.p, self.seed, self.labels = p, seed, labels
        # Keyed by the metric's id: Enum.__hash__ is Python code, slow on the hot path.
        self.fixed: dict[tuple[str, int], tuple[str, str, str, str, Any]] = {}

    def _fixed(self, device: str, metric: Metric) -> tuple[str, str, str, str, Any]:
        p, unit, convert = self.p, _UNIT[metric], None
        if metric is Metric.BODY_TEMPERATURE and p.us_units:
            unit, convert = "[degF]", _celsius_to_fahrenheit
        elif metric is Metric.WEIGHT and p.us_units:
            unit, convert = "[lb_av]", _kg_to_lb
        elif metric is Metric.BLOOD_GLUCOSE and p.glucose_mmol:
            unit, convert = "mmol/L", _mg_dl_to_mmol_l
        name = metric.value
        key = f"{self.seed}|{p.patient_id}|{device}|{name}|"
        fixed = (name, unit, key, f"{p.patient_id}-{device}", convert)
        self.fixed[(device, id(metric))] = fixed
        return fixed

    def __call__(self, sample: Sample) -> dict[str, Any]:
        metric, value = sample.metric, sample.value
        device = sample.device or ("watch" if metric in WEARABLE else _DEVICE[metric])
        fixed = self.fixed.get((device, id(metric))) or self._fixed(device, metric)
        name, unit, key, device_id, convert = fixed
        stamp = _stamp(sample.time)
        key += stamp
        if sample.end is not None:
            end = _stamp(sample.end)
            key += "|" + end
        event_id = "sim-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        reading: dict[str, Any]
        if isinstance(value, tuple):
            systolic, diastolic = value
            reading = {
                "patient_id": self.p.patient_id,
                "metric": name,
                "systolic": systolic,
                "diastolic": diastolic,
                "unit": unit,
                "effective_time": stamp,
                "device_id": device_id,
                "app": "pghd-simulator",
                "event_id": event_id,
            }
        else:
            reading = {
                "patient_id": self.p.patient_id,
                "metric": name,
                "value": value if convert is None else convert(value),
                "unit": unit,
                "effective_time": stamp,
                "device_id": device_id,
                "app": "pghd-simulator",
                "event_id": event_id,
            }
        if sample.end is not None:
            reading["effective_end"] = end
        context = sample.context if self.labels else sample.device_context
        if context is not None:
            reading["context"] = context.value
        return reading


def render(p: PatientProfile, sample: Sample, *, seed: int, labels: bool = False) -> dict[str, Any]:
    """Dress a sample as a ``ReadingIn`` dict, in the units this patient's devices use.

    Patients with US devices report temperature in ``[degF]`` and weight in ``[lb_av]``;
    some glucometers report ``mmol/L``. Steps and sleep carry their ``effective_end``. The
    ``context`` is the sample's true one with ``labels`` (oracle labels), else what the
    device itself reports (mostly nothing). The ``event_id`` is a hash of seed, patient,
    device, metric and time (and end), so a re-posted reading is the same event.
    """
    return _Renderer(p, seed=seed, labels=labels)(sample)


Arrival = tuple[datetime, dict[str, Any]]
"""When a reading reaches ingest, and the reading."""

_WINDOW = timedelta(hours=6)
"""How much of the cohort's arrivals :meth:`Cohort.arrivals` sorts at once."""

_Item = tuple[datetime, str, int, dict[str, Any]]
"""A reading to merge: arrival, patient id, its order in the patient's stream, reading."""


def _taken(sample: Sample) -> datetime:
    return sample.time


def _arrived(item: _Item) -> datetime:
    return item[0]


@dataclass(frozen=True)
class Cohort:
    """A planned cohort: profiles, episode labels, and its readings generated on demand.

    ``labels``: whether readings carry the true context (oracle labels) instead of what
    the devices report.
    """

    seed: int
    start: datetime
    end: datetime
    patients: tuple[PatientProfile, ...]
    episodes: tuple[Episode, ...]
    schedules: dict[str, Schedule] = field(repr=False)
    labels: bool = False

    def patient_arrivals(self, patient: PatientProfile) -> Iterator[Arrival]:
        """One patient's readings as they reach ingest: ``(arrived_at, reading)`` in arrival
        order (ties in effective-time order, then in the order they were generated).

        A reading is in the cohort when it was taken (its interval started) in
        ``[start, end)`` and has arrived before ``end``.
        """
        for _, items in self._chunks(patient):
            for arrival, _, _, reading in items:
                yield arrival, reading

    def _chunks(self, patient: PatientProfile) -> Iterator[tuple[datetime | None, list[_Item]]]:
        """One patient's readings a cycle at a time: ``(frontier, items)``, ``items`` in
        arrival order and all of them arrived before ``frontier``, every later one at or
        after it (``None`` on the last chunk).

        A cycle's samples all arrive after it began, so those arriving before the next
        cycle begins are final.
        """
        pid = patient.patient_id
        schedule = self.schedules[pid]
        extra = [
            sample
            for j, episode in enumerate(schedule.episodes)
            for sample in episode_samples(episode, rng=random.Random(f"{self.seed}:{pid}:ep:{j}"))
        ]
        dress = _Renderer(patient, seed=self.seed, labels=self.labels)
        pending: list[_Item] = []
        order = 0
        for i in range(1, len(schedule.nights)):
            lo, hi = schedule.nights[i - 1][1], schedule.nights[i][1]
            if hi <= self.start:
                continue
            if lo >= self.end:
                break
            rng = random.Random(f"{self.seed}:{pid}:cycle:{i}")
            samples = cycle_samples(patient, schedule, i, rng=rng)
            samples += [e for e in extra if lo <= e.time < hi]
            samples.sort(key=_taken)
            seen: set[tuple[Metric, str, datetime]] = set()
            for sample in samples:
                arrival = sample.arrival or sample.end or sample.time
                if sample.time < self.start or arrival >= self.end:
                    continue
                metric = sample.metric
                if metric is not Metric.HEART_RATE and metric is not Metric.STEPS:
                    # spot checks at random times may coincide; heart rates and steps never
                    key = (sample.metric, sample.device, sample.time)
                    if key in seen:
                        continue
                    seen.add(key)
                pending.append((arrival, pid, order, dress(sample)))
                order += 1
            pending.sort()
            ready = bisect_left(pending, hi, key=_arrived)
            yield hi, pending[:ready]
            del pending[:ready]
        yield None, pending

    def patient_readings(self, patient: PatientProfile) -> Iterator[dict[str, Any]]:
        """One patient's readings in arrival order (see :meth:`patient_arrivals`)."""
        return (reading for _, reading in self.patient_arrivals(patient))

    def arrivals(self) -> Iterator[Arrival]:
        """Every patient's readings as they reach ingest, in arrival order (ties broken by
        patient id, then as :meth:`patient_arrivals` yields them).

        Merged six hours at a time: each patient's stream is advanced past the window's
        end, and the window's readings (already in order per patient) sorted together.
        """
        streams = [self._chunks(p) for p in self.patients]
        buffers: list[list[_Item]] = [[] for _ in streams]
        frontiers: list[datetime | None] = [self.start] * len(streams)
        live = list(range(len(streams)))
        edge = self.start
        while live:
            edge += _WINDOW
            window: list[_Item] = []
            for k in list(live):
                buffer = buffers[k]
                while (frontier := frontiers[k]) is not None and frontier < edge:
                    frontiers[k], items = next(streams[k])
                    buffer += items
                cut = bisect_left(buffer, edge, key=_arrived)
                window += buffer[:cut]
                del buffer[:cut]
                if frontiers[k] is None and not buffer:
                    live.remove(k)
            window.sort()
            for arrival, _, _, reading in window:
                yield arrival, reading

    def readings(self) -> Iterator[dict[str, Any]]:
        """Every patient's readings in arrival order: what ``pghd simulate`` posts."""
        return (reading for _, reading in self.arrivals())

    def episodes_of(self, patient_id: str) -> list[Episode]:
        """The labels of one patient."""
        return [e for e in self.episodes if e.patient_id == patient_id]


def generate_cohort(
    *,
    patients: int,
    days: float,
    end: datetime,
    seed: int = 1,
    episodes_fraction: float = 0.3,
    kinds: Sequence[EpisodeKind] | None = None,
    prefix: str = "sim",
    labels: bool = False,
) -> Cohort:
    """Plan a cohort of ``patients`` (ids ``{prefix}-0001``...) over the ``days`` before ``end``.

    ``round(patients * episodes_fraction)`` patients get one episode each, kinds dealt in turn
    from ``kinds`` (all kinds by default) so every kind appears when there are enough
    patients; a kind that does not fit the period falls back to the next one. ``labels``
    puts the true context (sleep, rest, activity) on readings, as an oracle would; without
    it they carry only what devices report. Nothing is generated until
    :meth:`Cohort.readings` is iterated.
    """
    if patients < 0 or days <= 0 or not 0 <= episodes_fraction <= 1:
        raise ValueError("need patients >= 0, days > 0 and 0 <= episodes_fraction <= 1")
    end = end.astimezone(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    rng = random.Random(f"{seed}:cohort")
    ids = [f"{prefix}-{n:04d}" for n in range(1, patients + 1)]
    deck = list(EpisodeKind) if kinds is None else list(kinds)
    rng.shuffle(deck)
    chosen = rng.sample(ids, k=round(patients * episodes_fraction)) if deck else []
    wanted = {pid: deck[n % len(deck)] for n, pid in enumerate(chosen)}
    profiles, schedules = [], {}
    for pid in ids:
        prng = random.Random(f"{seed}:{pid}")
        kind = wanted.get(pid)
        glucose = prng.random() < 0.35 or kind is EpisodeKind.HYPOGLYCAEMIA
        profile = make_profile(pid, rng=prng, glucose=glucose)
        order = [kind, *(k for k in deck if k is not kind)] if kind else []
        order = [k for k in order if k is not EpisodeKind.HYPOGLYCAEMIA or profile.glucose]
        profiles.append(profile)
        schedules[pid] = plan(profile, rng=prng, start=start, end=end, kinds=order)
    return Cohort(
        seed=seed,
        start=start,
        end=end,
        patients=tuple(profiles),
        episodes=tuple(e for pid in ids for e in schedules[pid].episodes),
        schedules=schedules,
        labels=labels,
    )
