"""FastAPI dependencies and their typed aliases.

Everything a route needs comes from here, read off ``app.state`` (set by
:func:`ingest.app.create_app` and its lifespan), so tests swap any of it with
``app.dependency_overrides[get_gateway] = ...``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from ingest.auth import API_KEY_HEADER, ApiKeyAuthenticator
from ingest.intake import Registry
from ingest.kafka_gateway import Gateway
from ingest.metrics import IngestMetrics
from ingest.problems import ProblemError
from ingest.settings import IngestSettings

__all__ = [
    "AuthenticatorDep",
    "GatewayDep",
    "MetricsDep",
    "RegistryDep",
    "SettingsDep",
    "SourceDep",
    "authenticate",
    "get_authenticator",
    "get_gateway",
    "get_metrics",
    "get_registry",
    "get_settings",
    "unavailable",
]

api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The API key issued to the sending vendor or app",
)


def get_settings(request: Request) -> IngestSettings:
    """The settings the app was created with."""
    settings: IngestSettings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> IngestMetrics:
    """The app's Prometheus metrics."""
    metrics: IngestMetrics = request.app.state.metrics
    return metrics


def get_authenticator(request: Request) -> ApiKeyAuthenticator:
    """The app's API-key authenticator."""
    authenticator: ApiKeyAuthenticator = request.app.state.authenticator
    return authenticator


def get_registry(request: Request) -> Registry:
    """Enrollment and consent: who a reading may be stored for."""
    registry: Registry = request.app.state.registry
    return registry


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[IngestMetrics, Depends(get_metrics)]
AuthenticatorDep = Annotated[ApiKeyAuthenticator, Depends(get_authenticator)]


def unavailable(settings: IngestSettings, detail: str) -> ProblemError:
    """The 503 problem (with ``Retry-After``) for when Kafka cannot take writes."""
    return ProblemError(
        status=503,
        slug="kafka-unavailable",
        detail=detail,
        headers={"Retry-After": str(settings.retry_after_s)},
    )


def get_gateway(request: Request, settings: SettingsDep) -> Gateway:
    """The app's Kafka gateway (started by the lifespan)."""
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise unavailable(settings, "the Kafka gateway is not running")
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def authenticate(
    authenticator: AuthenticatorDep,
    key: Annotated[str | None, Depends(api_key_scheme)],
) -> str:
    """The source (vendor) name of the presented API key; 401 problem when none matches."""
    source = authenticator.identify(key)
    if source is None:
        detail = f"missing {API_KEY_HEADER} header" if not key else f"unknown {API_KEY_HEADER}"
        raise ProblemError(
            status=401,
            slug="unauthorized",
            detail=detail,
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    return source


SourceDep = Annotated[str, Depends(authenticate)]
