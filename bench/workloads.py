"""Readings for the benchmarks: plain heart-rate series for many patients."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pghd.catalogue import Metric
from pghd.contracts import Measurement, Source
from pghd.envelope import encode_readings

__all__ = ["encoded_measurements", "enveloped_requests", "posted_readings"]


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
    *, patients: int, per_patient: int, seed: int, per_request: int = 1
) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs exactly as ingest writes them to ``pghd.measurements.v1``.

    ``per_request`` 1: one record per reading (``PGHD_INGEST_ENVELOPE=v1``); more: as a
    phone that syncs every ``per_request`` readings (5-minute heart rates, so 12 is an
    hourly sync) posts them, one envelope record per patient and sync (:mod:`pghd.envelope`).
    """
    readings = _measurements(patients=patients, per_patient=per_patient, seed=seed)
    if per_request == 1:
        return encode_readings(readings, envelope="v1")
    rounds: dict[str, list[Measurement]] = {}
    out: list[tuple[bytes, bytes]] = []
    for m in readings:  # the readings come round by round: every patient's i-th, then (i+1)-th
        held = rounds.setdefault(m.patient_id, [])
        held.append(m)
        if len(held) == per_request:
            out.extend(encode_readings(held))
            held.clear()
    out.extend(r for held in rounds.values() if held for r in encode_readings(held))
    return out


def enveloped_requests(
    *, patients: int, per_patient: int, seed: int, batch: int
) -> list[tuple[bytes, bytes]]:
    """The records ingest writes for :func:`posted_readings` posted ``batch`` at a time:
    one envelope per patient per request (:mod:`pghd.envelope`)."""
    readings = _measurements(patients=patients, per_patient=per_patient, seed=seed)
    out: list[tuple[bytes, bytes]] = []
    for i in range(0, len(readings), batch):
        out.extend(encode_readings(readings[i : i + batch]))
    return out


def _measurements(*, patients: int, per_patient: int, seed: int) -> list[Measurement]:
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
        out.append(m)
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
