"""A shared cohort for the simulator tests (pure, so built once per package), and helpers.

The cohort is 16 patients over 14 days, 14 of them with an episode: two of each kind (a
7-day drift of the resting heart rate needs a period of about 12 days to fit after the
first 40 %).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from pghd.simulation import Cohort, PatientProfile, generate_cohort
from pghd.simulation.patient import Move

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHARED = {"patients": 16, "days": 14.0, "end": END, "seed": 7, "episodes_fraction": 0.875}

Arrivals = list[tuple[datetime, dict[str, Any]]]


@pytest.fixture(scope="package")
def cohort() -> Cohort:
    return generate_cohort(**SHARED)  # type: ignore[arg-type]


@pytest.fixture(scope="package")
def arrivals(cohort: Cohort) -> Arrivals:
    return list(cohort.arrivals())


@pytest.fixture(scope="package")
def readings(arrivals: Arrivals) -> list[dict[str, Any]]:
    return [reading for _, reading in arrivals]


@pytest.fixture(scope="package")
def labelled() -> Cohort:
    return generate_cohort(**SHARED, labels=True)  # type: ignore[arg-type]


def when(reading: dict[str, Any], field: str = "effective_time") -> datetime:
    return datetime.fromisoformat(reading[field])


def of(
    readings: Iterable[dict[str, Any]], patient_id: str, metric: str, device: str = ""
) -> list[dict[str, Any]]:
    """One patient's readings of ``metric`` (from ``device`` if given), in time order."""
    chosen = [
        r
        for r in readings
        if r["patient_id"] == patient_id
        and r["metric"] == metric
        and (not device or r["device_id"] == f"{patient_id}-{device}")
    ]
    return sorted(chosen, key=when)


def inside(reading: dict[str, Any], moves: Iterable[Move]) -> Move | None:
    """The move a reading's time (or whole interval) falls in, if any."""
    start = when(reading)
    end = when(reading, "effective_end") if "effective_end" in reading else start
    return next((m for m in moves if m.start <= start and end <= m.end), None)


def find_patient(
    predicate: Callable[[PatientProfile, Cohort], bool], *, days: float = 14, patients: int = 60
) -> tuple[Cohort, PatientProfile]:
    """A planned cohort (no readings generated yet) and its first patient that fits."""
    cohort = generate_cohort(patients=patients, days=days, end=END, seed=11, episodes_fraction=0)
    found = next((p for p in cohort.patients if predicate(p, cohort)), None)
    assert found is not None, "no patient fits: widen the search"
    return cohort, found
