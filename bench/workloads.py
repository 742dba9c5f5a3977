"""Readings for the benchmarks: plain heart-rate series for many patients."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import Measurement, Source

__all__ = ["encoded_measurements", "posted_readings"]


def _heart_rates(patients: int, per_patient: int, seed: int) -> list[tuple[str, datetime, float]]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=per_patient // 200 + 2)
    rows = []
    for i in range(per_patient):
        for p in range(patients):
            value = rng.gauss(68 + p % 15, 3)
            rows.append(
                (f"bench-{seed}-{p:05d}", start + timedelta(minutes=5 * i), round(value, 1))
            )
    return rows


def encoded_measurements(
    *, patients: int, per_patient: int, seed: int
) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs exactly as ingest writes them to ``pghd.measurements.v1``."""
    now = datetime.now(UTC)
    out = []
    for n, (patient, when, value) in enumerate(_heart_rates(patients, per_patient, seed)):
        m = Measurement(
            event_id=f"bench-{seed}-{n}",
            patient_id=patient,
            metric=Metric.HEART_RATE,
            value=value,
            unit="/min",
            effective_time=when,
            received_at=now,
            source=Source(vendor="bench"),
        )
        out.append((patient.encode(), wire.encode(m)))
    return out


def posted_readings(*, patients: int, per_patient: int, seed: int) -> list[dict[str, object]]:
    """The same kind of readings as a device posts them to ``POST /v1/measurements``."""
    return [
        {
            "patient_id": patient,
            "metric": "heart_rate",
            "value": value,
            "unit": "bpm",
            "effective_time": when.isoformat(),
            "device_id": "bench-watch",
        }
        for patient, when, value in _heart_rates(patients, per_patient, seed)
    ]
