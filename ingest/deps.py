"""FastAPI dependencies and their typed aliases.

Everything a route needs comes from here, read off ``app.state`` (set by
:func:`ingest.app.create_app` and its lifespan), so tests swap any of it with
``app.dependency_overrides[get_gateway] = ...``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials

from ingest.auth import API_KEY_HEADER, ApiKeyAuthenticator
from ingest.enrollment import EnrollmentService
from ingest.erasure import Eraser
from ingest.imports import ImportJobs
from ingest.intake import Registry
from ingest.metrics import IngestMetrics
from ingest.ratelimit import SourceRateLimiter
from ingest.settings import IngestSettings
from ingest.webhooks.signing import ReplayGuard
from pghd.access import CredentialBook, Role
from pghd.problems import ProblemError
from pghd.service.auth import authenticate_bearer, bearer_scheme
from pghd.service.oidc import OidcVerifier
from pghd.service.producer import Gateway, kafka_unavailable

__all__ = [
    "AdminDep",
    "AuthenticatorDep",
    "DlqGatewayDep",
    "EnrollmentsDep",
    "EraserDep",
    "GatewayDep",
    "ImportsDep",
    "MetricsDep",
    "RateLimiterDep",
    "RegistryDep",
    "ReplayGuardDep",
    "SettingsDep",
    "SourceDep",
    "authenticate",
    "authenticate_admin",
    "get_authenticator",
    "get_dlq_gateway",
    "get_enrollments",
    "get_gateway",
    "get_imports",
    "get_metrics",
    "get_rate_limiter",
    "get_registry",
    "get_replay_guard",
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
    """Enrollment and consent: who a reading may be stored for.

    503 problem with ``Retry-After`` while the registry is still reading the enrollments
    topic: refusing valid patients because it has not caught up yet would be wrong.
    """
    registry: Registry = request.app.state.registry
    if not getattr(registry, "ready", True):
        retry = str(request.app.state.settings.retry_after_s)
        raise ProblemError(
            status=503,
            slug="registry-loading",
            detail="the enrollment registry is still loading; retry shortly",
            headers={"Retry-After": retry},
        )
    return registry


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
MetricsDep = Annotated[IngestMetrics, Depends(get_metrics)]
AuthenticatorDep = Annotated[ApiKeyAuthenticator, Depends(get_authenticator)]


def unavailable(settings: IngestSettings, detail: str) -> ProblemError:
    """The 503 problem (with ``Retry-After``) for when Kafka cannot take writes."""
    return kafka_unavailable(detail, retry_after_s=settings.retry_after_s)


def get_gateway(request: Request, settings: SettingsDep) -> Gateway:
    """The app's Kafka gateway (started by the lifespan)."""
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise unavailable(settings, "the Kafka gateway is not running")
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def get_imports(request: Request) -> ImportJobs:
    """The import jobs of this instance (``POST /v1/imports/...``)."""
    imports: ImportJobs = request.app.state.imports
    return imports


ImportsDep = Annotated[ImportJobs, Depends(get_imports)]


def get_dlq_gateway(request: Request, settings: SettingsDep) -> Gateway:
    """The app's gateway to the dead-letter topic ``pghd.dlq.v1`` (started by the lifespan)."""
    gateway: Gateway | None = getattr(request.app.state, "dlq_gateway", None)
    if gateway is None:
        raise unavailable(settings, "the Kafka dead-letter gateway is not running")
    return gateway


DlqGatewayDep = Annotated[Gateway, Depends(get_dlq_gateway)]


def get_replay_guard(request: Request) -> ReplayGuard:
    """The app's memory of webhook signatures already accepted (see ingest/webhooks)."""
    guard: ReplayGuard = request.app.state.replay_guard
    return guard


ReplayGuardDep = Annotated[ReplayGuard, Depends(get_replay_guard)]


def get_rate_limiter(request: Request) -> SourceRateLimiter:
    """The app's per-source rate limiter (routes with their own auth call ``enforce``)."""
    limiter: SourceRateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[SourceRateLimiter, Depends(get_rate_limiter)]


def authenticate(
    authenticator: AuthenticatorDep,
    limiter: RateLimiterDep,
    key: Annotated[str | None, Depends(api_key_scheme)],
) -> str:
    """The source (vendor) name of the presented API key; 401 problem when none matches,
    429 problem when the source is over its rate limit."""
    source = authenticator.identify(key)
    if source is None:
        detail = f"missing {API_KEY_HEADER} header" if not key else f"unknown {API_KEY_HEADER}"
        raise ProblemError(
            status=401,
            slug="unauthorized",
            detail=detail,
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    limiter.enforce(source)
    return source


SourceDep = Annotated[str, Depends(authenticate)]


admin_scheme = bearer_scheme(
    "An admin bearer token (PGHD_INGEST_ADMIN_TOKENS, an admin of PGHD_INGEST_USERS_FILE, or"
    " an identity provider's JWT of an admin when PGHD_INGEST_OIDC_ISSUER is set)"
)


def authenticate_admin(
    request: Request,
    presented: Annotated[HTTPAuthorizationCredentials | None, Depends(admin_scheme)],
) -> str:
    """The admin name of the presented bearer token (or of an identity provider's JWT of
    an admin, ``oidc:<name>``); 401 problem when none matches.

    Admin tokens are separate from the device sources' API keys: an API key is no token.
    """
    admins: CredentialBook = request.app.state.admin_credentials
    oidc: OidcVerifier | None = getattr(request.app.state, "oidc", None)
    principal = authenticate_bearer(
        admins, presented, role=Role.ADMIN, what="admin bearer token", oidc=oidc
    )
    return principal.name


AdminDep = Annotated[str, Depends(authenticate_admin)]


def get_enrollments(request: Request) -> EnrollmentService:
    """The enrollment write path (started by the lifespan); 503 problem when not running."""
    service: EnrollmentService | None = getattr(request.app.state, "enrollments", None)
    if service is None:
        raise unavailable(request.app.state.settings, "the enrollment service is not running")
    return service


EnrollmentsDep = Annotated[EnrollmentService, Depends(get_enrollments)]


def get_eraser(request: Request) -> Eraser:
    """The erasure path (made by the lifespan); 503 problem when not running."""
    eraser: Eraser | None = getattr(request.app.state, "eraser", None)
    if eraser is None:
        raise unavailable(request.app.state.settings, "the erasure path is not running")
    return eraser


EraserDep = Annotated[Eraser, Depends(get_eraser)]
