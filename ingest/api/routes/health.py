"""Operational endpoints: liveness, readiness (Kafka reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.deps import GatewayDep, MetricsDep, SettingsDep, unavailable
from ingest.problems import JsonResponse, problem_responses

__all__ = ["router"]

router = APIRouter(tags=["health"])

_NOT_READY = problem_responses({503: "Kafka is not reachable"})


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JsonResponse:
    """200 as long as the process serves requests."""
    return JsonResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: Kafka is reachable", responses=_NOT_READY)
async def readyz(gateway: GatewayDep, settings: SettingsDep) -> JsonResponse:
    """200 when a Kafka broker answers, else 503 problem+json."""
    if not await gateway.ready():
        raise unavailable(settings, "Kafka is not reachable")
    return JsonResponse({"status": "ready", "kafka": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(registry: MetricsDep) -> Response:
    """The app's metrics in the Prometheus text format."""
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
