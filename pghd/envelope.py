"""The records of ``pghd.measurements.v1``: one reading, or one patient's readings of a request.

Two shapes share the topic, both keyed by patient id:

- **version 1**, one :class:`~pghd.contracts.Measurement` per record (its JSON, with
  ``"schema_version": 1``);
- **version 2**, an envelope holding every reading one request brought for one patient::

      {"schema_version": 2, "patient_id": "p-1", "readings": [<Measurement JSON>, ...]}

  A POST of 1,000 readings for a handful of patients is a handful of records, so every
  consumer pays its per-record cost (Kafka, Faust, the commit) once per patient and request
  instead of once per reading. A request's records still all land before ingest answers.

Ingest writes version 2 (``PGHD_INGEST_ENVELOPE=v2``, the default); the processors read
both. Migrating a running deployment: upgrade the processors first (they read both shapes),
then ingest; set ``PGHD_INGEST_ENVELOPE=v1`` on ingest to keep writing single readings for
a consumer that reads only those. Each record carries a ``schema_version`` header with its
version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from pghd import wire
from pghd.contracts import Measurement

__all__ = [
    "ENVELOPE_VERSION",
    "Item",
    "decode_items",
    "decode_readings",
    "encode_readings",
    "envelope_items",
    "envelope_readings",
]

ENVELOPE_VERSION = 2
_MEASUREMENTS = TypeAdapter(list[Measurement])

#: One reading of a record: the measurement, or ``(its raw JSON, why it is not one)``.
Item = Measurement | tuple[bytes, str]


def encode_readings(
    readings: Sequence[Measurement], *, envelope: Literal["v1", "v2"] = "v2"
) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` records for ``readings``: with ``v2`` one per patient (in the order
    each patient first appears, readings in their order), with ``v1`` one per reading."""
    if envelope == "v1":
        return [(m.patient_id.encode(), wire.encode(m)) for m in readings]
    by_patient: dict[str, list[Measurement]] = {}
    for m in readings:
        by_patient.setdefault(m.patient_id, []).append(m)
    head = b'{"schema_version":%d,"patient_id":' % ENVELOPE_VERSION
    return [  # the readings serialised in one call per patient (pydantic-core), then framed
        (
            patient.encode(),
            b"".join(
                (
                    head,
                    orjson.dumps(patient),
                    b',"readings":',
                    _MEASUREMENTS.dump_json(items, exclude_none=True),
                    b"}",
                )
            ),
        )
        for patient, items in by_patient.items()
    ]


class _Envelope(BaseModel):
    schema_version: Literal[2]
    patient_id: str
    readings: list[Measurement]


_ENVELOPE = TypeAdapter(_Envelope)
_ENVELOPE_PREFIX = b'{"schema_version":%d,' % ENVELOPE_VERSION


def envelope_readings(payload: bytes) -> list[Measurement] | None:
    """The readings of a version 2 record as ingest writes it when every one of them is
    valid, in one validation pass; None otherwise (not that shape, or a reading is not
    valid: :func:`decode_items` then says which)."""
    if not payload.startswith(_ENVELOPE_PREFIX):
        return None
    try:
        readings = _ENVELOPE.validate_json(payload).readings
    except ValidationError:
        return None
    return readings or None


def decode_items(payload: bytes) -> list[Item]:
    """The readings of one record, each validated on its own; raises ``ValueError`` when
    the record is neither shape (not JSON, or an envelope without its list)."""
    valid = envelope_readings(payload)
    if valid is not None:
        return list(valid)
    data = orjson.loads(payload)
    if not isinstance(data, dict) or data.get("schema_version") != ENVELOPE_VERSION:
        return [Measurement.model_validate_json(payload)]
    return envelope_items(data)


def envelope_items(data: dict[str, object]) -> list[Item]:
    """The readings of a parsed version 2 record, each validated on its own (the path for a
    record :func:`envelope_readings` refused); raises ``ValueError`` without its list."""
    readings = data.get("readings")
    if not isinstance(readings, list) or not readings:
        raise ValueError("envelope: readings must be a non-empty list")
    items: list[Item] = []
    for raw in readings:
        try:
            items.append(Measurement.model_validate(raw))
        except ValidationError as exc:
            items.append((orjson.dumps(raw), _reason(exc)))
    return items


def decode_readings(payload: bytes) -> list[Measurement]:
    """Every reading of one record (either shape); raises ``ValueError`` (a
    ``ValidationError`` among them) when one is not valid."""
    out: list[Measurement] = []
    for item in decode_items(payload):
        if isinstance(item, tuple):
            raise ValueError(item[1])
        out.append(item)
    return out


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    return "not a valid Measurement: " + "; ".join(parts)
