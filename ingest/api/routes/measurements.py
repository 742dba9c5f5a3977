"""``POST /v1/measurements``: readings in, canonical measurements out to Kafka.

The body is parsed here (orjson) rather than by FastAPI, so that one bad item of a batch
does not fail the others: every item is validated and canonicalised on its own, the good
ones are produced, and the bad ones are reported item by item with a JSON pointer into the
body. The answer is 202 only once Kafka acknowledged every good item.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, TypeAdapter

from ingest.body import read_json
from ingest.deps import GatewayDep, MetricsDep, RegistryDep, SettingsDep, SourceDep
from ingest.intake import Candidate, error, produce, triage
from pghd.problems import ItemError, JsonResponse, ProblemError, problem_responses
from pghd.readings import ReadingIn

__all__ = ["OPENAPI_SCHEMAS", "IngestResult", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/measurements", tags=["measurements"])

_REF_TEMPLATE = "#/components/schemas/{model}"
_EXAMPLE: dict[str, Any] = ReadingIn.model_json_schema()["examples"][0]
_BODY_SCHEMA = TypeAdapter(ReadingIn | list[ReadingIn]).json_schema(ref_template=_REF_TEMPLATE)
OPENAPI_SCHEMAS: dict[str, Any] = _BODY_SCHEMA.pop("$defs", {})
"""Schemas the request body refers to; the app adds them to the OpenAPI components."""


class ItemAccepted(BaseModel):
    index: int
    status: Literal["accepted"] = "accepted"
    event_id: str


class ItemRejected(BaseModel):
    index: int
    status: Literal["rejected"] = "rejected"
    errors: list[ItemError]


class IngestResult(BaseModel):
    """What happened to each item of the request, in order."""

    accepted: int
    rejected: int
    items: list[ItemAccepted | ItemRejected]


_RESPONSES = problem_responses(
    {
        400: "Body is not JSON, or not valid gzip",
        401: "Missing or unknown API key",
        413: (
            "Body larger than PGHD_INGEST_MAX_BODY_BYTES (default 5 MiB; for a gzip body, "
            "compressed or decompressed) or batch longer than PGHD_INGEST_MAX_BATCH "
            "(default 1000 readings)"
        ),
        415: "Content-Encoding other than gzip or identity",
        422: "No item of the body is an acceptable reading",
        503: "Kafka cannot take writes now; retry after Retry-After seconds",
    }
)

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "One reading, or an array of 1..PGHD_INGEST_MAX_BATCH (default 1000) readings; "
            "at most PGHD_INGEST_MAX_BODY_BYTES (default 5 MiB), and it may be sent with "
            "`Content-Encoding: gzip` (the limit then holds for the decompressed body too)"
        ),
        "content": {
            "application/json": {
                "schema": _BODY_SCHEMA,
                "examples": {
                    "single": {"summary": "One reading", "value": _EXAMPLE},
                    "batch": {
                        "summary": "A batch",
                        "value": [
                            _EXAMPLE,
                            {
                                "patient_id": "patient-001",
                                "metric": "blood_glucose",
                                "value": 5.4,
                                "unit": "mmol/L",
                                "effective_time": "2026-11-25T08:05:00Z",
                            },
                        ],
                    },
                },
            }
        },
    }
}


@router.post(
    "",
    status_code=202,
    summary="Post one reading or a batch",
    response_model=IngestResult,
    responses=_RESPONSES,
    openapi_extra=_OPENAPI_BODY,
)
async def post_measurements(
    request: Request,
    source: SourceDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    metrics: MetricsDep,
    registry: RegistryDep,
) -> JsonResponse:
    """Validate, canonicalise and produce readings; 202 once Kafka acknowledged them."""
    document = await read_json(request, limit=settings.max_body_bytes)
    items, batch = _items_of(document, max_batch=settings.max_batch)

    received_at = datetime.now(UTC)
    candidates = [
        Candidate(pointer=f"/{index}" if batch else "", reading=raw)
        if isinstance(raw, dict)
        else Candidate(
            pointer=f"/{index}" if batch else "",
            errors=(error(f"/{index}" if batch else "", "a reading must be a JSON object"),),
        )
        for index, raw in enumerate(items)
    ]
    outcomes = triage(
        candidates,
        source=source,
        received_at=received_at,
        registry=registry,
        max_age=settings.max_reading_age,
        metrics=metrics,
    )
    results: list[dict[str, Any]] = [
        {"index": i, "status": "accepted", "event_id": o.measurement.event_id}
        if o.measurement is not None
        else {"index": i, "status": "rejected", "errors": o.errors}
        for i, o in enumerate(outcomes)
    ]
    good = [o.measurement for o in outcomes if o.measurement is not None]
    rejected = len(outcomes) - len(good)

    request_id = getattr(request.state, "request_id", "-")
    if not good:
        logger.info(
            "request %s source=%s: all %d readings rejected", request_id, source, len(items)
        )
        raise ProblemError(
            status=422,
            slug="invalid-readings",
            detail=f"none of the {len(items)} readings is acceptable",
            errors=[e for o in outcomes for e in o.errors],
        )

    await produce(
        gateway,
        good,
        metrics=metrics,
        request_id=request_id,
        retry_after_s=settings.retry_after_s,
    )
    logger.info(
        "request %s source=%s: %d accepted, %d rejected",
        request_id,
        source,
        len(good),
        rejected,
    )
    return JsonResponse(
        {"accepted": len(good), "rejected": rejected, "items": results},
        status_code=202,
    )


def _items_of(document: Any, *, max_batch: int) -> tuple[list[Any], bool]:
    """The items of the body and whether it was a batch (array)."""
    if isinstance(document, dict):
        return [document], False
    if not isinstance(document, list):
        raise ProblemError(
            status=422,
            slug="invalid-body",
            detail="the body must be a reading object or an array of readings",
        )
    if not document:
        raise ProblemError(
            status=422, slug="empty-batch", detail=f"the batch is empty; send 1..{max_batch}"
        )
    if len(document) > max_batch:
        raise ProblemError(
            status=413,
            slug="batch-too-large",
            detail=f"the batch has {len(document)} readings; the limit is {max_batch} per request",
        )
    return document, True
