"""Factories shared by the processors unit tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Context, Measurement, Source

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

MakeReading = Callable[..., Measurement]


@pytest.fixture
def make_reading() -> MakeReading:
    """Build measurements one minute apart with fresh event ids, taken at rest unless
    ``context`` says otherwise (``context=None``: no context, as most devices send)."""
    ids = count()

    def make(
        value: float | None = None,
        *,
        metric: Metric = Metric.HEART_RATE,
        patient_id: str = "p-1",
        event_id: str | None = None,
        context: Context | None = Context.REST,
        components: dict[str, float] | None = None,
    ) -> Measurement:
        i = next(ids)
        when = T0 + timedelta(minutes=i)
        return Measurement(
            event_id=event_id or f"e-{i}",
            patient_id=patient_id,
            metric=metric,
            value=value,
            components=components,
            unit=CATALOGUE[metric].unit,
            effective_time=when,
            received_at=when,
            source=Source(vendor="acme", device_id="watch-1"),
            context=context,
        )

    return make
