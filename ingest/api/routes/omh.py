"""``POST /v1/omh``: Open mHealth data points into Kafka.

The body is one data point (``header`` + ``body``) or an array of them. The answer has the
shape of ``POST /v1/measurements``: 202 with a result per data point (errors carry JSON
pointers into the posted body), 422 problem+json when none is acceptable, 503 with
Retry-After when Kafka cannot take them. The patient of a data point is its
``header.user_id``, else the ``patient_id`` query parameter (see :mod:`ingest.adapters.omh`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ingest.adapters.locations import relocate
from ingest.adapters.omh import SCHEMAS, data_point_candidate, data_points
from ingest.api.routes.measurements import IngestResult
from ingest.body import read_json
from ingest.deps import GatewayDep, MetricsDep, RegistryDep, SettingsDep, SourceDep
from ingest.intake import produce, triage
from pghd.contracts import ID_PATTERN
from pghd.problems import JsonResponse, ProblemError, problem_responses

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/omh", tags=["open mhealth"])

_EXAMPLE: dict[str, Any] = {
    "header": {
        "id": "123e4567-e89b-12d3-a456-426655440000",
        "creation_date_time": "2026-11-25T07:25:00Z",
        "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
        "acquisition_provenance": {"source_name": "RunKeeper", "modality": "sensed"},
        "user_id": "patient-001",
    },
    "body": {
        "heart_rate": {"value": 50, "unit": "beats/min"},
        "effective_time_frame": {"date_time": "2026-11-25T07:25:00Z"},
        "temporal_relationship_to_physical_activity": "at rest",
    },
}
_STEPS: dict[str, Any] = {
    "header": {
        "id": "7c1e4a8e-4b7f-4f8e-9c52-0d4b3e6f1a20",
        "creation_date_time": "2026-11-25T07:30:00Z",
        "schema_id": {"namespace": "omh", "name": "step-count", "version": "3.0"},
    },
    "body": {
        "step_count": {"value": 10600, "unit": "steps"},
        "effective_time_frame": {
            "time_interval": {
                "start_date_time": "2026-11-25T06:25:00Z",
                "end_date_time": "2026-11-25T07:25:00Z",
            }
        },
    },
}
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "One Open mHealth data point or an array of 1..PGHD_INGEST_MAX_BATCH; schemas: "
            + ", ".join(SCHEMAS)
        ),
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "object", "required": ["header", "body"]},
                        {"type": "array", "items": {"type": "object"}, "minItems": 1},
                    ]
                },
                "examples": {
                    "single": {"summary": "One heart-rate data point", "value": _EXAMPLE},
                    "batch": {
                        "summary": "A step count without user_id (?patient_id=patient-001)",
                        "value": [_STEPS],
                    },
                },
            }
        },
    }
}
_RESPONSES = problem_responses(
    {
        400: "Body is not JSON",
        401: "Missing or unknown API key",
        413: "Body or array larger than allowed",
        422: "No data point of the body is an acceptable reading",
        503: "Kafka cannot take writes now; retry after Retry-After seconds",
    }
)

PatientParam = Annotated[
    str | None,
    Query(
        pattern=ID_PATTERN,
        description="The patient of the data points that have no header.user_id",
    ),
]


@router.post(
    "",
    status_code=202,
    summary="Post Open mHealth data points",
    response_model=IngestResult,
    responses=_RESPONSES,
    openapi_extra=_OPENAPI_BODY,
)
async def post_omh(
    request: Request,
    source: SourceDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    metrics: MetricsDep,
    registry: RegistryDep,
    patient_id: PatientParam = None,
) -> JsonResponse:
    """Validate, canonicalise and produce data points; 202 once Kafka acknowledged them."""
    document = await read_json(request, limit=settings.max_body_bytes)
    try:
        points, batch = data_points(document)
    except ValueError as exc:
        raise ProblemError(status=422, slug="invalid-body", detail=str(exc)) from None
    if len(points) > settings.max_batch:
        raise ProblemError(
            status=413,
            slug="batch-too-large",
            detail=f"the array has {len(points)} data points; the limit is {settings.max_batch}",
        )

    located = [
        data_point_candidate(p, pointer=f"/{i}" if batch else "", patient_id=patient_id)
        for i, p in enumerate(points)
    ]
    outcomes = triage(
        [item.candidate for item in located],
        source=source,
        received_at=datetime.now(UTC),
        registry=registry,
        max_age=settings.max_reading_age,
        metrics=metrics,
    )
    errors_of = [relocate(o.errors, item) for item, o in zip(located, outcomes, strict=True)]
    results: list[dict[str, Any]] = [
        {"index": i, "status": "accepted", "event_id": o.measurement.event_id}
        if o.measurement is not None
        else {"index": i, "status": "rejected", "errors": errors_of[i]}
        for i, o in enumerate(outcomes)
    ]
    good = [o.measurement for o in outcomes if o.measurement is not None]
    request_id = getattr(request.state, "request_id", "-")
    if not good:
        logger.info(
            "request %s source=%s: all %d data points refused", request_id, source, len(points)
        )
        raise ProblemError(
            status=422,
            slug="invalid-readings",
            detail=f"none of the {len(points)} data points is acceptable",
            errors=[e for errors in errors_of for e in errors],
        )
    await produce(
        gateway, good, metrics=metrics, request_id=request_id, retry_after_s=settings.retry_after_s
    )
    rejected = len(outcomes) - len(good)
    logger.info(
        "request %s source=%s: %d accepted, %d rejected", request_id, source, len(good), rejected
    )
    return JsonResponse(
        {"accepted": len(good), "rejected": rejected, "items": results}, status_code=202
    )
