"""The one Faust codec of this service: a record of ``pghd.measurements.v1`` (one reading or
an envelope of one patient's readings, :mod:`pghd.envelope`; or an erasure marker,
:mod:`pghd.erasure`) <-> its readings.

Decoding never raises: a payload that is not a valid measurement decodes to an
:class:`Undecodable` marker carrying the bytes and the reason, so the agent can send it
to the dead-letter topic and go on. Besides the contract's own validation the codec
refuses non-finite values and values outside the channel's physiologically possible range.
Encoding takes any pydantic contract model (via :func:`pghd.wire.encode`) or bytes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import orjson
from faust.serializers import codecs
from pydantic import BaseModel, ValidationError

from pghd import wire
from pghd.catalogue import CATALOGUE
from pghd.contracts import Measurement
from pghd.envelope import ENVELOPE_VERSION, envelope_items, envelope_readings
from pghd.erasure import ErasureMarker, decode_marker, is_marker

__all__ = [
    "CODEC_NAME",
    "MeasurementCodec",
    "Undecodable",
    "decode_measurement",
    "decode_record",
]

logger = logging.getLogger(__name__)

CODEC_NAME = "pghd_measurement"
_MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A message value that is not a valid measurement, and why."""

    payload: bytes
    reason: str


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _range_problem(measurement: Measurement) -> str | None:
    specs = CATALOGUE[measurement.metric].channels
    for spec, (channel, value) in zip(specs, measurement.channels(), strict=True):
        low, high = spec.possible
        if not math.isfinite(value):
            return f"{channel}: value must be a finite number"
        if not low <= value <= high:
            return f"{channel}: value {value} is outside the possible range [{low}, {high}]"
    return None


def decode_measurement(payload: bytes | None) -> Measurement | Undecodable:
    """Parse and validate ``payload`` as one measurement; never raises."""
    if payload is None:
        return Undecodable(payload=b"", reason="message has no value (tombstone)")
    try:
        measurement = wire.decode(Measurement, payload)
    except ValidationError as exc:
        reason = f"not a valid Measurement: {_validation_reason(exc)}"
        return Undecodable(payload=payload, reason=reason[:_MAX_REASON])
    except Exception as exc:  # decoding must not stop the stream, whatever the input
        return Undecodable(payload=payload, reason=f"cannot decode: {exc!r}"[:_MAX_REASON])
    return _checked(measurement, payload)


def _checked(measurement: Measurement, payload: bytes | None) -> Measurement | Undecodable:
    """``measurement``, or why its value is impossible (``payload``: its bytes; None: the
    reading's own JSON, made only then)."""
    problem = _range_problem(measurement)
    if problem is not None:
        return Undecodable(payload=payload or wire.encode(measurement), reason=problem)
    return measurement


def decode_record(payload: bytes | None) -> list[Measurement | ErasureMarker | Undecodable]:
    """The readings of one record of either shape (:mod:`pghd.envelope`), each validated on
    its own: a bad reading in an envelope is one :class:`Undecodable`, the others stand.
    An erasure marker (:mod:`pghd.erasure`) decodes to itself. Never raises."""
    if payload is None:
        return [Undecodable(payload=b"", reason="message has no value (tombstone)")]
    if is_marker(payload):
        try:
            return [decode_marker(payload)]
        except ValueError as exc:
            return [Undecodable(payload=payload, reason=str(exc)[:_MAX_REASON])]
    valid = envelope_readings(payload)  # the usual case: an envelope of valid readings
    if valid is not None:
        return [_checked(m, None) for m in valid]
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get("schema_version") != ENVELOPE_VERSION:
        return [decode_measurement(payload)]
    try:
        items = envelope_items(data)  # the one-pass path above refused it: say which
    except Exception as exc:  # decoding must not stop the stream, whatever the input
        return [Undecodable(payload=payload, reason=f"cannot decode: {exc}"[:_MAX_REASON])]
    out: list[Measurement | ErasureMarker | Undecodable] = []
    for item in items:
        if isinstance(item, tuple):
            raw, reason = item
            out.append(Undecodable(payload=raw, reason=reason[:_MAX_REASON]))
        else:
            out.append(_checked(item, None))
    return out


class MeasurementCodec(codecs.Codec):
    """Faust codec: bytes to :class:`Measurement` (or :class:`Undecodable`), models to bytes."""

    def _loads(self, s: bytes) -> Any:
        return decode_record(s)

    def _dumps(self, s: Any) -> bytes:
        if isinstance(s, BaseModel):
            return wire.encode(s)
        if isinstance(s, Undecodable):
            return s.payload
        if isinstance(s, bytes):
            return s
        if isinstance(s, list) and len(s) == 1:
            return self._dumps(s[0])
        raise TypeError(f"cannot encode {type(s).__name__} as a measurement")


codecs.register(CODEC_NAME, MeasurementCodec())
