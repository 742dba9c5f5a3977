"""``POST /v1/measurements``: readings in, canonical measurements out to Kafka.

The body is parsed here (orjson) rather than by FastAPI, so that one bad item of a batch
does not fail the others: every item is validated and canonicalised on its own, the good
ones are produced, and the bad ones are reported item by item with a JSON pointer into the
body. The answer is 202 only once Kafka acknowledged every good item.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, TypeAdapter, ValidationError

from ingest.deps import GatewayDep, MetricsDep, SettingsDep, SourceDep, unavailable
from ingest.kafka_gateway import Gateway, KafkaUnavailable, Record
from ingest.metrics import IngestMetrics
from ingest.problems import ItemError, JsonResponse, ProblemError, problem_responses
from ingest.settings import IngestSettings
from pghd import wire
from pghd.contracts import Measurement
from pghd.readings import ReadingIn, ReadingRejected, canonicalize

__all__ = ["OPENAPI_SCHEMAS", "IngestResult", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/measurements", tags=["measurements"])

_REF_TEMPLATE = "#/components/schemas/{model}"
_EXAMPLE: dict[str, Any] = ReadingIn.model_json_schema()["examples"][0]
_BODY_SCHEMA = TypeAdapter(ReadingIn | list[ReadingIn]).json_schema(ref_template=_REF_TEMPLATE)
OPENAPI_SCHEMAS: dict[str, Any] = _BODY_SCHEMA.pop("$defs", {})
"""Schemas the request body refers to; the app adds them to the OpenAPI components."""

_REASONS = {"unit": "unit", "effective_time": "future_time"}


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
        400: "Body is not JSON",
        401: "Missing or unknown API key",
        413: "Body or batch larger than allowed",
        422: "No item of the body is an acceptable reading",
        503: "Kafka cannot take writes now; retry after Retry-After seconds",
    }
)

_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "description": "One reading, or an array of 1..max_batch readings",
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
) -> JsonResponse:
    """Validate, canonicalise and produce readings; 202 once Kafka acknowledged them."""
    body = await _read_body(request, limit=settings.max_body_bytes)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(
            status=400, slug="malformed-json", detail=f"body is not JSON: {exc}"
        ) from None
    items, batch = _items_of(document, max_batch=settings.max_batch)

    received_at = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    good: list[Measurement] = []
    rejected_reasons: list[str] = []
    for index, raw in enumerate(items):
        base = f"/{index}" if batch else ""
        outcome = _triage(raw, source=source, received_at=received_at, base=base)
        if isinstance(outcome, Measurement):
            good.append(outcome)
            results.append({"index": index, "status": "accepted", "event_id": outcome.event_id})
        else:
            errors, reason = outcome
            rejected_reasons.append(reason)
            results.append({"index": index, "status": "rejected", "errors": errors})
    for reason in rejected_reasons:
        metrics.readings_rejected.labels(reason=reason).inc()

    request_id = getattr(request.state, "request_id", "-")
    if not good:
        logger.info(
            "request %s source=%s: all %d readings rejected", request_id, source, len(items)
        )
        raise ProblemError(
            status=422,
            slug="invalid-readings",
            detail=f"none of the {len(items)} readings is acceptable",
            errors=[e for r in results for e in r["errors"]],
        )

    await _produce(gateway, good, settings=settings, metrics=metrics, request_id=request_id)
    for measurement in good:
        metrics.readings_accepted.labels(metric=measurement.metric.value).inc()
        logger.debug("request %s accepted event %s", request_id, measurement.event_id)
    logger.info(
        "request %s source=%s: %d accepted, %d rejected",
        request_id,
        source,
        len(good),
        len(rejected_reasons),
    )
    return JsonResponse(
        {"accepted": len(good), "rejected": len(rejected_reasons), "items": results},
        status_code=202,
    )


async def _read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without reading it all."""
    too_large = ProblemError(
        status=413, slug="body-too-large", detail=f"the body is larger than {limit} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


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


def _triage(
    raw: Any, *, source: str, received_at: datetime, base: str
) -> Measurement | tuple[list[dict[str, Any]], str]:
    """The canonical measurement of one item, or its errors and the reason to count."""
    try:
        reading = ReadingIn.model_validate(raw)
    except ValidationError as exc:
        errors = [
            _error(base, [str(p) for p in e["loc"]], _message(e))
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return errors, "invalid"
    try:
        return canonicalize(reading, vendor=source, received_at=received_at)
    except ReadingRejected as exc:
        errors = [_error(base, [p.field], p.message) for p in exc.problems]
        return errors, _REASONS.get(exc.problems[0].field, "range")


def _error(base: str, loc: list[str], detail: str) -> dict[str, Any]:
    pointer = base + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in loc)
    return {"pointer": pointer, "field": ".".join(loc) or None, "detail": detail}


def _message(error: Any) -> str:
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


async def _produce(
    gateway: Gateway,
    good: list[Measurement],
    *,
    settings: IngestSettings,
    metrics: IngestMetrics,
    request_id: str,
) -> None:
    records: list[Record] = [(m.patient_id.encode(), wire.encode(m)) for m in good]
    started = time.perf_counter()
    try:
        await gateway.send_batch(records)
    except KafkaUnavailable as exc:
        metrics.produce_seconds.labels(outcome="error").observe(time.perf_counter() - started)
        logger.warning("request %s: %d readings not produced: %s", request_id, len(good), exc)
        raise unavailable(settings, f"readings were not stored, retry later: {exc}") from exc
    metrics.produce_seconds.labels(outcome="ok").observe(time.perf_counter() - started)
