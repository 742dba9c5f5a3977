"""Injected episodes: labelled, and visible in the readings."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from pghd.readings import ReadingIn, canonicalize
from pghd.simulation import Cohort, EpisodeKind, generate_cohort
from pghd.simulation.episodes import Episode

from .conftest import END


def _of(readings: list[dict[str, Any]], episode: Episode, metric: str) -> list[dict[str, Any]]:
    return [
        r
        for r in readings
        if r["patient_id"] == episode.patient_id
        and r["metric"] == metric
        and episode.start <= datetime.fromisoformat(r["effective_time"]) <= episode.end
    ]


def _canonical(reading: dict[str, Any]) -> float:
    value = canonicalize(ReadingIn.model_validate(reading), vendor="s", received_at=END).value
    assert value is not None
    return value


def _episode(cohort: Cohort, kind: EpisodeKind) -> Episode:
    found = [e for e in cohort.episodes if e.kind is kind]
    assert found, f"no {kind} episode"
    return found[0]


def test_labels_cover_the_chosen_share_and_every_kind(cohort: Cohort) -> None:
    assert len(cohort.episodes) == 10
    assert len({e.patient_id for e in cohort.episodes}) == 10
    assert Counter(e.kind for e in cohort.episodes) == {kind: 2 for kind in EpisodeKind}
    for e in cohort.episodes:
        assert cohort.start + (cohort.end - cohort.start) * 0.4 <= e.start <= e.end < cohort.end
        assert e.metrics


def test_fever_raises_temperature_and_heart_rate(
    cohort: Cohort, readings: list[dict[str, Any]]
) -> None:
    fever = _episode(cohort, EpisodeKind.FEVER)
    assert timedelta(days=1) <= fever.end - fever.start <= timedelta(days=3)
    temps = [_canonical(r) for r in _of(readings, fever, "body_temperature")]
    assert temps and all(38.25 <= t <= 39.85 for t in temps)
    before = [
        r["value"]
        for r in readings
        if r["patient_id"] == fever.patient_id
        and r["metric"] == "resting_heart_rate"
        and datetime.fromisoformat(r["effective_time"]) < fever.start
    ]
    during = [r["value"] for r in _of(readings, fever, "resting_heart_rate")]
    assert during and min(during) > max(before)


def test_tachycardia_at_rest(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    episode = _episode(cohort, EpisodeKind.TACHYCARDIA)
    hr = _of(readings, episode, "heart_rate")
    assert len(hr) >= 15
    assert all(130 <= r["value"] <= 160 and r["context"] == "rest" for r in hr)


def test_desaturation_through_a_night(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    episode = _episode(cohort, EpisodeKind.DESATURATION)
    spo2 = _of(readings, episode, "spo2")
    assert len(spo2) >= 8
    assert all(85 <= r["value"] <= 90 and r["context"] == "sleep" for r in spo2)


def test_hypertensive_reading(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    episode = _episode(cohort, EpisodeKind.HYPERTENSIVE)
    bp = _of(readings, episode, "blood_pressure")
    assert len(bp) == 1
    assert 180 <= bp[0]["systolic"] <= 220 and 110 <= bp[0]["diastolic"] <= 130


def test_hypoglycaemia_for_an_hour(cohort: Cohort, readings: list[dict[str, Any]]) -> None:
    episode = _episode(cohort, EpisodeKind.HYPOGLYCAEMIA)
    assert episode.end - episode.start == timedelta(hours=1)
    glucose = [_canonical(r) for r in _of(readings, episode, "blood_glucose")]
    assert len(glucose) >= 4 and all(45 <= g <= 65 for g in glucose)


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
