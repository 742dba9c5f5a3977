"""Injected episodes: labelled, and visible in the readings."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from pghd.readings import ReadingIn, canonicalize
from pghd.simulation import Cohort, EpisodeKind, generate_cohort
from pghd.simulation.episodes import Episode
from pghd.simulation.patient import StepFormat

from .conftest import END, of, when


def _of(readings: list[dict[str, Any]], episode: Episode, metric: str) -> list[dict[str, Any]]:
    return [
        r
        for r in readings
        if r["patient_id"] == episode.patient_id
        and r["metric"] == metric
        and episode.start <= when(r) <= episode.end
    ]


def _canonical(reading: dict[str, Any]) -> float:
    value = canonicalize(ReadingIn.model_validate(reading), vendor="s", received_at=END).value
    assert value is not None
    return value


def _episodes(cohort: Cohort, kind: EpisodeKind) -> list[Episode]:
    found = [e for e in cohort.episodes if e.kind is kind]
    assert found, f"no {kind} episode"
    return found


def _nightly(
    cohort: Cohort, readings: list[dict[str, Any]], patient_id: str
) -> list[tuple[datetime, float]]:
    """Each night's median heart rate while asleep, by the night's start."""
    hr = of(readings, patient_id, "heart_rate")
    out = []
    for bed, rise in cohort.schedules[patient_id].nights:
        values = [r["value"] for r in hr if bed <= when(r) < rise]
        if len(values) >= 20:
            out.append((bed, statistics.median(values)))
    return out


def test_labels_cover_the_chosen_share_and_every_kind(cohort: Cohort) -> None:
    assert len(cohort.episodes) == 14
    assert len({e.patient_id for e in cohort.episodes}) == 14
    assert Counter(e.kind for e in cohort.episodes) == {kind: 2 for kind in EpisodeKind}
    for e in cohort.episodes:
        assert cohort.start + (cohort.end - cohort.start) * 0.4 <= e.start <= e.end < cohort.end
        assert e.metrics


def test_fever_raises_temperature_and_heart_rate(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    for fever in _episodes(cohort, EpisodeKind.FEVER):
        assert timedelta(days=1) <= fever.end - fever.start <= timedelta(days=3)
        temps = [_canonical(r) for r in _of(readings, fever, "body_temperature")]
        assert temps and all(38.25 <= t <= 39.85 for t in temps)
        before = [
            r["value"]
            for r in of(readings, fever.patient_id, "resting_heart_rate")
            if when(r) < fever.start
        ]
        during = [r["value"] for r in _of(readings, fever, "resting_heart_rate")]
        assert during and min(during) > max(before)


def test_tachycardia_at_rest_while_still(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    for episode in _episodes(cohort, EpisodeKind.TACHYCARDIA):
        pid = episode.patient_id
        assert timedelta(minutes=40) <= episode.end - episode.start <= timedelta(minutes=120)
        hr = _of(readings, episode, "heart_rate")
        assert len(hr) >= 7
        assert all(125 <= r["value"] <= 150 for r in hr)
        schedule = cohort.schedules[pid]
        assert not any(bed <= episode.start < rise for bed, rise in schedule.nights), "awake"
        assert not [
            m
            for m in schedule.moves
            if m.end > episode.start - timedelta(minutes=90) and m.start < episode.end
        ], "no workout before it"
        steps = [
            r
            for r in of(readings, pid, "steps")
            if when(r, "effective_end") > episode.start and when(r) < episode.end
        ]
        patient = next(p for p in cohort.patients if p.patient_id == pid)
        if patient.watch is StepFormat.SAMPLES and patient.phone in (None, StepFormat.SAMPLES):
            assert steps == [], "Apple-like devices send nothing when there were no steps"
        else:
            assert steps and all(r["value"] == 0 for r in steps if r["device_id"][-5:] == "watch")
        assert all(r["value"] == 0 for r in steps)


def test_tachycardia_with_both_kinds_of_step_device() -> None:
    cohort = generate_cohort(
        patients=12, days=6, end=END, seed=3, episodes_fraction=1.0, kinds=[EpisodeKind.TACHYCARDIA]
    )
    forms = set()
    for patient in cohort.patients:
        (episode,) = cohort.episodes_of(patient.patient_id)
        steps = [
            r
            for r in cohort.patient_readings(patient)
            if r["metric"] == "steps"
            and r["device_id"].endswith("-watch")
            and when(r, "effective_end") > episode.start
            and when(r) < episode.end
        ]
        forms.add(patient.watch)
        if patient.watch is StepFormat.SAMPLES:
            assert steps == []
        else:
            assert steps and all(r["value"] == 0 for r in steps), "buckets of zero steps"
    assert StepFormat.SAMPLES in forms and len(forms) >= 2


def test_rhr_rise_raises_night_and_resting_heart_rate_for_days(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    for episode in _episodes(cohort, EpisodeKind.RHR_RISE):
        assert timedelta(days=3) <= episode.end - episode.start <= timedelta(days=6)
        assert set(episode.metrics) == {"heart_rate", "resting_heart_rate"}
        nights = _nightly(cohort, readings, episode.patient_id)
        before = [hr for bed, hr in nights if bed < episode.start]
        during = [
            hr
            for bed, hr in nights
            if episode.start <= bed and bed + timedelta(hours=10) <= episode.end
        ]
        assert len(before) >= 3 and len(during) >= 2
        assert statistics.median(during) >= statistics.median(before) + 9
        rhr_before = [
            r["value"]
            for r in of(readings, episode.patient_id, "resting_heart_rate")
            if when(r) < episode.start
        ]
        rhr_during = [r["value"] for r in _of(readings, episode, "resting_heart_rate")]
        assert statistics.median(rhr_during) >= statistics.median(rhr_before) + 8


def test_rhr_rise_raises_exercise_heart_rate_too() -> None:
    cohort = generate_cohort(
        patients=10, days=14, end=END, seed=5, episodes_fraction=1.0, kinds=[EpisodeKind.RHR_RISE]
    )
    raised = []
    for patient in cohort.patients:
        (episode,) = cohort.episodes_of(patient.patient_id)
        walks = [
            m for m in cohort.schedules[patient.patient_id].moves if m.kind in ("walk", "commute")
        ]
        hr = of(cohort.patient_readings(patient), patient.patient_id, "heart_rate")
        gaps: dict[bool, list[float]] = {True: [], False: []}
        for r in hr:
            move = next(
                (m for m in walks if m.start + timedelta(minutes=5) <= when(r) < m.end), None
            )
            if move is not None:
                gaps[episode.covers(when(r))].append(r["value"] - move.hr)
        if len(gaps[True]) >= 5 and len(gaps[False]) >= 5:
            raised.append(statistics.median(gaps[True]) - statistics.median(gaps[False]))
    assert len(raised) >= 3 and statistics.median(raised) >= 7


def test_rhr_drift_rises_a_week_then_stays(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    for episode in _episodes(cohort, EpisodeKind.RHR_DRIFT):
        assert episode.end - episode.start == timedelta(days=7)
        assert episode.params["per_day"] == 1.5
        nights = _nightly(cohort, readings, episode.patient_id)
        before = statistics.median([hr for bed, hr in nights if bed < episode.start])
        later = [(bed, hr) for bed, hr in nights if bed >= episode.start]
        assert len(later) >= 4
        for bed, hr in later:
            days = min(7.0, (bed + timedelta(hours=4) - episode.start) / timedelta(days=1))
            assert hr - before == pytest.approx(1.5 * days, abs=3.5), bed
        assert max(hr for _, hr in later) >= before + 7, "about 10 bpm up after a week"
        assert all(hr >= before + 7 for bed, hr in later if bed >= episode.end), "and stays"


def test_a_kind_that_does_not_fit_falls_back_to_the_next() -> None:
    cohort = generate_cohort(
        patients=3,
        days=7,
        end=END,
        episodes_fraction=1.0,
        kinds=[EpisodeKind.RHR_DRIFT, EpisodeKind.RHR_RISE],
    )
    assert {e.kind for e in cohort.episodes} == {EpisodeKind.RHR_RISE}, "7 days of drift: no room"


def test_desaturation_through_a_night(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    for episode in _episodes(cohort, EpisodeKind.DESATURATION):
        spo2 = _of(readings, episode, "spo2")
        assert len(spo2) >= 8
        assert all(85 <= r["value"] <= 90 and "context" not in r for r in spo2)


def test_hypertensive_reading(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    for episode in _episodes(cohort, EpisodeKind.HYPERTENSIVE):
        bp = _of(readings, episode, "blood_pressure")
        assert len(bp) == 1
        assert 180 <= bp[0]["systolic"] <= 220 and 110 <= bp[0]["diastolic"] <= 130


def test_hypoglycaemia_for_an_hour(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    for episode in _episodes(cohort, EpisodeKind.HYPOGLYCAEMIA):
        assert episode.end - episode.start == timedelta(hours=1)
        glucose = [_canonical(r) for r in _of(readings, episode, "blood_glucose")]
        assert len(glucose) >= 4 and all(45 <= g <= 65 for g in glucose)


def test_oracle_labels_on_episode_readings(labelled: Cohort) -> None:
    readings = list(labelled.readings())
    for episode in _episodes(labelled, EpisodeKind.TACHYCARDIA):
        assert {r["context"] for r in _of(readings, episode, "heart_rate")} == {"rest"}
    for episode in _episodes(labelled, EpisodeKind.DESATURATION):
        assert {r["context"] for r in _of(readings, episode, "spo2")} == {"sleep"}


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_fraction_bounds(fraction: float) -> None:
    cohort = generate_cohort(patients=6, days=3, end=END, episodes_fraction=fraction)
    assert len(cohort.episodes) == round(6 * fraction)


def test_only_the_asked_kinds_and_short_periods() -> None:
    cohort = generate_cohort(
        patients=4, days=1, end=END, episodes_fraction=1.0, kinds=[EpisodeKind.FEVER]
    )
    assert len(cohort.episodes) == 4
    assert {e.kind for e in cohort.episodes} == {EpisodeKind.FEVER}
    assert all(e.end <= cohort.end for e in cohort.episodes)
    assert sum(1 for _ in cohort.readings()) > 4 * 150
