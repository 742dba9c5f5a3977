"""Operational endpoints: liveness, readiness (read model caught up) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from alerts.api.deps import MetricsDep, ReadModelDep, SettingsDep
from pghd.problems import JsonResponse, ProblemError, problem_responses

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JsonResponse:
    """200 as long as the process serves requests."""
    return JsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: the alerts topic was read up to its end at startup",
    responses=problem_responses({503: "Still reading the alert topics (or Kafka unreachable)"}),
)
async def readyz(model: ReadModelDep, settings: SettingsDep) -> JsonResponse:
    """200 once the read model caught up with Kafka, else 503 problem+json."""
    if not model.ready:
        raise ProblemError(
            status=503,
            slug="not-ready",
            detail="still reading the alert topics from Kafka",
            headers={"Retry-After": str(settings.retry_after_s)},
        )
    return JsonResponse({"status": "ready", "alerts": len(model.alerts)})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(registry: MetricsDep) -> Response:
    """The app's metrics in the Prometheus text format."""
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
