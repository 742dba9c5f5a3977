"""Route modules, one per resource, each with its own ``APIRouter``; :data:`api_router` has all."""

from __future__ import annotations

from fastapi import APIRouter

from alerts.api.routes import alerts, audit, care_plans, feedback, fhir, health, me, silences

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(alerts.router)
api_router.include_router(silences.router)
api_router.include_router(care_plans.router)
api_router.include_router(audit.router)
api_router.include_router(fhir.router)
api_router.include_router(me.router)
api_router.include_router(feedback.router)
api_router.include_router(health.router)
