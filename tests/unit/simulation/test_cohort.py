"""The healthy part of the cohort: valid, deterministic, in arrival order, realistic."""

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

import pytest

from pghd.catalogue import Metric
from pghd.readings import ReadingIn, canonicalize
from pghd.simulation import Cohort, PatientProfile, generate_cohort
from pghd.simulation import cohort as cohort_module
from pghd.simulation import patient as patient_module
from pghd.simulation.episodes import Episode
from pghd.simulation.patient import WORKOUTS, StepFormat

from .conftest import END, Arrivals, find_patient, inside, of, when


def _in_episode(reading: dict[str, Any], episodes: list[Episode]) -> bool:
    at = when(reading)
    return any(
        e.patient_id == reading["patient_id"] and e.start - timedelta(hours=2) <= at <= e.end
        for e in episodes
    )


def _hr_affected(reading: dict[str, Any], episodes: list[Episode]) -> bool:
    """Whether an episode may move this reading's heart rate (a drift stays up after it)."""
    at = when(reading)
    return any(
        e.patient_id == reading["patient_id"]
        and e.start - timedelta(hours=2) <= at
        and (at <= e.end or e.kind == "rhr_drift")
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


def test_every_reading_is_accepted_by_ingest_validation(arrivals: Arrivals) -> None:
    """Received when it arrives: an interval never ends after its arrival, nothing is late
    for the retention of a fortnight."""
    for arrived, reading in arrivals:
        canonicalize(
            ReadingIn.model_validate(reading),
            vendor="sim",
            received_at=arrived,
            max_age=timedelta(days=15),
        )


def test_event_ids_are_unique(readings: list[dict[str, Any]]) -> None:
    ids = [r["event_id"] for r in readings]
    assert len(set(ids)) == len(ids)


def test_readings_come_in_arrival_order_inside_the_period(
    cohort: Cohort, arrivals: Arrivals, readings: list[dict[str, Any]]
) -> None:
    times = [arrived for arrived, _ in arrivals]
    assert times == sorted(times)
    assert list(cohort.readings()) == readings
    for (a, one), (b, other) in itertools.pairwise(arrivals):
        assert a < b or one["patient_id"] <= other["patient_id"], "ties by patient id"
    for arrived, reading in arrivals:
        taken = when(reading, "effective_end") if "effective_end" in reading else when(reading)
        assert cohort.start <= when(reading) and taken < arrived < END
        assert reading["effective_time"].endswith("Z")
    assert times[-1] > END - timedelta(hours=1), "the period ends now, so data is recent"
    patient = cohort.patients[0]
    mine = list(cohort.patient_arrivals(patient))
    assert mine == [(a, r) for a, r in arrivals if r["patient_id"] == patient.patient_id]
    assert list(cohort.patient_readings(patient)) == [r for _, r in mine]


def test_most_readings_arrive_within_a_minute_and_late_batches_hours_later(
    cohort: Cohort, arrivals: Arrivals
) -> None:
    lags = Counter[str]()
    late: dict[tuple[str, datetime], list[dict[str, Any]]] = {}
    for arrived, reading in arrivals:
        taken = when(reading, "effective_end") if "effective_end" in reading else when(reading)
        lag = arrived - taken
        if lag <= timedelta(seconds=60):
            lags["prompt"] += 1
        elif lag >= timedelta(hours=1) and reading["metric"] != "sleep_duration":
            lags["late"] += 1
            late.setdefault((reading["patient_id"], arrived), []).append(reading)
        else:
            lags["other"] += 1
            assert reading["metric"] in ("sleep_duration", "steps", "heart_rate")
    assert lags["prompt"] > 0.95 * len(arrivals)
    assert lags["late"] > 100
    batches = [batch for batch in late.values() if len(batch) >= 10]
    assert len(batches) >= 3, "a late sync delivers hours of readings at once"
    assert {r["metric"] for batch in late.values() for r in batch} == {"steps", "heart_rate"}
    for (pid, _), batch in late.items():
        assert cohort.patients[int(pid[-4:]) - 1].late_sync > 0
        spans = [when(r) for r in batch]
        assert max(spans) - min(spans) <= timedelta(hours=6)
    # so arrival order is not effective-time order
    out_of_order = 0
    for patient in cohort.patients:
        times = [when(r) for r in cohort.patient_readings(patient) if r["metric"] == "steps"]
        out_of_order += sum(b < a - timedelta(hours=1) for a, b in itertools.pairwise(times))
    assert out_of_order >= 3


def test_every_metric_and_the_unit_conversions_appear(readings: list[dict[str, Any]]) -> None:
    metrics = Counter(r["metric"] for r in readings)
    assert set(metrics) == {m.value for m in Metric}
    units = {r["unit"] for r in readings}
    assert {"[degF]", "mmol/L", "mg/dL", "Cel", "mmHg"} <= units
    per_patient_day = metrics["heart_rate"] / (16 * 14)
    assert 200 <= per_patient_day <= 340, "a heart rate every ~5 minutes, less the gaps"
    assert metrics["sleep_duration"] <= 16 * 14 and metrics["weight"] <= 16 * 3, "weekly"


def test_only_an_apple_like_watch_sends_a_context_on_some_heart_rates(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    apple = {p.patient_id for p in cohort.patients if p.apple}
    assert apple and len(apple) < len(cohort.patients)
    labelled = [r for r in readings if "context" in r]
    assert labelled and {r["patient_id"] for r in labelled} <= apple
    assert {r["metric"] for r in labelled} == {"heart_rate"}
    for pid in apple:
        schedule = cohort.schedules[pid]
        workouts = [m for m in schedule.moves if m.kind in WORKOUTS]
        hr = of(readings, pid, "heart_rate")
        shares = Counter(r.get("context") for r in hr)
        assert 0.3 * len(hr) <= shares[None] <= 0.8 * len(hr), "many samples carry none"
        assert shares["rest"] > 0.15 * len(hr)
        asleep = [r for r in hr if any(bed <= when(r) < rise for bed, rise in schedule.nights)]
        sedentary = sum(r.get("context") == "rest" for r in asleep)
        assert 0.15 * len(asleep) <= sedentary <= 0.45 * len(asleep), "still in bed: sometimes"
        for r in hr:
            move = inside(r, schedule.moves)
            if r.get("context") == "activity":
                assert inside(r, workouts) is not None, "active: only in a workout"
            if r.get("context") == "rest":
                assert move is None, "sedentary: never while moving"
                recent = [m for m in schedule.moves if m.end <= when(r)]
                assert not recent or when(r) - recent[-1].end >= timedelta(minutes=5)
    runners = [p for p in apple if any(m.kind in WORKOUTS for m in cohort.schedules[p].moves)]
    assert runners and any(
        r.get("context") == "activity" for pid in runners for r in of(readings, pid, "heart_rate")
    )


def test_device_shares_and_habits() -> None:
    profiles = generate_cohort(patients=600, days=1, end=END, seed=5, episodes_fraction=0).patients
    share = Counter[str]()
    for p in profiles:
        share[p.watch] += 1
        share["phone"] += p.phone is not None
        share["late"] += p.late_sync > 0
        share["travels"] += p.travels
        if p.phone is not None and p.apple:
            assert p.phone is StepFormat.SAMPLES, "an iPhone beside an Apple-like watch"
    expected = {
        StepFormat.SAMPLES: 0.3,
        StepFormat.MINUTE: 0.2,
        StepFormat.QUARTER: 0.5,
        "phone": 0.2,
        "late": 0.25,
        "travels": 0.15,
    }
    for key, fraction in expected.items():
        assert share[key] / len(profiles) == pytest.approx(fraction, abs=0.05), key


def test_oracle_labels_are_the_true_context_on_the_same_readings(
    labelled: Cohort, readings: list[dict[str, Any]]
) -> None:
    oracle = list(labelled.readings())
    assert [{k: v for k, v in r.items() if k != "context"} for r in oracle] == [
        {k: v for k, v in r.items() if k != "context"} for r in readings
    ]
    hr = [r for r in oracle if r["metric"] == "heart_rate"]
    assert {r.get("context") for r in hr} == {"sleep", "rest", "activity"}
    episodes = list(labelled.episodes)
    for patient in labelled.patients[:6]:
        mine = [r for r in hr if r["patient_id"] == patient.patient_id]
        mine = [r for r in mine if not _hr_affected(r, episodes)]
        night = [r["value"] for r in mine if r["context"] == "sleep"]
        day = [r["value"] for r in mine if r["context"] == "rest"]
        assert statistics.median(night) + 8 < statistics.median(day)
        assert 50 <= statistics.median(night) <= 85
    active = [r["value"] for r in hr if r["context"] == "activity"]
    assert 100 <= statistics.mean(active) <= 165
    steps = [r for r in oracle if r["metric"] == "steps"]
    busy = [r["value"] for r in steps if r.get("context") == "activity"]
    idle = [r["value"] for r in steps if r.get("context") is None]
    assert busy and idle and statistics.mean(busy) > 5 * statistics.mean(idle)
    contexts = Counter((r["metric"], r.get("context")) for r in oracle)
    assert contexts[("sleep_duration", "sleep")] == contexts.total() - sum(
        n for (metric, _), n in contexts.items() if metric != "sleep_duration"
    )
    assert contexts[("resting_heart_rate", "rest")] > 0


def _span(reading: dict[str, Any]) -> float:
    return (when(reading, "effective_end") - when(reading)).total_seconds()


def test_steps_are_counts_over_intervals_in_each_devices_format(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    steps = [r for r in readings if r["metric"] == "steps"]
    assert all(_span(r) > 0 for r in steps)
    intervals = ("steps", "sleep_duration")
    assert all("effective_end" not in r for r in readings if r["metric"] not in intervals)
    seen = set()
    for p in cohort.patients:
        watch = of(steps, p.patient_id, "steps", "watch")
        seen.add(p.watch)
        if p.watch is StepFormat.SAMPLES:
            assert all(r["value"] >= 1 for r in watch), "Apple-like: only when there were steps"
            spans = {_span(r) for r in watch}
            assert len(spans) > 20 and max(spans) <= 600
        else:
            size = 60 if p.watch is StepFormat.MINUTE else 900
            assert {_span(r) for r in watch} == {size}
            assert all(when(r).timestamp() % size == 0 for r in watch)
            assert sum(r["value"] == 0 for r in watch) > len(watch) / 3, "zeros are sent"
            days = Counter(when(r).date() for r in watch)
            assert max(days.values()) == 86400 // size, "every bucket of a day"
    assert seen == set(StepFormat)


def _worn(reading: dict[str, Any], cohort: Cohort) -> bool:
    schedule = cohort.schedules[reading["patient_id"]]
    start, end = when(reading), when(reading, "effective_end")
    return not any(lo < end and start < hi for lo, hi in [*schedule.gaps, *schedule.absent])


def test_step_counts_follow_the_cadence_of_workouts() -> None:
    for form in (StepFormat.MINUTE, StepFormat.SAMPLES):

        def fits(p: PatientProfile, c: Cohort, form: StepFormat = form) -> bool:
            kinds = Counter(m.kind for m in c.schedules[p.patient_id].moves)
            return p.watch is form and kinds["run"] >= 2 and kinds["walk"] >= 1

        cohort, patient = find_patient(fits)
        moves = cohort.schedules[patient.patient_id].moves
        steps = of(cohort.patient_readings(patient), patient.patient_id, "steps", "watch")
        checked = Counter[str]()
        for r in steps:
            move = inside(r, moves)
            if move is None or not _worn(r, cohort) or _span(r) < 60:
                continue
            per_minute = r["value"] / (_span(r) / 60)
            assert per_minute == pytest.approx(move.cadence, rel=0.08), (form, move.kind)
            checked[move.kind] += 1
        assert checked["run"] >= 3 and checked["walk"] >= 3, checked
        runs = [m for m in moves if m.kind == "run"]
        walks = [m for m in moves if m.kind == "walk"]
        assert all(150 <= m.cadence <= 180 for m in runs)
        assert all(100 <= m.cadence <= 120 for m in walks)


def test_workouts_of_varied_kind_length_and_intensity() -> None:
    cohort = generate_cohort(patients=60, days=14, end=END, seed=11, episodes_fraction=0)
    workouts: dict[tuple[str, datetime], list[Any]] = {}
    for pid, schedule in cohort.schedules.items():
        for m in schedule.moves:
            key = (pid, m.start)
            previous = next(
                (k for k, v in workouts.items() if k[0] == pid and v[-1].end == m.start), None
            )
            if m.kind == "intervals" and previous is not None:
                workouts[previous].append(m)
            else:
                workouts[key] = [m]
    minutes: dict[str, list[float]] = {}
    for phases in workouts.values():
        kind = phases[0].kind
        minutes.setdefault(kind, []).append(
            (phases[-1].end - phases[0].start) / timedelta(minutes=1)
        )
        if kind == "intervals":
            hard = [m for m in phases if m.hr >= 150]
            easy = [m for m in phases if m.hr <= 125]
            assert hard and easy and len(hard) + len(easy) == len(phases)
            assert all(timedelta(0) < m.end - m.start <= timedelta(minutes=4) for m in phases)
    assert all(20 <= m <= 60.1 for m in minutes["walk"])
    assert all(20 <= m <= 90.1 for m in minutes["run"])
    assert any(m >= 60 for m in minutes["run"]), "some long runs"
    assert all(10 <= m <= 25.1 for m in minutes["commute"])
    commutes = [m.start for s in cohort.schedules.values() for m in s.moves if m.kind == "commute"]
    assert commutes and all(start.weekday() < 5 for start in commutes)


def test_sleep_arrives_as_sessions_after_waking(cohort: Cohort, arrivals: Arrivals) -> None:
    sessions = [(a, r) for a, r in arrivals if r["metric"] == "sleep_duration"]
    assert len(sessions) > 16 * 10
    for arrived, r in sessions:
        nights = cohort.schedules[r["patient_id"]].nights
        assert (when(r), when(r, "effective_end")) in nights, "falling asleep to waking"
        hours = _span(r) / 3600
        assert 0.85 * hours <= r["value"] < hours
        assert when(r, "effective_end") + timedelta(minutes=5) <= arrived
        assert arrived <= when(r, "effective_end") + timedelta(minutes=90)
        assert "context" not in r
    per_night = Counter((r["patient_id"], r["effective_time"]) for _, r in sessions)
    assert max(per_night.values()) == 1


def test_heart_rate_follows_sleep_the_clock_and_effort(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    episodes = list(cohort.episodes)
    asleep: list[float] = []
    still: list[float] = []
    walking: list[float] = []
    running: list[float] = []
    clock: dict[bool, list[float]] = {True: [], False: []}
    for p in cohort.patients:
        schedule = cohort.schedules[p.patient_id]
        for r in of(readings, p.patient_id, "heart_rate"):
            if _hr_affected(r, episodes):
                continue
            at = when(r)
            move = inside(r, schedule.moves)
            if any(lo <= at < hi for lo, hi in schedule.nights):
                asleep.append(r["value"] - p.resting_hr)
            elif move is None:
                recent = [m for m in schedule.moves if m.end <= at]
                if not recent or at - recent[-1].end > timedelta(minutes=30):
                    still.append(r["value"] - p.resting_hr)
                    wake = max(rise for _, rise in schedule.nights if rise <= at)
                    awake_for = (at - wake) / timedelta(hours=1)
                    if 0.5 <= awake_for < 2.5 or 7 <= awake_for < 11:
                        clock[awake_for > 5].append(r["value"] - p.resting_hr)
            elif at - move.start >= timedelta(minutes=4):
                (running if move.kind == "run" else walking).append(r["value"])
                if move.kind == "run":
                    assert r["value"] >= 125 or r["value"] - move.hr > 25  # or a spike
    assert statistics.median(asleep) < -1 and statistics.median(still) > 6
    assert statistics.median(still) - statistics.median(asleep) >= 8
    assert statistics.median(clock[True]) - statistics.median(clock[False]) >= 3, "circadian"
    assert 135 <= statistics.median(running) <= 175
    assert statistics.median(walking) < statistics.median(running) - 25


def test_heart_rate_rises_over_minutes_and_recovers_slowly() -> None:
    cohort, patient = find_patient(
        lambda p, c: sum(m.kind == "run" for m in c.schedules[p.patient_id].moves) >= 4
    )
    moves = cohort.schedules[patient.patient_id].moves
    hr = of(cohort.patient_readings(patient), patient.patient_id, "heart_rate")
    by_offset: dict[str, list[float]] = {}
    for run in (m for m in moves if m.kind == "run"):
        for r in hr:
            after_start = (when(r) - run.start) / timedelta(minutes=1)
            after_end = (when(r) - run.end) / timedelta(minutes=1)
            excess = r["value"] - patient.resting_hr - patient.day_hr_delta
            for name, lo, hi, since in (
                ("first minute", 0, 1, after_start),
                ("minutes 4-10", 4, 10, after_start),
                ("1-8 min after", 1, 8, after_end),
                ("15-40 min after", 15, 40, after_end),
            ):
                if lo <= since < hi:
                    by_offset.setdefault(name, []).append(excess)
    median = {name: statistics.median(values) for name, values in by_offset.items()}
    assert median["first minute"] < 0.8 * median["minutes 4-10"], "a rise over minutes"
    assert median["1-8 min after"] >= 12, "still raised a few minutes after stopping"
    assert median["15-40 min after"] < 0.5 * median["1-8 min after"]


def test_heart_rate_every_five_minutes_and_every_minute_in_a_workout(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    spacing: dict[bool, list[float]] = {True: [], False: []}
    for p in cohort.patients:
        workouts = [m for m in cohort.schedules[p.patient_id].moves if m.kind in WORKOUTS]
        for a, b in itertools.pairwise(of(readings, p.patient_id, "heart_rate")):
            both = inside(a, workouts) is not None and inside(a, workouts) is inside(b, workouts)
            spacing[both].append((when(b) - when(a)).total_seconds())
    assert 240 <= statistics.median(spacing[False]) <= 360
    assert 50 <= statistics.median(spacing[True]) <= 70


def test_artefacts_spikes_and_dropouts(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    spikes = dropouts = 0
    for p in cohort.patients:
        schedule = cohort.schedules[p.patient_id]
        hr = of(readings, p.patient_id, "heart_rate")
        for a, b, c in zip(hr, hr[1:], hr[2:], strict=False):
            near = when(c) - when(a) <= timedelta(minutes=13)
            if near and b["value"] >= max(a["value"], c["value"]) + 28:
                spikes += 1
        for a, b in itertools.pairwise(hr):
            gap = when(b) - when(a)
            covered = any(
                lo <= when(a) + gap / 2 < hi for lo, hi in [*schedule.gaps, *schedule.absent]
            )
            if timedelta(minutes=12) <= gap <= timedelta(minutes=45) and not covered:
                dropouts += 1
    assert spikes >= 5
    assert dropouts >= 16 * 4


def test_watch_gaps_nights_off_and_days_without_it(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    longest: list[timedelta] = []
    for patient in cohort.patients:
        times = [when(r) for r in of(readings, patient.patient_id, "heart_rate")]
        longest.append(max(b - a for a, b in itertools.pairwise(times)))
    assert sum(gap > timedelta(hours=1, minutes=30) for gap in longest) >= 5
    assert any(gap > timedelta(hours=20) for gap in longest), "a whole day without the watch"
    cohort, patient = find_patient(
        lambda p, c: (
            p.watch is not StepFormat.SAMPLES
            and bool(c.schedules[p.patient_id].absent)
            and bool(c.schedules[p.patient_id].gaps)
        )
    )
    schedule = cohort.schedules[patient.patient_id]
    mine = list(cohort.patient_readings(patient))
    for lo, hi in schedule.absent:
        assert not [r for r in mine if r["device_id"].endswith("-watch") and lo <= when(r) < hi]
        assert any(r["metric"] == "steps" for r in mine if hi <= when(r) < hi + timedelta(hours=1))
    for lo, hi in schedule.gaps:
        if any(a <= lo < b for a, b in schedule.absent):
            continue
        inside_gap = [r for r in mine if lo <= when(r) and when(r) + timedelta(minutes=15) <= hi]
        assert not [r for r in inside_gap if r["metric"] == "heart_rate"]
        watch_steps = [r for r in inside_gap if r["device_id"].endswith("-watch")]
        assert watch_steps and all(r["value"] == 0 for r in watch_steps), "off the wrist: zeros"


def test_some_nights_the_watch_is_off_then_a_normal_morning(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    found = 0
    for p in cohort.patients:
        schedule = cohort.schedules[p.patient_id]
        hr = [when(r) for r in of(readings, p.patient_id, "heart_rate")]
        for bed, rise in schedule.nights:
            off = any(lo < bed and rise < hi for lo, hi in schedule.gaps)
            if not off or not cohort.start < bed < rise + timedelta(hours=4) < cohort.end:
                continue
            found += 1
            assert not [t for t in hr if bed <= t < rise]
            assert [t for t in hr if rise + timedelta(hours=1) <= t < rise + timedelta(hours=4)]
    assert found >= 2


def test_a_phone_also_counts_the_same_walks() -> None:
    cohort, patient = find_patient(
        lambda p, c: (
            p.phone is StepFormat.QUARTER
            and sum(m.kind == "commute" for m in c.schedules[p.patient_id].moves) >= 4
        )
    )
    pid = patient.patient_id
    mine = list(cohort.patient_readings(patient))
    assert {r["device_id"] for r in mine if r["metric"] == "steps"} == {
        f"{pid}-watch",
        f"{pid}-phone",
    }
    schedule = cohort.schedules[pid]
    ratios = []
    off = [*schedule.gaps, *schedule.absent]
    for move in (m for m in schedule.moves if m.kind == "commute"):
        window = (move.start - timedelta(minutes=15), move.end + timedelta(minutes=15))
        if any(lo < window[1] and window[0] < hi for lo, hi in off):
            continue  # the watch was off the wrist: only the phone counted
        totals = Counter[str]()
        for r in mine:
            if (
                r["metric"] == "steps"
                and window[0] <= when(r)
                and when(r, "effective_end") <= window[1]
            ):
                totals[r["device_id"][-5:]] += r["value"]
        if totals["watch"] > 800:
            ratios.append(totals["phone"] / totals["watch"])
    assert len(ratios) >= 2
    assert all(0.6 <= ratio <= 1.1 for ratio in ratios), ratios
    share = sum(p.phone is not None for p in cohort.patients) / len(cohort.patients)
    assert 0.05 <= share <= 0.4


def _hour(at: datetime) -> float:
    return at.hour + at.minute / 60


def test_a_trip_shifts_the_whole_schedule_in_utc() -> None:
    cohort, patient = find_patient(
        lambda p, c: (
            (trip := c.schedules[p.patient_id].trip) is not None
            and c.start + timedelta(days=1) < trip.start
            and trip.end < c.end - timedelta(days=1)
        )
    )
    schedule = cohort.schedules[patient.patient_id]
    trip = schedule.trip
    assert trip is not None and 5 <= abs(trip.shift_hours) <= 9
    assert timedelta(days=2) <= trip.end - trip.start <= timedelta(days=9)
    sessions = of(cohort.patient_readings(patient), patient.patient_id, "sleep_duration")
    away = [s for s in sessions if trip.start < when(s) < trip.end - timedelta(hours=12)]
    home = [s for s in sessions if not trip.start - timedelta(days=1) < when(s) < trip.end]
    assert away and home
    shift = (_hour(when(away[-1])) - _hour(when(home[0]))) % 24
    assert min(shift, 24 - shift) >= 3.5, "falling asleep hours away from home's bedtime"
    assert all(s["effective_time"].endswith("Z") for s in sessions)


def test_personal_levels_differ(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    rhr: dict[str, list[float]] = {}
    for r in readings:
        if r["metric"] == "resting_heart_rate" and not _hr_affected(r, list(cohort.episodes)):
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


def test_readings_are_generated_as_they_are_consumed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cohort streams: the first readings need about a cycle per patient, not all of them."""
    calls = Counter[str]()
    real = patient_module.cycle_samples

    def counting(p: Any, schedule: Any, index: int, *, rng: Any) -> Any:
        calls[p.patient_id] += 1
        return real(p, schedule, index, rng=rng)

    monkeypatch.setattr(cohort_module, "cycle_samples", counting)
    cohort = generate_cohort(patients=30, days=30, end=END, seed=2)
    stream = cohort.readings()
    first = [next(stream) for _ in range(100)]
    assert len(first) == 100
    assert max(calls.values()) <= 3 and calls.total() <= 3 * 30
