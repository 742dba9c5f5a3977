"""FHIR R4 Observations (alone or in a batch, transaction or collection Bundle) to candidates.

Documents are parsed with ``fhir.resources``' ``R4B`` models: fhir.resources 8 ships R5 as
its default and R4B and STU3 beside it, with no plain R4 package. R4B (4.3) is a technical
correction of R4 that leaves Observation, Quantity, Reference, Period and Bundle as in R4
(4.0.1), so R4 vital-signs documents validate unchanged, and R5's renamed elements are
avoided.

Observations are mapped by their LOINC code through :func:`pghd.catalogue.metric_for_loinc`
(vital-signs profile codes: 8867-4, 9279-1, 2708-6/59408-5, 8310-5, 85354-9 with components
8480-6/8462-4, 29463-7, 2339-0/15074-8, 55423-8). The unit is ``valueQuantity.code`` when
its ``system`` is UCUM, else ``valueQuantity.unit``. The reading is stamped at
``effectiveDateTime``, ``effectiveInstant`` or ``effectivePeriod.start``, in every shape an
R4 dateTime takes: a year, a month or a date alone is the start of that span in UTC, kept
as ``effective_precision`` (:mod:`ingest.adapters.times`; a vital sign wants the day, as
the vital signs profile's vs-1 does). A step count or a night's sleep (55423-8, 93832-4)
over an ``effectivePeriod`` also keeps the period's end instant as ``effective_end``
(:mod:`ingest.adapters.intervals`). Every error names its element as a FHIRPath
expression (``Bundle.entry[2].resource.valueQuantity.code``); a time the specification
refuses is refused with its reason (no seconds, no offset, 24:00...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from ingest.adapters.fhir_elements import (
    READING_STATUSES,
    TAKEN_CODES,
    device_of,
    effective_of,
    event_id_of,
    issue_error,
    metric_of,
    patient_of,
    structure_errors,
    values_of,
)
from ingest.adapters.locations import Located
from ingest.intake import Candidate

__all__ = [
    "BUNDLE_TYPES",
    "FhirDocument",
    "FhirDocumentError",
    "observation_candidate",
    "read_document",
]

BUNDLE_TYPES = ("batch", "transaction", "collection")


class FhirDocumentError(ValueError):
    """The document as a whole cannot be taken; ``issues`` are item errors (FHIRPath)."""

    def __init__(self, issues: list[dict[str, Any]], *, too_large: bool = False) -> None:
        super().__init__("; ".join(f"{i['pointer']}: {i['detail']}" for i in issues))
        self.issues = issues
        self.too_large = too_large


@dataclass(frozen=True)
class FhirDocument:
    """What was posted: ``kind`` is ``Observation`` or the Bundle's type; one item per entry."""

    kind: str
    items: tuple[Located, ...]


def read_document(document: Any, *, source: str, max_entries: int) -> FhirDocument:
    """Candidates of a posted Observation or Bundle, one per Observation (entry).

    Raises :class:`FhirDocumentError` when the document is neither, is a Bundle of another
    type, is empty, or has more than ``max_entries`` entries (``too_large``).
    """
    if not isinstance(document, dict):
        raise FhirDocumentError([issue_error("", "the body must be a FHIR resource (object)")])
    kind = document.get("resourceType")
    if kind == "Observation":
        item = observation_candidate(document, base="Observation", source=source)
        return FhirDocument(kind="Observation", items=(item,))
    if kind != "Bundle":
        raise FhirDocumentError(
            [
                issue_error(
                    "resourceType",
                    f"resourceType is {kind!r}; post an Observation or a Bundle of them",
                    code="not-supported",
                )
            ]
        )
    entries = document.get("entry")
    btype = document.get("type")
    if btype not in BUNDLE_TYPES:
        raise FhirDocumentError(
            [
                issue_error(
                    "Bundle.type",
                    f"Bundle.type is {btype!r}; post a batch, transaction or collection",
                    code="not-supported",
                )
            ]
        )
    if not isinstance(entries, list) or not entries:
        raise FhirDocumentError(
            [issue_error("Bundle.entry", "the Bundle has no entries", code="required")]
        )
    if len(entries) > max_entries:
        detail = f"the Bundle has {len(entries)} entries; the limit is {max_entries}"
        raise FhirDocumentError(
            [issue_error("Bundle.entry", detail, code="too-costly")], too_large=True
        )
    try:
        Bundle.model_validate({k: v for k, v in document.items() if k != "entry"})
    except ValidationError as exc:
        raise FhirDocumentError(structure_errors(exc, base="Bundle")) from None
    items = tuple(
        _entry(entry, base=f"Bundle.entry[{i}]", btype=btype, source=source)
        for i, entry in enumerate(entries)
    )
    return FhirDocument(kind=btype, items=items)


def _entry(entry: Any, *, base: str, btype: str, source: str) -> Located:
    def refused(expression: str, detail: str, code: str = "invalid") -> Located:
        return Located(
            Candidate(pointer=base, errors=(issue_error(expression, detail, code=code),))
        )

    if not isinstance(entry, dict):
        return refused(base, "the entry must be an object")
    try:
        shell = BundleEntry.model_validate({k: v for k, v in entry.items() if k != "resource"})
    except ValidationError as exc:
        return Located(Candidate(pointer=base, errors=tuple(structure_errors(exc, base=base))))
    if btype != "collection":
        if shell.request is None:
            return refused(f"{base}.request", f"a {btype} entry needs a request", "required")
        if shell.request.method not in ("POST", "PUT") or not str(shell.request.url).startswith(
            "Observation"
        ):
            detail = (
                f"request {shell.request.method} {shell.request.url} is not supported;"
                " entries may only create Observations (POST Observation)"
            )
            return refused(f"{base}.request", detail, "not-supported")
    if "resource" not in entry:
        return refused(f"{base}.resource", "the entry has no resource", "required")
    return observation_candidate(entry["resource"], base=f"{base}.resource", source=source)


def observation_candidate(resource: Any, *, base: str, source: str) -> Located:
    """The candidate reading of one Observation found at FHIRPath ``base``."""
    if not isinstance(resource, dict):
        return _refused(base, [issue_error(base, "the resource must be an object")])
    kind = resource.get("resourceType")
    if kind != "Observation":
        detail = f"the resource is a {kind!r}; only Observation resources are taken"
        return _refused(base, [issue_error(base, detail, code="not-supported")], "unsupported")
    try:
        obs = Observation.model_validate(resource)
    except ValidationError as exc:
        return _refused(base, structure_errors(exc, base=base))

    errors: list[dict[str, Any]] = []
    reasons: list[str] = []
    elements: dict[str, str] = {"metric": f"{base}.code"}
    reading: dict[str, Any] = {}

    if obs.status not in READING_STATUSES:
        detail = (
            f"status is {obs.status!r}: only {', '.join(READING_STATUSES)} observations are"
            " readings"
        )
        errors.append(issue_error(f"{base}.status", detail, code="business-rule"))
        reasons.append("status")

    metric = metric_of(obs)
    if metric is None:
        codes = ", ".join(f"{c.system}|{c.code}" for c in obs.code.coding or []) or "none"
        detail = (
            f"Observation.code ({codes}) has no LOINC code pghd takes; use one of {TAKEN_CODES}"
        )
        errors.append(issue_error(f"{base}.code", detail, code="not-supported"))
        reasons.append("unsupported")
    else:
        reading["metric"] = metric.value
        errors += values_of(obs, metric=metric, base=base, reading=reading, elements=elements)

    errors += patient_of(obs, base=base, reading=reading, elements=elements)
    errors += effective_of(obs, base=base, reading=reading, elements=elements, metric=metric)

    if errors:
        return _refused(base, errors, reasons[0] if reasons else "invalid")
    event_id, where = event_id_of(obs, base=base, source=source, patient=reading["patient_id"])
    if event_id is not None:
        reading["event_id"] = event_id
        elements["event_id"] = where
    device = device_of(obs)
    if device is not None:
        reading["device_id"] = device
        elements["device_id"] = f"{base}.device"
    return Located(Candidate(pointer=base, reading=reading), elements)


def _refused(base: str, errors: list[dict[str, Any]], reason: str = "invalid") -> Located:
    return Located(Candidate(pointer=base, errors=tuple(errors), reason=reason))
