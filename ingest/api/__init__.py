"""HTTP API of the ingest service: one router per resource under ``routes``."""

from __future__ import annotations

from fastapi import APIRouter

from ingest.api.routes import (
    export,
    fhir,
    health,
    imports,
    measurements,
    omh,
    patients,
    webhooks,
)

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(measurements.router)
api_router.include_router(health.router)
api_router.include_router(patients.router)
api_router.include_router(export.router)
api_router.include_router(webhooks.router)
api_router.include_router(fhir.router)
api_router.include_router(omh.router)
api_router.include_router(imports.router)
