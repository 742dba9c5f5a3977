"""A shared cohort for the simulator tests (pure, so built once per module)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pghd.simulation import Cohort, generate_cohort

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="package")
def cohort() -> Cohort:
    return generate_cohort(patients=20, days=7, end=END, seed=7, episodes_fraction=0.5)


@pytest.fixture(scope="package")
def readings(cohort: Cohort) -> list[dict[str, Any]]:
    return list(cohort.readings())
