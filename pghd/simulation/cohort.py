"""A deterministic synthetic cohort: readings as clients post them, plus episode labels.

Pure: no clock, no I/O; ``random.Random`` seeded from ``seed`` and the patient id, so the same
arguments give the same readings. Each patient has personal levels, a sleep/wake rhythm,
activity bursts and hours the watch is not worn (:mod:`pghd.simulation.patient`); a share of
them carry one labelled episode (:mod:`pghd.simulation.episodes`). Readings are generated one
sleep/wake cycle at a time and merged across the cohort in time order, so a large cohort never
sits in memory at once.
"""

from __future__ import annotations

import hashlib
import heapq
import random
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

__all__ = ["Cohort", "generate_cohort", "render"]

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


def render(p: PatientProfile, sample: Sample, *, seed: int) -> dict[str, Any]:
    """Dress a sample as a ``ReadingIn`` dict, in the units this patient's devices use.

    Patients with US devices report temperature in ``[degF]`` and weight in ``[lb_av]``;
    some glucometers report ``mmol/L``. The ``event_id`` is a hash of seed, patient, metric
    and time, so a re-posted reading is the same event.
    """
    metric, value = sample.metric, sample.value
    unit = _UNIT[metric]
    reading: dict[str, Any] = {"patient_id": p.patient_id, "metric": metric.value}
    if isinstance(value, tuple):
        reading["systolic"], reading["diastolic"] = value
    else:
        if metric is Metric.BODY_TEMPERATURE and p.us_units:
            unit, value = "[degF]", round(value * 9 / 5 + 32, 1)
        elif metric is Metric.WEIGHT and p.us_units:
            unit, value = "[lb_av]", round(value / POUND_KG, 1)
        elif metric is Metric.BLOOD_GLUCOSE and p.glucose_mmol:
            unit, value = "mmol/L", round(value / GLUCOSE_MG_DL_PER_MMOL_L, 1)
        reading["value"] = value
    stamp = sample.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hashlib.sha256(f"{seed}|{p.patient_id}|{metric.value}|{stamp}".encode()).hexdigest()
    device = "watch" if metric in WEARABLE else _DEVICE[metric]
    reading.update(
        unit=unit,
        effective_time=stamp,
        device_id=f"{p.patient_id}-{device}",
        app="pghd-simulator",
        event_id=f"sim-{digest[:32]}",
    )
    if sample.context is not None:
        reading["context"] = sample.context.value
    return reading


@dataclass(frozen=True)
class Cohort:
    """A planned cohort: profiles, episode labels, and its readings generated on demand."""

    seed: int
    start: datetime
    end: datetime
    patients: tuple[PatientProfile, ...]
    episodes: tuple[Episode, ...]
    schedules: dict[str, Schedule] = field(repr=False)

    def patient_readings(self, patient: PatientProfile) -> Iterator[dict[str, Any]]:
        """One patient's readings in ``[start, end)``, in time order."""
        pid = patient.patient_id
        schedule = self.schedules[pid]
        extra = [
            sample
            for j, episode in enumerate(schedule.episodes)
            for sample in episode_samples(episode, rng=random.Random(f"{self.seed}:{pid}:ep:{j}"))
        ]
        for i in range(1, len(schedule.nights)):
            lo, hi = schedule.nights[i - 1][1], schedule.nights[i][1]
            if hi <= self.start or lo >= self.end:
                continue
            rng = random.Random(f"{self.seed}:{pid}:cycle:{i}")
            samples = cycle_samples(patient, schedule, i, rng=rng)
            samples += [e for e in extra if lo <= e.time < hi]
            seen: set[tuple[Metric, datetime]] = set()
            for sample in sorted(samples, key=lambda s: (s.time, s.metric.value)):
                key = (sample.metric, sample.time)
                if self.start <= sample.time < self.end and key not in seen:
                    seen.add(key)
                    yield render(patient, sample, seed=self.seed)

    def readings(self) -> Iterator[dict[str, Any]]:
        """Every patient's readings merged in time order (ties broken by patient id)."""
        return heapq.merge(
            *(self.patient_readings(p) for p in self.patients),
            key=lambda r: (r["effective_time"], r["patient_id"]),
        )

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
) -> Cohort:
    """Plan a cohort of ``patients`` (ids ``{prefix}-0001``...) over the ``days`` before ``end``.

    ``round(patients * episodes_fraction)`` patients get one episode each, kinds dealt in turn
    from ``kinds`` (all kinds by default) so every kind appears when there are enough
    patients; a kind that does not fit the period falls back to the next one. Nothing is
    generated until :meth:`Cohort.readings` is iterated.
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
    )
