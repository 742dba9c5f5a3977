"""InfluxDB points and anomaly ids: what judging writes, independent of the client library.

Measurements (see ``docs/detection.md`` and the dashboards' queries):

- ``vitals``: tags ``patient_id``, ``metric``, ``channel``, ``source`` (vendor), ``device``
  (the source's device id, ``unknown`` when it sent none), ``unit``; fields ``value``,
  ``event_id``, ``effective_end`` (RFC 3339, UTC) for an interval reading (steps, sleep)
  whose sender gave its end: the point's time is the interval's start, and an export
  (:mod:`pghd.export`) gives the reading back as the interval it was; and
  ``effective_precision`` (``year``, ``month``, ``day``, ``night``, ``morning``,
  ``afternoon``, ``evening``) when the sender gave a date, month, year or part of a day
  rather than an instant: the point's time is then the start of that span, in UTC. Two devices
  reporting at the same instant are two series, so two points; dashboards group by patient
  and metric to draw one line;
- ``baselines`` (built in :mod:`processors.judge`): tags ``patient_id``, ``channel``,
  ``context``; fields ``mean``, ``spread``, ``low``, ``high``, ``n``;
- ``anomalies``: tags ``patient_id``, ``metric``, ``channel``, ``detector``, ``severity``;
  fields ``score``, ``value``, ``explanation``, ``anomaly_id``;
- ``news2``: the partial NEWS2 aggregate (:mod:`processors.detectors.news2_aggregate`),
  tags ``patient_id``, ``partial`` (always ``"true"``), ``spo2_scale`` (``"1"``/``"2"``);
  integer fields ``score`` and ``parameters_count``, one integer field per vital that
  contributed (``respiratory_rate``, ``spo2``, ``systolic_bp``, ``pulse``, ``temperature``:
  its sub-score), and ``missing`` (the vitals it lacks, comma-separated, ``""`` if none);
  its time is that of the newest vital in it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from pghd.contracts import Anomaly, Measurement
from pghd.export.records import END_FIELD, PRECISION_FIELD, format_time
from processors.detectors.news2_aggregate import Aggregate

__all__ = [
    "NEWS2_FIELDS",
    "UNKNOWN_DEVICE",
    "InfluxPoint",
    "anomaly_id",
    "anomaly_point",
    "news2_point",
    "vital_point",
]

#: ``device`` tag of a reading whose source named no device.
UNKNOWN_DEVICE = "unknown"

#: NEWS2 parameter -> the field of its sub-score in the ``news2`` measurement.
NEWS2_FIELDS: dict[str, str] = {
    "respiration_rate": "respiratory_rate",
    "spo2_scale1": "spo2",
    "systolic_bp": "systolic_bp",
    "pulse": "pulse",
    "temperature": "temperature",
}


@dataclass(frozen=True, slots=True)
class InfluxPoint:
    """One InfluxDB point, independent of the client library."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str]
    time: datetime


def anomaly_id(*, patient_id: str, channel: str, event_id: str, source: str = "") -> str:
    """Deterministic id of the (at most one) anomaly of a reading's channel; ``source``
    (vendor and device) keeps two devices' equal event ids apart."""
    raw = f"pghd.anomaly.v1|{patient_id}|{channel}|{event_id}".encode()
    if source:
        raw += f"|{source}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def vital_point(reading: Measurement, *, channel: str, value: float) -> InfluxPoint:
    """The ``vitals`` point of one channel of ``reading``."""
    tags = {
        "patient_id": reading.patient_id,
        "metric": reading.metric.value,
        "channel": channel,
        "source": reading.source.vendor,
        "device": reading.source.device_id or UNKNOWN_DEVICE,
        "unit": reading.unit,
    }
    fields: dict[str, float | int | str] = {"value": float(value), "event_id": reading.event_id}
    if reading.effective_end is not None:
        fields[END_FIELD] = format_time(reading.effective_end)
    if reading.effective_precision is not None:
        fields[PRECISION_FIELD] = reading.effective_precision.value
    return InfluxPoint("vitals", tags, fields, reading.effective_time)


def anomaly_point(anomaly: Anomaly) -> InfluxPoint:
    """The ``anomalies`` point of ``anomaly`` (with its episode's ``phase`` tag and
    ``episode_id`` field when it has one: the dashboards draw episodes as regions)."""
    tags = {
        "patient_id": anomaly.patient_id,
        "metric": anomaly.metric.value,
        "channel": anomaly.channel,
        "detector": anomaly.detector,
        "severity": anomaly.severity.value,
    }
    fields: dict[str, float | int | str] = {
        "score": float(anomaly.score),
        "value": float(anomaly.value),
        "explanation": anomaly.explanation,
        "anomaly_id": anomaly.anomaly_id,
    }
    if anomaly.phase is not None:
        tags["phase"] = anomaly.phase.value
    if anomaly.episode_id is not None:
        fields["episode_id"] = anomaly.episode_id
    return InfluxPoint(measurement="anomalies", tags=tags, fields=fields, time=anomaly.observed_at)


def news2_point(patient_id: str, found: Aggregate) -> InfluxPoint:
    """The ``news2`` point of a partial aggregate (see the module docstring)."""
    fields: dict[str, float | int | str] = {
        "score": int(found.score),
        "parameters_count": len(found.scores),
        "missing": ",".join(NEWS2_FIELDS[name] for name in found.missing),
    }
    fields.update({NEWS2_FIELDS[name]: int(score) for name, score in found.scores.items()})
    tags = {"patient_id": patient_id, "partial": "true", "spo2_scale": str(found.spo2_scale)}
    return InfluxPoint("news2", tags, fields, found.at)
