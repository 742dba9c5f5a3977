"""Readiness (the read model caught up); liveness and metrics: :mod:`pghd.service.health`."""

from __future__ import annotations

from fastapi import APIRouter

from alerts.api.deps import ReadModelDep, SettingsDep
from pghd.problems import JsonResponse, problem_responses
from pghd.service import health as shared
from pghd.service.follower import not_ready

__all__ = ["router"]

router = APIRouter(tags=["health"])
router.include_router(shared.router)


@router.get(
    "/readyz",
    summary="Readiness: the alerts topic was read up to its end at startup",
    responses=problem_responses({503: "Still reading the alert topics (or Kafka unreachable)"}),
)
async def readyz(model: ReadModelDep, settings: SettingsDep) -> JsonResponse:
    """200 once the read model caught up with Kafka, else 503 problem+json."""
    if not model.ready:
        raise not_ready(
            "still reading the alert topics from Kafka", retry_after_s=settings.retry_after_s
        )
    return JsonResponse({"status": "ready", "alerts": len(model.alerts)})
