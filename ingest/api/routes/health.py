"""Operational endpoints: liveness, readiness (Kafka reachable) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.deps import GatewayDep, MetricsDep, SettingsDep, unavailable
from pghd.problems import JsonResponse, problem_responses

__all__ = ["router"]

router = APIRouter(tags=["health"])

_NOT_READY = problem_responses({503: "Kafka is not reachable, or the registry is loading"})


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JsonResponse:
    """200 as long as the process serves requests."""
    return JsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: Kafka is reachable and the enrollment registry loaded",
    responses=_NOT_READY,
)
async def readyz(gateway: GatewayDep, settings: SettingsDep, request: Request) -> JsonResponse:
    """200 when a Kafka broker answers and the registry has caught up, else 503 problem+json."""
    if not await gateway.ready():
        raise unavailable(settings, "Kafka is not reachable")
    for name, support in getattr(request.app.state, "support_gateways", {}).items():
        if not await support.ready():  # webhooks' dead letters, enrollment writes
            raise unavailable(settings, f"the {name} producer is not connected to Kafka")
    if not getattr(request.app.state.registry, "ready", True):
        raise unavailable(settings, "the enrollment registry is still loading")
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
