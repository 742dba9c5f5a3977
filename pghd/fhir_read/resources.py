"""The read API's resources: vital-signs Observations, Flags, the searchset Bundle and the
CapabilityStatement (FHIR R4, 4.0.1). Pure.

An Observation is the export's (:func:`pghd.export.fhir.observation`: LOINC code, UCUM
``valueQuantity`` or blood pressure's components, ``effectiveDateTime`` or
``effectivePeriod``, ``subject``, ``device``, the event id as ``identifier``) with, for the
vital signs, ``meta.profile`` the R4 vital-signs profile and the specific one where there is
one (heart rate, respiratory rate, oxygen saturation, body temperature, blood pressure, body
weight), and an ``interpretation`` for a value the processors flagged
(:mod:`pghd.fhir_read.interpretation`): on the Observation, and on the flagged component of
a blood pressure.

A Flag is one alert of the care-team API's read model: a problem of the patient's that pghd
raised and the care team works on (``active`` while open or acknowledged, ``inactive`` once
resolved), with the problem in plain words as ``code``, the alert's lifetime as ``period``,
its severity as the ``flag-priority`` extension, pghd's alerting as ``author``.

Patients may read their own data here too. The care team's text is never passed to them
(docs/patients.md): for a patient's own token, an interpretation carries its code without
the finding's explanation, and a Flag's ``code.text`` is the problem's label without the
alert's summary (``for_patient``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pghd.alerting import Alert
from pghd.catalogue import CATALOGUE, Metric
from pghd.export.fhir import LOINC, observation
from pghd.export.records import StoredReading, format_time
from pghd.fhir_read.interpretation import Flagged, interpretation, worst

__all__ = [
    "FHIR_VERSION",
    "VITAL_SIGNS",
    "capability_statement",
    "flag",
    "full_url",
    "searchset",
    "vital_sign",
]

FHIR_VERSION = "4.0.1"
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
VITAL_SIGNS = f"{_PROFILE}vitalsigns"
_SPECIFIC: Mapping[Metric, str] = {
    Metric.HEART_RATE: f"{_PROFILE}heartrate",
    Metric.RESPIRATORY_RATE: f"{_PROFILE}resprate",
    Metric.SPO2: f"{_PROFILE}oxygensat",
    Metric.BODY_TEMPERATURE: f"{_PROFILE}bodytemp",
    Metric.BLOOD_PRESSURE: f"{_PROFILE}bp",
    Metric.WEIGHT: f"{_PROFILE}bodyweight",
}
_OXYGEN_SATURATION = "2708-6"  # the code R4's oxygensat profile requires beside pulse oximetry's
_FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
_FLAG_PRIORITY = "http://hl7.org/fhir/StructureDefinition/flag-priority"
_FLAG_PRIORITY_CODES = "http://hl7.org/fhir/flag-priority-code"
_PRIORITY = {
    "critical": ("PH", "High priority"),
    "warning": ("PM", "Medium priority"),
    "info": ("PL", "Low priority"),
}
_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"
_CLINICAL = "http://hl7.org/fhir/SearchParameter/clinical-"


def _is_vital_sign(resource: Mapping[str, Any]) -> bool:
    return any(
        coding.get("code") == "vital-signs"
        for category in resource.get("category", [])
        for coding in category.get("coding", [])
    )


def vital_sign(
    reading: StoredReading, flags: Mapping[str, Flagged], *, for_patient: bool = False
) -> dict[str, Any]:
    """The Observation of one stored reading, with its profiles and, for the channels in
    ``flags`` (by catalogue channel name), its interpretation (codes only ``for_patient``:
    :func:`~pghd.fhir_read.interpretation.interpretation`)."""
    resource = observation(reading)
    if _is_vital_sign(resource):
        profiles = [VITAL_SIGNS]
        if reading.metric in _SPECIFIC:
            profiles.append(_SPECIFIC[reading.metric])
        resource["meta"]["profile"] = profiles
    if reading.metric is Metric.SPO2:
        codings = resource["code"]["coding"]
        if all(c.get("code") != _OXYGEN_SATURATION for c in codings):
            codings.append({"system": LOINC, "code": _OXYGEN_SATURATION})
    channels = CATALOGUE[reading.metric].channels
    if "component" in resource:
        for channel, component in zip(channels, resource["component"], strict=True):
            if channel.name in flags:
                component["interpretation"] = [
                    interpretation(flags[channel.name], for_patient=for_patient)
                ]
    most = worst(flags.values())
    if most is not None:
        resource["interpretation"] = [interpretation(most, for_patient=for_patient)]
    return resource


def _problem_label(problem: str) -> str:
    try:
        return CATALOGUE[Metric(problem)].description
    except ValueError:
        pass
    if problem == "news2":
        return "NEWS2 score (partial, from the vital signs pghd receives)"
    return problem.replace("_", " ").capitalize()


def flag(alert: Alert, *, for_patient: bool = False) -> dict[str, Any]:
    """The Flag of one alert (see the module docstring); ``for_patient``, its ``code.text``
    is the problem's plain label alone, without the alert's summary (the care team's text,
    never passed to patients)."""
    label = _problem_label(alert.problem)
    if for_patient:
        text = label
    else:
        text = f"{label}: {alert.summary}" if alert.summary else f"{label}: pghd alert"
    code, display = _PRIORITY[alert.severity.value]
    period = {"start": format_time(alert.opened_at)}
    if alert.resolved_at is not None:
        period["end"] = format_time(alert.resolved_at)
    return {
        "resourceType": "Flag",
        "id": alert.alert_id,
        "meta": {"lastUpdated": format_time(alert.updated_at)},
        "extension": [
            {
                "url": _FLAG_PRIORITY,
                "valueCodeableConcept": {
                    "coding": [{"system": _FLAG_PRIORITY_CODES, "code": code, "display": display}],
                    "text": alert.severity.value,
                },
            },
            {"url": "urn:pghd:fhir:alert-state", "valueCode": alert.status.value},
        ],
        "identifier": [{"system": "urn:pghd:alert", "value": alert.alert_id}],
        "status": "active" if alert.active else "inactive",
        "category": [
            {
                "coding": [{"system": _FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}],
                "text": "Clinical",
            }
        ],
        "code": {
            "coding": [{"system": "urn:pghd:problem", "code": alert.problem, "display": label}],
            "text": text,
        },
        "subject": {"reference": f"Patient/{alert.patient_id}"},
        "period": period,
        "author": {
            "type": "Device",
            "identifier": {"system": "urn:pghd:service", "value": "alerts"},
            "display": "pghd alerting (patient-generated health data)",
        },
    }


def full_url(resource: Mapping[str, Any]) -> str:
    """A Bundle entry's ``fullUrl``: a UUID URN made of the resource's type and id (the
    export's for an Observation, whose id is a UUID's hex already)."""
    ident = str(resource["id"])
    try:
        return f"urn:uuid:{uuid.UUID(hex=ident)}"
    except ValueError:
        digest = hashlib.sha256(f"{resource['resourceType']}/{ident}".encode()).hexdigest()
        return f"urn:uuid:{uuid.UUID(hex=digest[:32])}"


def searchset(
    resources: Iterable[Mapping[str, Any]], *, links: Sequence[tuple[str, str]], now: datetime
) -> dict[str, Any]:
    """A ``searchset`` Bundle of ``resources`` (every one a match) with ``links``
    ((relation, url): self, next); ``entry`` left out when there is none."""
    stamp = format_time(now)
    self_url = next((url for relation, url in links if relation == "self"), "")
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": hashlib.sha256(f"{self_url}|{stamp}".encode()).hexdigest()[:32],
        "meta": {"lastUpdated": stamp},
        "type": "searchset",
        "timestamp": stamp,
        "link": [{"relation": relation, "url": url} for relation, url in links],
    }
    entries = [
        {"fullUrl": full_url(r), "resource": r, "search": {"mode": "match"}} for r in resources
    ]
    if entries:
        bundle["entry"] = entries
    return bundle


def _param(name: str, type_: str, documentation: str, definition: str = "") -> dict[str, Any]:
    param = {"name": name, "type": type_, "documentation": documentation}
    if definition:
        param["definition"] = definition
    return param


def capability_statement(
    *, version: str, date: datetime, base_url: str, identity_provider: bool
) -> dict[str, Any]:
    """What the read API serves (``GET /fhir/metadata``); ``identity_provider``: the care
    API accepts an OAuth identity provider's JWTs (``PGHD_OIDC_ISSUER``)."""
    services = [{"coding": [{"system": _SECURITY, "code": "OAuth"}], "text": "OAuth"}]
    tokens = "a token of the care-team API's users file, " + (
        "an access token (JWT) of the configured identity provider, " if identity_provider else ""
    )
    security: dict[str, Any] = {
        "cors": False,
        "description": (
            f"Authorization: Bearer <token>: {tokens}or a patient's own token. Access follows"
            " the token's role and care teams: a care-team member reads the patients of their"
            " teams, an admin every patient, a patient their own data. SMART on FHIR launch"
            " contexts and scopes are not supported (a token's scopes are not checked). Every"
            " search is audited."
        ),
    }
    if identity_provider:
        security["service"] = services
    return {
        "resourceType": "CapabilityStatement",
        "id": "pghd-care-api",
        "status": "active",
        "date": format_time(date),
        "publisher": "pghd",
        "kind": "instance",
        "software": {"name": "pghd care-team API", "version": version},
        "implementation": {
            "description": "pghd FHIR read API: patients' vital signs and alerts",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Searches of one patient at a time; see docs/fhir.md.",
                "security": security,
                "resource": [
                    {
                        "type": "Observation",
                        "profile": VITAL_SIGNS,
                        "supportedProfile": [VITAL_SIGNS, *_SPECIFIC.values()],
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            _param(
                                "patient",
                                "reference",
                                "Required: the patient (id or Patient/id)",
                                f"{_CLINICAL}patient",
                            ),
                            _param(
                                "code",
                                "token",
                                "LOINC code, with or without http://loinc.org|",
                                f"{_CLINICAL}code",
                            ),
                            _param(
                                "date",
                                "date",
                                "The reading's time (an interval's start): eq, ge, gt, le, lt",
                                f"{_CLINICAL}date",
                            ),
                            _param(
                                "_count",
                                "number",
                                "Readings per page: 50 by default, at most 500; follow next",
                            ),
                        ],
                    },
                    {
                        "type": "Flag",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            _param(
                                "patient",
                                "reference",
                                "Required: the patient (id or Patient/id)",
                                f"{_CLINICAL}patient",
                            ),
                            _param(
                                "status",
                                "token",
                                "active (open or acknowledged alerts), inactive (resolved"
                                " within 30 days)",
                            ),
                        ],
                    },
                ],
            }
        ],
    }
