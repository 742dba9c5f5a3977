"""A patient's readings and findings as FHIR R4 resources, for a ``collection`` Bundle.

Readings are Observations shaped like the specification's vital-signs examples, so that
``POST /v1/fhir`` takes them back (``ingest/adapters/fhir.py``):

- ``status`` final; ``category`` vital-signs (activity for step counts and sleep, which
  are not vital signs); ``code`` the catalogue's LOINC code of the metric; ``subject``
  ``Patient/<id>``;
- ``effectiveDateTime``, or ``effectivePeriod`` (start, end) for a step count or a night's
  sleep whose sender gave the interval's end; a reading whose sender gave only a year, a
  month or a day gets that partial ``effectiveDateTime`` back (``2026-11-25``), one given
  a part of a day (Open mHealth) the ``effectivePeriod`` of its six hours, as FHIR has no
  dateTime for it;
- ``valueQuantity`` in the metric's canonical UCUM unit (``system`` UCUM, ``code`` and
  ``unit`` the UCUM code); blood pressure as the panel 85354-9 with its systolic (8480-6)
  and diastolic (8462-4) ``component``;
- ``identifier`` the reading's event id (system ``urn:pghd:event:<source>``; ingest derives
  a stable event id from it, so posting the same export twice stores each reading once),
  ``meta.source`` the source (``urn:pghd:source:<vendor>``), ``device`` the device id as
  the source named it (display and identifier), when it named one.

Findings (the ``anomalies`` the processors stored) are **DetectedIssue** resources, not
Observations: a finding is a judgement about readings, not a measurement, and an
Observation with the metric's LOINC code would be taken back as a reading when the Bundle
is posted again (a DetectedIssue is answered ``400 not-supported`` there and stores
nothing; the processors judge the re-ingested readings anew). ``code`` the detector
(system ``urn:pghd:detector``), ``severity`` high / moderate / low for critical / warning /
info, ``identifiedDateTime`` the time of the reading judged, ``detail`` the explanation,
``evidence.code`` the channel (its LOINC code when it has one), ``identifier`` the anomaly
id, and extensions (``urn:pghd:fhir:finding-*``) for the value with its unit, the score,
the episode and its phase.

Every function here is pure; ids are derived from the content, so the same stored data
gives the same resources.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import datetime
from typing import Any

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import TimePrecision, span_end
from pghd.export.records import StoredFinding, StoredReading, channel_of, format_time

__all__ = [
    "LOINC",
    "UCUM",
    "bundle_head",
    "detected_issue",
    "entry",
    "observation",
]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_EXTENSION = "urn:pghd:fhir:finding-"
_SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}
_ACTIVITY = frozenset({Metric.STEPS, Metric.SLEEP_DURATION})
_LABORATORY = frozenset({Metric.BLOOD_GLUCOSE})  # not in the R4 vital-signs profile


def _category(metric: Metric) -> list[dict[str, Any]]:
    if metric in _ACTIVITY:
        code, display = "activity", "Activity"
    elif metric in _LABORATORY:
        code, display = "laboratory", "Laboratory"
    else:
        code, display = "vital-signs", "Vital Signs"
    return [{"coding": [{"system": _CATEGORY, "code": code, "display": display}], "text": display}]


_DATE_FORMATS = {
    TimePrecision.YEAR: "%Y",
    TimePrecision.MONTH: "%Y-%m",
    TimePrecision.DAY: "%Y-%m-%d",
}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _id(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _reading_id(reading: StoredReading) -> str:
    return _id(
        "reading",
        reading.patient_id,
        reading.source,
        reading.device or "",
        reading.metric.value,
        format_time(reading.time),
        reading.event_id,
    )


def _effective(time: datetime, precision: TimePrecision | None) -> dict[str, Any]:
    """An instant as ``effectiveDateTime``; a year, month or day as the partial dateTime the
    sender gave (``2026``, ``2026-11``, ``2026-11-25``); a part of a day, which FHIR has no
    dateTime for, as the ``effectivePeriod`` of its six hours."""
    if precision is None:
        return {"effectiveDateTime": format_time(time)}
    if precision in _DATE_FORMATS:
        return {"effectiveDateTime": time.strftime(_DATE_FORMATS[precision])}
    end = span_end(time, precision)
    return {"effectivePeriod": {"start": format_time(time), "end": format_time(end)}}


def observation(reading: StoredReading) -> dict[str, Any]:
    """The Observation of one stored reading (see the module docstring)."""
    spec = CATALOGUE[reading.metric]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _reading_id(reading),
        "meta": {"source": f"urn:pghd:source:{reading.source}"},
        "identifier": [{"system": f"urn:pghd:event:{reading.source}", "value": reading.event_id}],
        "status": "final",
        "category": _category(reading.metric),
        "code": {"coding": [{"system": LOINC, "code": spec.loinc}], "text": spec.description},
        "subject": {"reference": f"Patient/{reading.patient_id}"},
    }
    if reading.end is not None:
        resource["effectivePeriod"] = {
            "start": format_time(reading.time),
            "end": format_time(reading.end),
        }
    else:
        resource.update(_effective(reading.time, reading.precision))
    if spec.is_composite:
        noun = reading.metric.value.replace("_", " ")
        resource["component"] = [
            {
                "code": {
                    "coding": [{"system": LOINC, "code": channel.loinc}],
                    "text": f"{channel.name.capitalize()} {noun}",
                },
                "valueQuantity": _quantity(reading.values[channel.name], reading.unit),
            }
            for channel in spec.channels
        ]
    else:
        resource["valueQuantity"] = _quantity(reading.value, reading.unit)
    if reading.device is not None:
        resource["device"] = {
            "identifier": {"system": f"urn:pghd:device:{reading.source}", "value": reading.device},
            "display": reading.device,
        }
    return resource


def detected_issue(finding: StoredFinding) -> dict[str, Any]:
    """The DetectedIssue of one stored finding (see the module docstring)."""
    channel = channel_of(finding.metric, finding.channel)
    evidence: dict[str, Any] = {"text": finding.channel}
    if channel is not None:
        evidence["coding"] = [{"system": LOINC, "code": channel.loinc}]
    extensions: list[dict[str, Any]] = []
    if math.isfinite(finding.value):
        extensions.append(
            {"url": f"{_EXTENSION}value", "valueQuantity": _quantity(finding.value, finding.unit)}
        )
    if math.isfinite(finding.score):
        extensions.append({"url": f"{_EXTENSION}score", "valueDecimal": finding.score})
    if finding.episode_id is not None:
        extensions.append({"url": f"{_EXTENSION}episode", "valueString": finding.episode_id})
    if finding.phase is not None:
        extensions.append({"url": f"{_EXTENSION}phase", "valueCode": finding.phase})
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": _id("finding", finding.patient_id, finding.anomaly_id),
        "identifier": [{"system": "urn:pghd:anomaly", "value": finding.anomaly_id}],
        "status": "final",
        "code": {
            "coding": [{"system": "urn:pghd:detector", "code": finding.detector}],
            "text": f"{finding.detector} finding on {finding.channel}",
        },
        "patient": {"reference": f"Patient/{finding.patient_id}"},
        "identifiedDateTime": format_time(finding.time),
        "evidence": [{"code": [evidence]}],
        "detail": finding.explanation,
    }
    severity = _SEVERITY.get(finding.severity)
    if severity is not None:
        resource["severity"] = severity
    if extensions:
        resource["extension"] = extensions
    return resource


def entry(resource: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle entry for ``resource`` (``fullUrl`` a UUID URN made of its id)."""
    return {"fullUrl": f"urn:uuid:{uuid.UUID(hex=resource['id'])}", "resource": resource}


def bundle_head(patient_id: str, *, now: datetime) -> dict[str, Any]:
    """The Bundle's own elements, its entries left out (they are streamed after them)."""
    stamp = format_time(now)
    return {
        "resourceType": "Bundle",
        "id": _id("export", patient_id, stamp),
        "meta": {"lastUpdated": stamp},
        "type": "collection",
        "timestamp": stamp,
    }
