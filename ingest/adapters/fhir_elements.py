"""Reading the elements of one validated FHIR Observation into ``ReadingIn`` fields.

Each reader fills the reading and records where (FHIRPath) each field came from, or
returns issues naming the element that is wrong. Used by :mod:`ingest.adapters.fhir`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.quantity import Quantity
from pydantic import ValidationError

from ingest.adapters.intervals import interval_end
from ingest.adapters.times import fhir_time, fhir_time_refusal
from ingest.intake import error
from pghd.catalogue import CATALOGUE, Metric, metric_for_loinc
from pghd.contracts import TimePrecision

__all__ = [
    "LOINC",
    "READING_STATUSES",
    "TAKEN_CODES",
    "UCUM",
    "VITAL_SIGNS",
    "device_of",
    "effective_of",
    "event_id_of",
    "issue_error",
    "metric_of",
    "patient_of",
    "structure_errors",
    "values_of",
]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
READING_STATUSES = ("final", "amended", "corrected")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$")
_DEVICE_REF = re.compile(r"(?:^|/)Device/([^/]+)$")
VITAL_SIGNS = frozenset(
    {
        Metric.HEART_RATE,
        Metric.RESPIRATORY_RATE,
        Metric.SPO2,
        Metric.BODY_TEMPERATURE,
        Metric.BLOOD_PRESSURE,
        Metric.WEIGHT,
    }
)
"""Metrics whose codes are in FHIR R4's vital signs table: their Observations SHALL conform
to the vital signs profile, whose vs-1 wants an ``effectiveDateTime`` precise to the day."""
_COARSER_THAN_DAY = (TimePrecision.YEAR, TimePrecision.MONTH)


def issue_error(expression: str, detail: str, *, code: str = "invalid") -> dict[str, Any]:
    """An item error (see :func:`ingest.intake.error`) with its FHIR issue type ``code``."""
    return {**error(expression, detail), "code": code}


TAKEN_CODES = ", ".join(
    f"{code} ({spec.metric.value})"
    for spec in CATALOGUE.values()
    for code in (spec.loinc, *spec.loinc_aliases)
)


def metric_of(obs: Observation) -> Metric | None:
    for coding in obs.code.coding or []:
        if coding.system == LOINC and coding.code is not None:
            metric = metric_for_loinc(coding.code)
            if metric is not None:
                return metric
    return None


def _quantity(
    qty: Quantity | None, *, at: str, field_name: str, elements: dict[str, str]
) -> tuple[float | None, str | None, list[dict[str, Any]]]:
    """Value and unit of a Quantity at ``at``; records where they came from."""
    if qty is None:
        return (
            None,
            None,
            [issue_error(at, "no valueQuantity: the reading has no value", code="required")],
        )
    errors: list[dict[str, Any]] = []
    value = float(qty.value) if qty.value is not None else None
    if value is None:
        errors.append(issue_error(f"{at}.value", "the quantity has no value", code="required"))
    elements[field_name] = f"{at}.value"
    unit: str | None = None
    if qty.code is not None and qty.system == UCUM:
        unit, elements["unit"] = qty.code, f"{at}.code"
    elif qty.unit:
        unit, elements["unit"] = qty.unit, f"{at}.unit"
    elif qty.code is not None:
        detail = f"unit code system {qty.system!r} is not UCUM ({UCUM}) and there is no unit"
        errors.append(issue_error(f"{at}.system", detail, code="code-invalid"))
    else:
        detail = f"the quantity has no unit: give code (UCUM, system {UCUM}) or unit"
        errors.append(issue_error(f"{at}.code", detail, code="required"))
    return value, unit, errors


def values_of(
    obs: Observation,
    *,
    metric: Metric,
    base: str,
    reading: dict[str, Any],
    elements: dict[str, str],
) -> list[dict[str, Any]]:
    spec = CATALOGUE[metric]
    if not spec.is_composite:
        value, unit, errors = _quantity(
            obs.valueQuantity, at=f"{base}.valueQuantity", field_name="value", elements=elements
        )
        reading.update(value=value, unit=unit)
        return errors
    errors = []
    units: dict[str, tuple[str, str]] = {}
    components = obs.component or []
    for channel in spec.channels:
        index = next(
            (
                i
                for i, comp in enumerate(components)
                if any(
                    c.system == LOINC and c.code == channel.loinc for c in comp.code.coding or []
                )
            ),
            None,
        )
        if index is None:
            detail = f"no {channel.name} component (LOINC {channel.loinc})"
            errors.append(issue_error(f"{base}.component", detail, code="required"))
            continue
        at = f"{base}.component[{index}].valueQuantity"
        value, unit, found = _quantity(
            components[index].valueQuantity, at=at, field_name=channel.name, elements=elements
        )
        errors += found
        reading[channel.name] = value
        if unit is not None:
            units[channel.name] = (unit, elements["unit"])
    distinct = {u for u, _ in units.values()}
    if len(distinct) > 1:
        where = units[spec.channels[-1].name][1]
        detail = f"the components have different units ({', '.join(sorted(distinct))})"
        errors.append(issue_error(where, detail, code="value"))
    elif units:
        reading["unit"], elements["unit"] = next(iter(units.values()))  # in channel order
    return errors


def patient_of(
    obs: Observation, *, base: str, reading: dict[str, Any], elements: dict[str, str]
) -> list[dict[str, Any]]:
    if obs.subject is None:
        detail = "no subject: the patient must be given as Patient/{id}"
        return [issue_error(f"{base}.subject", detail, code="required")]
    ref = obs.subject.reference
    match = _PATIENT_REF.search(ref) if ref else None
    if match is None:
        detail = f"subject.reference {ref!r} is not a Patient reference (Patient/{{id}})"
        return [issue_error(f"{base}.subject.reference", detail, code="value")]
    reading["patient_id"] = match.group(1)
    elements["patient_id"] = f"{base}.subject.reference"
    return []


def effective_of(
    obs: Observation,
    *,
    base: str,
    reading: dict[str, Any],
    elements: dict[str, str],
    metric: Metric | None = None,
) -> list[dict[str, Any]]:
    """When it was measured: ``effectiveDateTime``, ``effectiveInstant`` or
    ``effectivePeriod.start``, placed by :mod:`ingest.adapters.times` (a date alone is the
    start of its UTC day, with ``effective_precision``). For an interval metric (steps,
    sleep) measured over an ``effectivePeriod``, the period's end becomes ``effective_end``
    when it is an instant after the start (a period whose end is its start is an instant)
    and the span is one pghd takes.
    """
    if obs.effectiveDateTime is not None:
        value, at = obs.effectiveDateTime, f"{base}.effectiveDateTime"
    elif obs.effectiveInstant is not None:
        value, at = obs.effectiveInstant, f"{base}.effectiveInstant"
    elif obs.effectivePeriod is not None and obs.effectivePeriod.start is not None:
        value, at = obs.effectivePeriod.start, f"{base}.effectivePeriod.start"
    elif obs.effectiveTiming is not None:
        detail = "effectiveTiming is not taken: give effectiveDateTime or effectivePeriod"
        return [issue_error(f"{base}.effectiveTiming", detail, code="not-supported")]
    else:
        detail = "no effectiveDateTime (or effectivePeriod.start): when was it measured?"
        return [issue_error(f"{base}.effective", detail, code="required")]
    placed = fhir_time(value)
    if placed is None:
        return [issue_error(at, fhir_time_refusal(str(value)), code="value")]
    if (
        placed.precision in _COARSER_THAN_DAY
        and metric in VITAL_SIGNS
        and at.endswith(".effectiveDateTime")
    ):
        detail = (
            f"{value} is a {placed.precision}: the FHIR vital signs profile (vs-1) wants the"
            " effectiveDateTime of a vital sign precise to the day at least"
        )
        return [issue_error(at, detail, code="invariant")]
    reading["effective_time"] = placed.when
    elements["effective_time"] = at
    if placed.precision is not None:
        reading["effective_precision"] = placed.precision.value
        elements["effective_precision"] = at
    period = obs.effectivePeriod
    if metric is not None and at.endswith(".effectivePeriod.start") and period is not None:
        end = fhir_time(period.end)  # only an instant: a date is no end the sender measured to
        if (
            end is not None
            and end.precision is None
            and interval_end(metric, placed.when, end.when) is not None
        ):
            reading["effective_end"] = end.when
            elements["effective_end"] = f"{base}.effectivePeriod.end"
    return []


def event_id_of(
    obs: Observation, *, base: str, source: str, patient: str
) -> tuple[str | None, str]:
    """A stable event id: from the first identifier, else the id; None leaves it derived.

    A business identifier (system + value) is meant to be unique everywhere, so it is used
    as it is; a logical ``id`` is only unique on the sender's side, so it is scoped by the
    sending source and the patient. Both are hashed to fit ``ID_PATTERN``.
    """
    for identifier in obs.identifier or []:
        if identifier.value:
            key = f"identifier|{identifier.system or ''}|{identifier.value}"
            return _hashed(key), f"{base}.identifier[0]"
    if obs.id:
        return _hashed(f"id|{source}|{patient}|{obs.id}"), f"{base}.id"
    return None, ""


def _hashed(key: str) -> str:
    return "fhir-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def device_of(obs: Observation) -> str | None:
    if obs.device is None:
        return None
    ref = obs.device.reference
    match = _DEVICE_REF.search(ref) if ref else None
    if match is not None:
        return match.group(1)
    return obs.device.display or ref


def structure_errors(exc: ValidationError, *, base: str) -> list[dict[str, Any]]:
    """fhir.resources validation errors as issues with FHIRPath expressions."""
    out = []
    for err in exc.errors(include_url=False):
        path = base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        out.append(issue_error(path, _structure_message(err), code="structure"))
    return out


def _structure_message(err: Any) -> str:
    value = err.get("input")
    last = err["loc"][-1] if err["loc"] else ""
    if last in ("effectiveDateTime", "start", "end", "effectiveInstant") and isinstance(value, str):
        return fhir_time_refusal(value, instant=last == "effectiveInstant")
    if err["type"] == "extra_forbidden":
        return "unknown element"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
