"""Readiness (Kafka reachable, registry loaded); liveness and metrics: pghd.service.health."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ingest.deps import GatewayDep, SettingsDep, unavailable
from pghd.problems import JsonResponse, problem_responses
from pghd.service import health as shared

__all__ = ["router"]

router = APIRouter(tags=["health"])
router.include_router(shared.router)

_NOT_READY = problem_responses({503: "Kafka is not reachable, or the registry is loading"})


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
