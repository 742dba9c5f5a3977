"""The healthy part of the cohort: valid, deterministic, ordered, realistic."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pghd.catalogue import Metric
from pghd.readings import ReadingIn, canonicalize
from pghd.simulation import Cohort, generate_cohort
from pghd.simulation.episodes import Episode

from .conftest import END


def _time(reading: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(reading["effective_time"])


def _in_episode(reading: dict[str, Any], episodes: list[Episode]) -> bool:
    when = _time(reading)
    return any(
        e.patient_id == reading["patient_id"] and e.start - timedelta(hours=2) <= when <= e.end
        for e in episodes
    )


_COHORT_DIGEST = """
import hashlib, json, sys
from datetime import datetime
from pghd.simulation import generate_cohort
cohort = generate_cohort(patients=3, days=2, end=datetime.fromisoformat(sys.argv[1]), seed=3)
document = [list(cohort.readings()), [e.model_dump(mode="json") for e in cohort.episodes]]
print(hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest())
"""


def _digest(cohort: Cohort) -> str:
    document = [list(cohort.readings()), [e.model_dump(mode="json") for e in cohort.episodes]]
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def test_same_seed_same_readings_and_labels() -> None:
    """Same arguments, same cohort: in this process and in fresh ones with other hash seeds
    and time zones (a re-run of ``pghd simulate --end ...`` posts the same event ids)."""
    one = generate_cohort(patients=3, days=2, end=END, seed=3)
    other = generate_cohort(patients=3, days=2, end=END, seed=4)
    assert list(one.readings()) != list(other.readings())
    for seed, tz in (("1", "UTC"), ("2", "Pacific/Kiritimati")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": tz}
        out = subprocess.run(
            [sys.executable, "-c", _COHORT_DIGEST, END.isoformat()],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=120,
        )
        assert out.stdout.strip() == _digest(one), f"PYTHONHASHSEED={seed} TZ={tz}"


def test_every_reading_is_accepted_by_ingest_validation(readings: list[dict[str, Any]]) -> None:
    for reading in readings:
        canonicalize(ReadingIn.model_validate(reading), vendor="sim", received_at=END)


def test_event_ids_are_unique_and_stable(readings: list[dict[str, Any]]) -> None:
    ids = [r["event_id"] for r in readings]
    assert len(set(ids)) == len(ids)


def test_readings_are_chronological_and_inside_the_period(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    times = [_time(r) for r in readings]
    assert times == sorted(times)
    assert cohort.start <= times[0] and times[-1] < END
    assert times[-1] > END - timedelta(hours=1), "the period ends now, so data is recent"


def test_every_metric_and_the_unit_conversions_appear(readings: list[dict[str, Any]]) -> None:
    metrics = Counter(r["metric"] for r in readings)
    assert set(metrics) == {m.value for m in Metric}
    units = {r["unit"] for r in readings}
    assert {"[degF]", "mmol/L", "mg/dL", "Cel", "mmHg"} <= units
    per_patient_day = metrics["heart_rate"] / (20 * 7)
    assert 96 <= per_patient_day <= 288, "a heart rate every 5-15 minutes, less the gaps"
    assert metrics["sleep_duration"] <= 20 * 7 and metrics["weight"] <= 20 * 2


def test_heart_rate_is_lower_at_night(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    episodes = list(cohort.episodes)
    for patient in cohort.patients[:5]:
        hr = [
            r
            for r in readings
            if r["patient_id"] == patient.patient_id
            and r["metric"] == "heart_rate"
            and not _in_episode(r, episodes)
        ]
        night = [r["value"] for r in hr if r["context"] == "sleep"]
        day = [r["value"] for r in hr if r["context"] == "rest"]
        assert statistics.mean(night) + 8 < statistics.mean(day)
        assert 50 <= statistics.mean(night) <= 85


def test_activity_raises_heart_rate_and_steps(readings: list[dict[str, Any]]) -> None:
    active_hr = [
        r["value"]
        for r in readings
        if r["metric"] == "heart_rate" and r.get("context") == "activity"
    ]
    assert active_hr and 100 <= statistics.mean(active_hr) <= 150
    steps = [r for r in readings if r["metric"] == "steps"]
    active = [r["value"] for r in steps if r.get("context") == "activity"]
    idle = [r["value"] for r in steps if r.get("context") is None]
    assert active and idle and statistics.mean(active) > 5 * statistics.mean(idle)


def test_personal_levels_differ(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    rhr: dict[str, list[float]] = {}
    for r in readings:
        if r["metric"] == "resting_heart_rate" and not _in_episode(r, list(cohort.episodes)):
            rhr.setdefault(r["patient_id"], []).append(r["value"])
    means = [statistics.mean(v) for v in rhr.values()]
    assert all(54 <= m <= 82 for m in means)
    assert max(means) - min(means) > 8


def test_healthy_ranges(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    episodes = list(cohort.episodes)
    healthy = [r for r in readings if not _in_episode(r, episodes)]
    spo2 = [r["value"] for r in healthy if r["metric"] == "spo2"]
    resp = [r["value"] for r in healthy if r["metric"] == "respiratory_rate"]
    temps = [
        canonicalize(ReadingIn.model_validate(r), vendor="s", received_at=END).value
        for r in healthy
        if r["metric"] == "body_temperature"
    ]
    assert min(spo2) >= 95 and max(spo2) <= 99
    assert min(resp) >= 12 and max(resp) <= 18
    assert all(t is not None and 36.2 <= t <= 37.25 for t in temps)


def test_watch_gaps_exist(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    longest: list[timedelta] = []
    for patient in cohort.patients:
        times = [
            _time(r)
            for r in readings
            if r["patient_id"] == patient.patient_id and r["metric"] == "heart_rate"
        ]
        longest.append(max(b - a for a, b in itertools.pairwise(times)))
    assert sum(gap > timedelta(hours=1, minutes=30) for gap in longest) >= 5


def test_one_sleep_duration_per_night(readings: list[dict[str, Any]]) -> None:
    nights = Counter(
        (r["patient_id"], r["effective_time"][:10])
        for r in readings
        if r["metric"] == "sleep_duration"
    )
    assert max(nights.values()) == 1
    hours = [r["value"] for r in readings if r["metric"] == "sleep_duration"]
    assert min(hours) >= 3.5 and max(hours) <= 10
