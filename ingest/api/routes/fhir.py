"""``POST /v1/fhir``: FHIR R4 Observations, alone or in a Bundle, into Kafka.

- one Observation: 201 and an informational OperationOutcome naming the stored event, or
  422 and an OperationOutcome of what is wrong;
- a ``batch`` or ``collection`` Bundle: 200 and a ``batch-response`` Bundle with one entry
  per posted entry, in order (``201 Created``, or ``400 Bad Request`` / ``403 Forbidden``
  with an OperationOutcome); the good entries are stored;
- a ``transaction`` Bundle: all or nothing. One bad entry refuses the whole Bundle (422,
  one OperationOutcome listing every issue) and nothing is stored; else 200 and a
  ``transaction-response`` Bundle.

Every error, including auth (401), size (413) and Kafka being down (503 with Retry-After),
is an OperationOutcome (``application/fhir+json``) whose issues name the element as a
FHIRPath expression. The answer comes only after Kafka acknowledged the stored readings.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from ingest.adapters.fhir import FhirDocumentError, read_document
from ingest.adapters.locations import relocate
from ingest.api.fhir_examples import EXAMPLES
from ingest.api.fhir_outcome import entry_status, issue_code
from ingest.body import read_json
from ingest.deps import GatewayDep, MetricsDep, RegistryDep, SettingsDep, SourceDep
from ingest.intake import ItemOutcome, produce, triage
from pghd.problems import ProblemError
from pghd.service.fhir_outcome import (
    FHIR_MEDIA_TYPE,
    FhirResponse,
    FhirRoute,
    issue,
    operation_outcome,
    outcome_response,
)

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/fhir", tags=["fhir"], route_class=FhirRoute)

_MEDIA_TYPES = (FHIR_MEDIA_TYPE, "application/json")
_RESOURCE = {"type": "object", "description": "A FHIR R4 resource (JSON)"}
_CONTENT = {FHIR_MEDIA_TYPE: {"schema": _RESOURCE}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "The Observation was stored (OperationOutcome)", "content": _CONTENT},
    200: {
        "description": "A batch-response or transaction-response Bundle, one entry per entry",
        "content": _CONTENT,
    },
    **{
        status: {"description": f"{text} (OperationOutcome)", "content": _CONTENT}
        for status, text in {
            400: "Body is not JSON",
            401: "Missing or unknown API key",
            413: "Body larger than allowed, or more Bundle entries than PGHD_INGEST_MAX_BATCH",
            415: "Content-Type other than application/fhir+json or application/json",
            422: "Not an acceptable Observation or Bundle, or a transaction with a bad entry",
            503: "Kafka cannot take writes now; retry after Retry-After seconds",
        }.items()
    },
}
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "A FHIR R4 Observation (vital-signs profile codes), or a Bundle of type batch, "
            "transaction or collection of at most PGHD_INGEST_MAX_BATCH Observations"
        ),
        "content": {media: {"schema": _RESOURCE, "examples": EXAMPLES} for media in _MEDIA_TYPES},
    }
}


@router.post(
    "",
    status_code=201,
    summary="Post a FHIR Observation or a Bundle of them",
    response_class=FhirResponse,
    responses=_RESPONSES,
    openapi_extra=_OPENAPI_BODY,
)
async def post_fhir(
    request: Request,
    source: SourceDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    metrics: MetricsDep,
    registry: RegistryDep,
) -> FhirResponse:
    """Validate, canonicalise and produce Observations; answer once Kafka acknowledged them."""
    media = request.headers.get("content-type", FHIR_MEDIA_TYPE).split(";")[0].strip().lower()
    if media not in _MEDIA_TYPES:
        raise ProblemError(
            status=415,
            slug="unsupported-media-type",
            detail=f"Content-Type {media!r} is not taken; send {' or '.join(_MEDIA_TYPES)}",
        )
    document = await read_json(request, limit=settings.max_body_bytes)
    try:
        parsed = read_document(document, source=source, max_entries=settings.max_batch)
    except FhirDocumentError as exc:
        issues = [
            issue(detail=e["detail"], code=e["code"], expression=e["pointer"]) for e in exc.issues
        ]
        return outcome_response(issues, status=413 if exc.too_large else 422)

    outcomes = triage(
        [item.candidate for item in parsed.items],
        source=source,
        received_at=datetime.now(UTC),
        registry=registry,
        max_age=settings.max_reading_age,
        metrics=metrics,
    )
    issues_of = [
        [
            issue(detail=e["detail"], code=issue_code(e, o.reason), expression=e["pointer"])
            for e in relocate(o.errors, item)
        ]
        for item, o in zip(parsed.items, outcomes, strict=True)
    ]
    request_id = getattr(request.state, "request_id", "-")
    bad = sum(not o.accepted for o in outcomes)
    if bad and parsed.kind in ("Observation", "transaction"):
        logger.info(
            "request %s source=%s: %s refused, %d of %d entries bad",
            request_id, source, parsed.kind, bad, len(outcomes),
        )  # fmt: skip
        return outcome_response([i for found in issues_of for i in found], status=422)

    good = [o.measurement for o in outcomes if o.measurement is not None]
    await produce(
        gateway, good, metrics=metrics, request_id=request_id, retry_after_s=settings.retry_after_s
    )
    logger.info(
        "request %s source=%s: %s, %d stored, %d refused",
        request_id, source, parsed.kind, len(good), bad,
    )  # fmt: skip
    if parsed.kind == "Observation":
        return FhirResponse(_stored_outcome(outcomes[0]), status_code=201)
    return FhirResponse(
        {
            "resourceType": "Bundle",
            "type": "transaction-response" if parsed.kind == "transaction" else "batch-response",
            "entry": [
                _response_entry(o, issues) for o, issues in zip(outcomes, issues_of, strict=True)
            ],
        },
        status_code=200,
    )


def _stored_outcome(outcome: ItemOutcome) -> dict[str, Any]:
    assert outcome.measurement is not None
    detail = f"stored as event {outcome.measurement.event_id}"
    return operation_outcome([issue(detail=detail, code="informational", severity="information")])


def _response_entry(outcome: ItemOutcome, issues: list[dict[str, Any]]) -> dict[str, Any]:
    status = entry_status(accepted=outcome.accepted, reason=outcome.reason)
    outcome_resource = _stored_outcome(outcome) if outcome.accepted else operation_outcome(issues)
    return {"response": {"status": status, "outcome": outcome_resource}}
