"""``GET /v1/patients/{patient_id}/export``: a patient's readings and findings, streamed.

For administrators, authenticated and audited like the rest of ``/v1/patients`` (the audit
event names the patient, and is written before the first byte leaves). ``format=fhir``
(default) answers a FHIR R4 ``collection`` Bundle (``application/fhir+json``),
``format=omh`` an array of Open mHealth data points (``application/json``); see
:mod:`pghd.export.fhir` and :mod:`pghd.export.omh` for what each holds.

The document is written while InfluxDB is read, a window of the history at a time
(:mod:`pghd.export.influx`), so a long history is never held whole. What can still go
wrong is decided before the answer starts:

- ``404`` when the patient is neither enrolled (now or ever: a withdrawn patient's
  enrollment stays) nor has any stored point: there is nobody to export. An enrolled
  patient with no data gets an empty document, and a patient with data but no enrollment
  (stored while consent was off) gets the data;
- ``503`` + ``Retry-After`` when InfluxDB does not answer, is not configured
  (``PGHD_INGEST_INFLUX_TOKEN`` / ``PGHD_INFLUX_TOKEN``), or the registry is still loading.

If InfluxDB fails after the answer started, the connection is closed without the
document's end: the client sees a truncated body (invalid JSON, an incomplete chunked
transfer), never a complete-looking partial export.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from ingest.deps import AdminDep, EnrollmentsDep, SettingsDep
from ingest.enrollment import RegistryLoading
from ingest.settings import IngestSettings
from pghd.audit_trail import note_patients
from pghd.contracts import ID_PATTERN
from pghd.export.document import MEDIA_TYPES, ExportFormat, export_chunks
from pghd.export.influx import ExportStore, ExportStoreError
from pghd.export.records import StoredFinding, StoredReading
from pghd.problems import ProblemError, problem_responses
from pghd.pseudonym import pseudonym

__all__ = ["get_export_store", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/patients", tags=["patients"])

PatientPath = Annotated[str, Path(pattern=ID_PATTERN, description="Opaque patient identifier")]
FormatQuery = Annotated[
    ExportFormat,
    Query(
        alias="format",
        description="fhir: a FHIR R4 collection Bundle; omh: an array of Open mHealth data points",
    ),
]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The export, streamed: a FHIR Bundle or an array of data points",
        "content": {
            MEDIA_TYPES[ExportFormat.FHIR]: {"schema": {"type": "object"}},
            MEDIA_TYPES[ExportFormat.OMH]: {"schema": {"type": "array"}},
        },
    },
    **problem_responses(
        {
            401: "Missing or unknown admin bearer token",
            404: "The patient is not enrolled and has no stored data",
            422: "Invalid patient id or format",
            503: "InfluxDB is down or not configured, or the registry is still loading",
        }
    ),
}


def _unavailable(settings: IngestSettings, slug: str, detail: str) -> ProblemError:
    return ProblemError(
        status=503, slug=slug, detail=detail, headers={"Retry-After": str(settings.retry_after_s)}
    )


def get_export_store(request: Request, settings: SettingsDep) -> ExportStore:
    """The app's reader of stored points; 503 problem when InfluxDB is not configured."""
    store: ExportStore | None = getattr(request.app.state, "export_store", None)
    if store is None:
        raise _unavailable(
            settings,
            "export-unavailable",
            "exports need InfluxDB: set PGHD_INGEST_INFLUX_TOKEN (or PGHD_INFLUX_TOKEN)",
        )
    return store


async def _nothing() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing


async def _guarded(chunks: AsyncIterator[bytes], patient_id: str) -> AsyncIterator[bytes]:
    """``chunks``; a failure midway is logged and cuts the answer short (see the module)."""
    sent = 0
    try:
        async for chunk in chunks:
            sent += len(chunk)
            yield chunk
    except Exception as exc:
        logger.error("export of %s cut short after %d bytes: %s", pseudonym(patient_id), sent, exc)
        raise
    logger.info("export of %s sent: %d bytes", pseudonym(patient_id), sent)


@router.get(
    "/{patient_id}/export",
    summary="Export a patient's readings and findings (FHIR R4 Bundle or Open mHealth)",
    response_class=StreamingResponse,
    responses=_RESPONSES,
)
async def export_patient(
    patient_id: PatientPath,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
    store: Annotated[ExportStore, Depends(get_export_store)],
    format_: FormatQuery = ExportFormat.FHIR,
) -> StreamingResponse:
    """Every stored reading of the patient, oldest first, then every finding."""
    note_patients([patient_id])
    try:
        enrollment = service.current(patient_id)
    except RegistryLoading:
        raise _unavailable(
            settings, "registry-loading", "the enrollment registry is still loading; retry shortly"
        ) from None
    try:
        extent = await store.extent(patient_id)
    except ExportStoreError as exc:
        raise _unavailable(settings, "store-unavailable", f"cannot read InfluxDB: {exc}") from exc
    if enrollment is None and extent is None:
        raise ProblemError(
            status=404,
            slug="patient-not-found",
            detail=f"patient {patient_id} is not enrolled and has no stored data",
        )
    readings: AsyncIterator[StoredReading] = (
        _nothing() if extent is None else store.readings(patient_id, extent)
    )
    findings: AsyncIterator[StoredFinding] = (
        _nothing() if extent is None else store.findings(patient_id, extent)
    )
    chunks = export_chunks(format_, patient_id, readings, findings, now=datetime.now(UTC))
    filename = f"{patient_id}-{format_.value}.json"  # ID_PATTERN: no quote, no slash
    return StreamingResponse(
        _guarded(chunks, patient_id),
        media_type=MEDIA_TYPES[format_],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
