"""FHIR R4 documents for the tests, shaped like the specification's vital-signs examples.

(``observation-example-heart-rate``, ``-bloodpressure``, ``-body-temperature``, ``-satO2``,
``-body-weight``, ``-glucose``), with recent effective times so that nothing is refused as
stale or future. Step counts and sleep, which the vital-signs examples lack, take the same
shape with an ``activity`` category and an ``effectivePeriod``.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from tests.clock import ANCHOR

WHEN = (ANCHOR - timedelta(hours=2)).isoformat()
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs",
            }
        ],
        "text": "Vital Signs",
    }
]


def loinc(*codes: tuple[str, str]) -> dict[str, Any]:
    return {"coding": [{"system": "http://loinc.org", "code": c, "display": d} for c, d in codes]}


def observation(
    code: dict[str, Any],
    *,
    patient: str = "example",
    id_: str | None = "obs-1",
    when: str | None = WHEN,
    **elements: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": copy.deepcopy(VITAL_SIGNS),
        "code": code,
        "subject": {"reference": f"Patient/{patient}"},
        **({} if when is None else {"effectiveDateTime": when}),
        **elements,
    }
    if id_ is not None:
        doc["id"] = id_
    return doc


def heart_rate(value: float = 44, **kw: Any) -> dict[str, Any]:
    return observation(
        loinc(("8867-4", "Heart rate")),
        **{
            "valueQuantity": {
                "value": value,
                "unit": "beats/minute",
                "system": UCUM,
                "code": "/min",
            },
            "id_": "heart-rate",
            **kw,
        },
    )


def body_temperature_f(value: float = 98.6, **kw: Any) -> dict[str, Any]:
    return observation(
        loinc(("8310-5", "Body temperature")),
        **{
            "valueQuantity": {"value": value, "unit": "degF", "system": UCUM, "code": "[degF]"},
            "id_": "body-temperature",
            **kw,
        },
    )


def sat_o2(value: float = 95, **kw: Any) -> dict[str, Any]:
    """As the spec's satO2 example: 2708-6 first, then the pulse-oximetry 59408-5."""
    return observation(
        loinc(
            ("2708-6", "Oxygen saturation in Arterial blood"),
            ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        **{
            "valueQuantity": {"value": value, "unit": "%", "system": UCUM, "code": "%"},
            "device": {"reference": "DeviceMetric/example"},
            "id_": "satO2",
            **kw,
        },
    )


def blood_pressure(systolic: float = 107, diastolic: float = 60, **kw: Any) -> dict[str, Any]:
    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {
            "code": loinc((code, display)),
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    return observation(
        loinc(("85354-9", "Blood pressure panel with all children optional")),
        **{
            "identifier": [
                {
                    "system": "urn:ietf:rfc:3986",
                    "value": "urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281",
                }
            ],
            "component": [
                component("8480-6", "Systolic blood pressure", systolic),
                component("8462-4", "Diastolic blood pressure", diastolic),
            ],
            "id_": "blood-pressure",
            **kw,
        },
    )


def glucose_mmol(value: float = 6.3, **kw: Any) -> dict[str, Any]:
    return observation(
        loinc(("15074-8", "Glucose [Moles/volume] in Blood")),
        **{
            "valueQuantity": {"value": value, "unit": "mmol/l", "system": UCUM, "code": "mmol/L"},
            "id_": "f001",
            **kw,
        },
    )


def weight_lb(value: float = 185, **kw: Any) -> dict[str, Any]:
    return observation(
        loinc(("29463-7", "Body Weight")),
        **{
            "valueQuantity": {"value": value, "unit": "lbs", "system": UCUM, "code": "[lb_av]"},
            "id_": "example",
            **kw,
        },
    )


ACTIVITY = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "activity",
                "display": "Activity",
            }
        ],
        "text": "Activity",
    }
]


def over(start: datetime, end: datetime) -> dict[str, Any]:
    """``effectivePeriod`` elements in place of ``effectiveDateTime``: pass as ``**over(...)``."""
    return {"when": None, "effectivePeriod": {"start": start.isoformat(), "end": end.isoformat()}}


def steps(value: float = 1200, **kw: Any) -> dict[str, Any]:
    """A pedometer's step count over a period, as the spec's quantity examples write it."""
    return observation(
        loinc(("55423-8", "Number of steps in unspecified time Pedometer")),
        **{
            "category": copy.deepcopy(ACTIVITY),
            "valueQuantity": {"value": value, "unit": "steps", "system": UCUM, "code": "{steps}"},
            "device": {"display": "Pedometer"},
            "id_": "step-count",
            **kw,
        },
    )


def sleep_duration(value: float = 7.25, **kw: Any) -> dict[str, Any]:
    """Hours asleep over the night's period."""
    return observation(
        loinc(("93832-4", "Sleep duration")),
        **{
            "category": copy.deepcopy(ACTIVITY),
            "valueQuantity": {"value": value, "unit": "h", "system": UCUM, "code": "h"},
            "id_": "sleep-duration",
            **kw,
        },
    )


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for i, resource in enumerate(resources):
        entry: dict[str, Any] = {
            "fullUrl": f"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e30000{i:04d}",
            "resource": resource,
        }
        if kind != "collection":
            entry["request"] = {"method": "POST", "url": "Observation"}
        entries.append(entry)
    return {"resourceType": "Bundle", "id": "bundle-example", "type": kind, "entry": entries}
