"""FastAPI dependencies and their typed aliases.

Everything a route needs comes from here, read off ``app.state`` (set by
:func:`alerts.api.app.create_app` and its lifespan), so tests swap any of it with
``app.dependency_overrides[get_producer] = ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.api.auth import TokenAuthenticator
from alerts.api.metrics import CareApiMetrics
from alerts.api.problems import ProblemError
from alerts.api.producer import CommandProducer, RecordPublisher
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.alerting import RoutingConfig

__all__ = [
    "MetricsDep",
    "ProducerDep",
    "PublisherDep",
    "ReadModelDep",
    "SettingsDep",
    "TeamOfDep",
    "UserDep",
    "authenticate",
    "get_authenticator",
    "get_metrics",
    "get_producer",
    "get_publisher",
    "get_read_model",
    "get_settings",
    "get_team_of",
    "unavailable",
]

bearer_scheme = HTTPBearer(
    auto_error=False, description="The bearer token issued to a care-team member or team"
)

TeamOf = Callable[[str], str | None]


def get_settings(request: Request) -> CareApiSettings:
    """The settings the app was created with."""
    settings: CareApiSettings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> CareApiMetrics:
    """The app's Prometheus metrics."""
    metrics: CareApiMetrics = request.app.state.metrics
    return metrics


def get_authenticator(request: Request) -> TokenAuthenticator:
    """The app's bearer-token authenticator."""
    authenticator: TokenAuthenticator = request.app.state.authenticator
    return authenticator


def get_read_model(request: Request) -> ReadModel:
    """The alerts and silences read from Kafka."""
    model: ReadModel = request.app.state.read_model
    return model


def get_team_of(request: Request) -> TeamOf | None:
    """patient id -> care team, from the routing config; None when none is configured."""
    routing: RoutingConfig | None = request.app.state.routing
    return None if routing is None else routing.team_of


SettingsDep = Annotated[CareApiSettings, Depends(get_settings)]
MetricsDep = Annotated[CareApiMetrics, Depends(get_metrics)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
TeamOfDep = Annotated[TeamOf | None, Depends(get_team_of)]


def unavailable(settings: CareApiSettings, detail: str) -> ProblemError:
    """The 503 problem (with ``Retry-After``) for when Kafka cannot take commands."""
    return ProblemError(
        status=503,
        slug="kafka-unavailable",
        detail=detail,
        headers={"Retry-After": str(settings.retry_after_s)},
    )


def get_producer(request: Request, settings: SettingsDep) -> CommandProducer:
    """The app's command producer (started by the lifespan)."""
    producer: CommandProducer | None = getattr(request.app.state, "producer", None)
    if producer is None:
        raise unavailable(settings, "the Kafka producer is not running")
    return producer


ProducerDep = Annotated[CommandProducer, Depends(get_producer)]


def get_publisher(request: Request, settings: SettingsDep) -> RecordPublisher:
    """The app's producer as a writer of plain records (care plans), started by the lifespan."""
    publisher: RecordPublisher | None = getattr(request.app.state, "producer", None)
    if publisher is None:
        raise unavailable(settings, "the Kafka producer is not running")
    return publisher


PublisherDep = Annotated[RecordPublisher, Depends(get_publisher)]


def authenticate(
    authenticator: Annotated[TokenAuthenticator, Depends(get_authenticator)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The user name of the presented bearer token; 401 problem when none matches."""
    token = credentials.credentials if credentials is not None else None
    user = authenticator.identify(token)
    if user is None:
        raise ProblemError(
            status=401,
            slug="unauthorized",
            detail="missing bearer token" if not token else "unknown bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


UserDep = Annotated[str, Depends(authenticate)]
