"""A patient's readings and findings as Open mHealth data points (``header`` + ``body``).

Each reading is one data point of the schema ``POST /v1/omh`` takes for its metric
(``ingest/adapters/omh.py``): heart-rate 2.0, blood-pressure 4.0, body-temperature 4.0,
oxygen-saturation 2.0, respiratory-rate 2.0, step-count 3.0, blood-glucose 4.0,
body-weight 2.0, sleep-duration 2.0, with the schemas' units (``beats/min``, ``mmHg``,
``C``, ``%``, ``breaths/min``, ``steps``, ``mg/dL``, ``kg``, ``h``) and values in the
canonical unit those name.
``effective_time_frame`` is a ``date_time``, or a ``time_interval`` (start and end) for a
step count or a night's sleep whose sender gave its end. A reading whose sender gave a date
and a part of the day gets that ``time_interval`` (``date``, ``part_of_day``) back; one given
as a year, a month or a day (a FHIR partial dateTime) the ``time_interval`` from the start
of that span to its end, as Open mHealth has no partial date: posted back, such a reading is
placed at the same time, without the precision.

Resting heart rate and heart-rate variability (SDNN) have no Open mHealth schema that says
what they are (a heart-rate data point "at rest" is one sample, not the day's resting
rate), so they are written in the ``pghd`` namespace (``pghd:resting-heart-rate`` 1.0,
``pghd:heart-rate-variability-sdnn`` 1.0, a ``{value, unit}`` under the property named
like the schema). Ingest does not take these two back through ``/v1/omh``: the FHIR
export carries them in a form it does take.

The header: ``id`` the reading's event id (ingest keeps it as the event id, so posting the
export twice stores each reading once), ``user_id`` the patient, ``creation_date_time`` the
export's time, ``acquisition_provenance.source_name`` the source (vendor) it came from.
Open mHealth headers have no place for a device; the FHIR export keeps it.

Findings are ``pghd:finding`` 1.0 data points (no Open mHealth schema describes a
detector's verdict): ``header.id`` the anomaly id, ``body`` the metric, channel, detector,
severity, score, value (``{value, unit}``), explanation, episode and phase, and the
``effective_time_frame`` of the reading judged. Ingest refuses them as an unknown schema,
item by item, and stores the readings beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import PART_OF_DAY_HOURS, TimePrecision, span_end
from pghd.export.records import StoredFinding, StoredReading, format_time

__all__ = ["FINDING_SCHEMA", "SCHEMAS", "OmhSchema", "data_point", "finding_point"]


@dataclass(frozen=True, slots=True)
class OmhSchema:
    """Where a metric goes in Open mHealth: schema id, body properties (in the catalogue's
    channel order) and the unit, as the schema spells it, of the canonical unit."""

    namespace: str
    name: str
    version: str
    keys: tuple[str, ...]
    unit: str

    @property
    def schema_id(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "version": self.version}


SCHEMAS: dict[Metric, OmhSchema] = {
    Metric.HEART_RATE: OmhSchema("omh", "heart-rate", "2.0", ("heart_rate",), "beats/min"),
    Metric.BLOOD_PRESSURE: OmhSchema(
        "omh",
        "blood-pressure",
        "4.0",
        ("systolic_blood_pressure", "diastolic_blood_pressure"),
        "mmHg",
    ),
    Metric.BODY_TEMPERATURE: OmhSchema(
        "omh", "body-temperature", "4.0", ("body_temperature",), "C"
    ),
    Metric.SPO2: OmhSchema("omh", "oxygen-saturation", "2.0", ("oxygen_saturation",), "%"),
    Metric.RESPIRATORY_RATE: OmhSchema(
        "omh", "respiratory-rate", "2.0", ("respiratory_rate",), "breaths/min"
    ),
    Metric.STEPS: OmhSchema("omh", "step-count", "3.0", ("step_count",), "steps"),
    Metric.BLOOD_GLUCOSE: OmhSchema("omh", "blood-glucose", "4.0", ("blood_glucose",), "mg/dL"),
    Metric.SLEEP_DURATION: OmhSchema("omh", "sleep-duration", "2.0", ("sleep_duration",), "h"),
    Metric.WEIGHT: OmhSchema("omh", "body-weight", "2.0", ("body_weight",), "kg"),
    Metric.RESTING_HEART_RATE: OmhSchema(
        "pghd", "resting-heart-rate", "1.0", ("resting_heart_rate",), "beats/min"
    ),
    Metric.HRV_SDNN: OmhSchema(
        "pghd", "heart-rate-variability-sdnn", "1.0", ("heart_rate_variability_sdnn",), "ms"
    ),
}
"""Every metric of the catalogue -> its schema (see the module docstring)."""

FINDING_SCHEMA = {"namespace": "pghd", "name": "finding", "version": "1.0"}


def _time_frame(
    start: datetime, end: datetime | None, precision: TimePrecision | None = None
) -> dict[str, Any]:
    if end is None and precision in PART_OF_DAY_HOURS:
        assert precision is not None
        return {"time_interval": {"date": start.date().isoformat(), "part_of_day": precision.value}}
    if end is None and precision is not None:
        end = span_end(start, precision)  # a year, month or day: the interval it names
    if end is None:
        return {"date_time": format_time(start)}
    return {
        "time_interval": {"start_date_time": format_time(start), "end_date_time": format_time(end)}
    }


def _header(
    point_id: str, schema_id: dict[str, str], *, patient_id: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": point_id,
        "creation_date_time": format_time(now),
        "schema_id": schema_id,
        "user_id": patient_id,
    }


def data_point(reading: StoredReading, *, now: datetime) -> dict[str, Any]:
    """The data point of one stored reading, created at ``now`` (the export's time)."""
    schema = SCHEMAS[reading.metric]
    channels = CATALOGUE[reading.metric].channels
    body: dict[str, Any] = {
        key: {"value": reading.values[channel.name], "unit": schema.unit}
        for key, channel in zip(schema.keys, channels, strict=True)
    }
    body["effective_time_frame"] = _time_frame(reading.time, reading.end, reading.precision)
    header = _header(reading.event_id, schema.schema_id, patient_id=reading.patient_id, now=now)
    header["acquisition_provenance"] = {"source_name": reading.source}
    return {"header": header, "body": body}


def finding_point(finding: StoredFinding, *, now: datetime) -> dict[str, Any]:
    """The ``pghd:finding`` data point of one stored finding, created at ``now``."""
    body: dict[str, Any] = {
        "metric": finding.metric.value,
        "channel": finding.channel,
        "detector": finding.detector,
        "severity": finding.severity,
    }
    if math.isfinite(finding.score):
        body["score"] = finding.score
    if math.isfinite(finding.value):
        body["value"] = {"value": finding.value, "unit": finding.unit}
    body["explanation"] = finding.explanation
    if finding.episode_id is not None:
        body["episode_id"] = finding.episode_id
    if finding.phase is not None:
        body["phase"] = finding.phase
    body["effective_time_frame"] = _time_frame(finding.time, None)
    return {
        "header": _header(
            finding.anomaly_id, dict(FINDING_SCHEMA), patient_id=finding.patient_id, now=now
        ),
        "body": body,
    }
