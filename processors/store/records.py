"""The records of ``pghd.points.v1``: one patient's InfluxDB points of one judged batch.

A record is JSON (``schema_version`` 1), keyed by patient id, so the topic is partitioned
like ``pghd.measurements.v1``::

    {"schema_version": 1, "patient_id": "p-1",
     "lines": ["vitals,patient_id=p-1,... value=61 1733..."]}

``lines`` are InfluxDB line protocol with nanosecond timestamps, as influxdb-client's
``Point`` writes them (escaping included; built by :mod:`processors.store.line_protocol`),
so the store stage can send them as they are and name the one line InfluxDB refuses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict

from pghd.contracts import SCHEMA_VERSION, PatientId
from processors.points import InfluxPoint
from processors.store.line_protocol import to_line

__all__ = ["PointsRecord", "decode_record", "encode_records", "lines_of", "to_line"]


class PointsRecord(BaseModel):
    """The points one batch produced for one patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    patient_id: PatientId
    lines: list[str]


def encode_records(points: Iterable[InfluxPoint]) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` messages for ``points``: one per patient, in first-seen order.

    Every point must carry a ``patient_id`` tag (all that judging writes do).
    """
    by_patient: dict[str, list[str]] = defaultdict(list)
    for point in points:
        by_patient[point.tags["patient_id"]].append(to_line(point))
    return [
        (
            patient.encode(),
            orjson.dumps({"schema_version": SCHEMA_VERSION, "patient_id": patient, "lines": lines}),
        )
        for patient, lines in by_patient.items()
    ]


def decode_record(value: bytes | None) -> PointsRecord:
    """Parse one message of ``pghd.points.v1``; raises ``ValueError`` if it is not one."""
    if value is None:
        raise ValueError("message has no value (tombstone)")
    return PointsRecord.model_validate_json(value)


def lines_of(records: Sequence[PointsRecord]) -> list[str]:
    """Every line of ``records``, in order."""
    return [line for record in records for line in record.lines]
