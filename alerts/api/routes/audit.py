"""``/v1/audit``: who read or changed a patient's data, for admins (auditors).

Answers from ``pghd.audit.v1`` (see :mod:`pghd.audit`): every request to the care-team API's
and ingest's patient routes, answered or refused. Reading the audit is itself audited.
``format=fhir`` answers a FHIR R4 Bundle (``searchset``) of ``AuditEvent`` resources.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from kafka.errors import KafkaError

from alerts.api.audit_log import read_audit
from alerts.api.deps import PrincipalDep, SettingsDep, authenticate
from pghd.access import Permission
from pghd.audit import AuditEvent, to_fhir
from pghd.audit_trail import note_patients
from pghd.contracts import ID_PATTERN
from pghd.problems import JsonResponse, ProblemError, problem_responses
from pghd.service.producer import kafka_unavailable

__all__ = ["router"]

FHIR_MEDIA_TYPE = "application/fhir+json"

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(authenticate)])


@router.get(
    "",
    summary="Audit events: who read or changed a patient's data, and how it went",
    response_model=list[AuditEvent],
    responses={
        200: {
            "description": "The events (JSON), or with format=fhir a FHIR R4 Bundle of them",
            "content": {
                FHIR_MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "description": "FHIR R4 Bundle (searchset) of AuditEvent resources",
                    }
                }
            },
        },
        **problem_responses(
            {
                401: "Missing or unknown bearer token",
                403: "Only admins read the audit trail",
                503: "Kafka cannot be read now; retry after Retry-After seconds",
            }
        ),
    },
)
async def list_audit(
    principal: PrincipalDep,
    settings: SettingsDep,
    patient_id: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=128)] = None,
    since: Annotated[
        datetime | None, Query(description="events recorded at or after (default: 30 days ago)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    format: Annotated[Literal["json", "fhir"], Query()] = "json",
) -> Any:
    """The events about ``patient_id`` (every patient when left out), oldest first."""
    if not principal.may(Permission.AUDIT):
        raise ProblemError(
            status=403,
            slug="forbidden-role",
            detail=f"{principal.name} is a {principal.role.value}: only admins read the audit",
        )
    if patient_id is not None:
        note_patients([patient_id])
    start = since or datetime.now(UTC) - timedelta(days=30)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    try:
        events = await asyncio.to_thread(
            read_audit,
            settings.kafka_bootstrap,
            patient_id=patient_id,
            since=start,
            limit=limit,
            timeout_s=settings.produce_timeout_s * 6,
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        raise kafka_unavailable(
            f"the audit trail cannot be read now: {exc}", retry_after_s=settings.retry_after_s
        ) from exc
    note_patients(patient for event in events for patient in event.patients)
    if format == "fhir":
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(events),
            "entry": [{"resource": to_fhir(e)} for e in events],
        }
        return JsonResponse(bundle, media_type=FHIR_MEDIA_TYPE)
    return events
