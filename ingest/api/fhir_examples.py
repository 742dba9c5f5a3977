"""Example FHIR R4 request bodies for the OpenAPI document of ``POST /v1/fhir``.

They follow the vital-signs profile examples of the FHIR specification (heart rate, blood
pressure panel, body temperature in degrees Fahrenheit).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXAMPLES", "blood_pressure", "heart_rate", "temperature_f"]

_VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs",
            }
        ]
    }
]


def _loinc(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]}


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": code}


def heart_rate(patient: str, value: float, when: str, *, id_: str = "heart-rate") -> dict[str, Any]:
    """A vital-signs heart rate Observation (LOINC 8867-4, /min)."""
    return {
        "resourceType": "Observation",
        "id": id_,
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/heartrate"]},
        "status": "final",
        "category": _VITAL_SIGNS,
        "code": _loinc("8867-4", "Heart rate"),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": _quantity(value, "beats/minute", "/min"),
    }


def temperature_f(patient: str, value: float, when: str) -> dict[str, Any]:
    """A vital-signs body temperature Observation in degrees Fahrenheit (LOINC 8310-5)."""
    return {
        "resourceType": "Observation",
        "id": "body-temperature",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bodytemp"]},
        "status": "final",
        "category": _VITAL_SIGNS,
        "code": _loinc("8310-5", "Body temperature"),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": _quantity(value, "F", "[degF]"),
    }


def blood_pressure(patient: str, systolic: float, diastolic: float, when: str) -> dict[str, Any]:
    """A vital-signs blood pressure panel (LOINC 85354-9) with its two components."""
    return {
        "resourceType": "Observation",
        "id": "blood-pressure",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
        "identifier": [
            {
                "system": "urn:ietf:rfc:3986",
                "value": "urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281",
            }
        ],
        "status": "final",
        "category": _VITAL_SIGNS,
        "code": _loinc("85354-9", "Blood pressure panel with all children optional"),
        "subject": {"reference": f"Patient/{patient}"},
        "effectivePeriod": {"start": when},
        "component": [
            {
                "code": _loinc("8480-6", "Systolic blood pressure"),
                "valueQuantity": _quantity(systolic, "mmHg", "mm[Hg]"),
            },
            {
                "code": _loinc("8462-4", "Diastolic blood pressure"),
                "valueQuantity": _quantity(diastolic, "mmHg", "mm[Hg]"),
            },
        ],
    }


def _bundle(kind: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:4f9c2a51-0b7e-4c1e-9d2a-{i:012d}",
                "resource": r,
                "request": {"method": "POST", "url": "Observation"},
            }
            for i, r in enumerate(resources)
        ],
    }


_WHEN = "2026-11-25T08:00:00+01:00"
EXAMPLES: dict[str, dict[str, Any]] = {
    "observation": {
        "summary": "One heart-rate Observation",
        "value": heart_rate("example", 44, _WHEN),
    },
    "batch": {
        "summary": "A batch Bundle: each entry succeeds or fails on its own",
        "value": _bundle(
            "batch",
            [temperature_f("example", 98.6, _WHEN), blood_pressure("example", 107, 60, _WHEN)],
        ),
    },
    "transaction": {
        "summary": "A transaction Bundle: all entries are stored, or none",
        "value": _bundle(
            "transaction",
            [heart_rate("example", 72, _WHEN), blood_pressure("example", 121, 79, _WHEN)],
        ),
    },
}
"""OpenAPI ``examples`` of the request body."""
