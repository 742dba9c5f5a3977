"""The ingest FastAPI application: :func:`create_app` builds it from :class:`IngestSettings`.

The lifespan starts the :class:`KafkaGateway` (which connects in the background, so the app
comes up even when Kafka is down) and stops it on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import pghd
from ingest.api import api_router
from ingest.api.routes.measurements import OPENAPI_SCHEMAS
from ingest.auth import ApiKeyAuthenticator
from ingest.intake import AllowAll
from ingest.kafka_gateway import KafkaGateway
from ingest.metrics import IngestMetrics, ObservabilityMiddleware
from ingest.problems import PROBLEM_SCHEMAS, JsonResponse, install_handlers
from ingest.settings import IngestSettings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the Kafka gateway for as long as the app serves."""
    settings: IngestSettings = app.state.settings
    gateway = KafkaGateway(
        bootstrap=settings.kafka_bootstrap,
        produce_timeout_s=settings.produce_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        linger_ms=settings.kafka_linger_ms,
        compression=None if settings.kafka_compression == "none" else settings.kafka_compression,
    )
    await gateway.start()
    app.state.gateway = gateway
    logger.info("ingest started; kafka at %s", settings.kafka_bootstrap)
    try:
        yield
    finally:
        app.state.gateway = None
        await gateway.stop()
        logger.info("ingest stopped")


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Build the ingest app; settings come from the environment when not given."""
    settings = settings if settings is not None else IngestSettings()
    app = FastAPI(
        title="pghd ingest",
        version=pghd.__version__,
        summary="Webhooks that take patient-generated health readings into Kafka",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    metrics = IngestMetrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.authenticator = ApiKeyAuthenticator(settings.api_keys)
    app.state.gateway = None
    app.state.registry = AllowAll()
    if not settings.api_keys:
        logger.warning(
            "no API keys configured (PGHD_INGEST_API_KEYS): every request will be refused"
        )
    install_handlers(app)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    app.include_router(api_router)
    _document_request_bodies(app)
    return app


def _document_request_bodies(app: FastAPI) -> None:
    """Add the schemas that hand-parsed request bodies refer to to the OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in {**PROBLEM_SCHEMAS, **OPENAPI_SCHEMAS}.items():
                components.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
