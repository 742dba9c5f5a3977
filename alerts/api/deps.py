"""FastAPI dependencies and their typed aliases.

Everything a route needs comes from here, read off ``app.state`` (set by
:func:`alerts.api.app.create_app` and its lifespan), so tests swap any of it with
``app.dependency_overrides[get_producer] = ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from alerts.api.commands import CommandProducer
from alerts.api.metrics import CareApiMetrics
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.access import CredentialBook, Permission, Principal
from pghd.alerting import RoutingConfig
from pghd.audit_trail import note_patients
from pghd.problems import ProblemError
from pghd.service.auth import authenticate_bearer, bearer_scheme
from pghd.service.follower import not_ready
from pghd.service.oidc import OidcVerifier
from pghd.service.producer import RecordPublisher, kafka_unavailable

__all__ = [
    "AnyoneDep",
    "ClinicianDep",
    "MetricsDep",
    "PatientDep",
    "PatientTokens",
    "PrincipalDep",
    "ProducerDep",
    "PublisherDep",
    "ReadModelDep",
    "SettingsDep",
    "TeamOfDep",
    "authenticate",
    "authenticate_anyone",
    "authenticate_patient",
    "check_patient",
    "get_credentials",
    "get_metrics",
    "get_oidc",
    "get_patient_tokens",
    "get_producer",
    "get_publisher",
    "get_read_model",
    "get_settings",
    "get_team_of",
    "not_yours",
    "unavailable",
]

care_team_scheme = bearer_scheme("The bearer token issued to a care-team member or team")

TeamOf = Callable[[str], str | None]


def get_settings(request: Request) -> CareApiSettings:
    """The settings the app was created with."""
    settings: CareApiSettings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> CareApiMetrics:
    """The app's Prometheus metrics."""
    metrics: CareApiMetrics = request.app.state.metrics
    return metrics


def get_credentials(request: Request) -> CredentialBook:
    """The app's care-team members and their token digests."""
    credentials: CredentialBook = request.app.state.credentials
    return credentials


def get_oidc(request: Request) -> OidcVerifier | None:
    """The checker of the identity provider's bearer JWTs; None when none is configured."""
    oidc: OidcVerifier | None = getattr(request.app.state, "oidc", None)
    return oidc


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
    return kafka_unavailable(detail, retry_after_s=settings.retry_after_s)


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


class PatientTokens(Protocol):
    """Who owns a patient token: the patient's principal (:meth:`Principal.for_patient`)."""

    def identify(self, token: str | None) -> Principal | None: ...


@dataclass(frozen=True, slots=True)
class _Either:
    """The users file's people first, then the patients' own tokens."""

    people: CredentialBook
    patients: PatientTokens | None

    def identify(self, token: str | None) -> Principal | None:
        found = self.people.identify(token)
        if found is None and self.patients is not None:
            found = self.patients.identify(token)
        return found


def get_patient_tokens(request: Request) -> PatientTokens | None:
    """The patients' tokens (their digests travel with the enrollments); None: none taken."""
    tokens: PatientTokens | None = getattr(request.app.state, "patient_tokens", None)
    return tokens


def authenticate_anyone(
    credentials: Annotated[CredentialBook, Depends(get_credentials)],
    patients: Annotated[PatientTokens | None, Depends(get_patient_tokens)],
    oidc: Annotated[OidcVerifier | None, Depends(get_oidc)],
    presented: Annotated[HTTPAuthorizationCredentials | None, Depends(care_team_scheme)],
) -> Principal:
    """Whoever presents the bearer token: a care-team member (the users file's token, or an
    identity provider's JWT) or a patient (their own token); 401 problem when none matches,
    503 when the provider's keys are out of reach."""
    return authenticate_bearer(_Either(credentials, patients), presented, oidc=oidc)


AnyoneDep = Annotated[Principal, Depends(authenticate_anyone)]
"""A care-team member or a patient: for routes that check the patient themselves
(:func:`check_patient` lets a patient reach only their own records)."""


def authenticate(principal: AnyoneDep) -> Principal:
    """The care-team member presenting the bearer token; a patient's token is refused (403)
    here: patients read their own data under ``/v1/me`` and ``/fhir``, nothing else."""
    if principal.patient_id is not None:
        raise ProblemError(
            status=403,
            slug="forbidden-role",
            detail="a patient token reads only the patient's own data (/v1/me, /fhir)",
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
"""A care-team member (viewer, clinician or admin), never a patient."""


def authenticate_patient(principal: AnyoneDep) -> Principal:
    """The patient presenting their own token; 403 for anyone else (care-team members act on
    patients through the other routes)."""
    if principal.patient_id is None:
        raise ProblemError(
            status=403,
            slug="forbidden-role",
            detail=f"{principal.name} is no patient: /v1/me answers a patient's own token",
        )
    return principal


PatientDep = Annotated[Principal, Depends(authenticate_patient)]
"""A patient's own principal (``patient_id`` set)."""


def authorize_action(principal: PrincipalDep) -> Principal:
    """The principal, if their role may act on alerts and care plans; else 403 problem."""
    if not principal.may(Permission.ACT):
        raise ProblemError(
            status=403,
            slug="forbidden-role",
            detail=f"{principal.name} is a {principal.role.value}: a {principal.role.value}"
            " may read, not act (acknowledge, resolve, silence, care plans)",
        )
    return principal


ClinicianDep = Annotated[Principal, Depends(authorize_action)]
"""A principal that may act: a clinician or an admin."""


def check_patient(
    principal: Principal, patient_id: str, *, model: ReadModel, settings: CareApiSettings
) -> None:
    """403 problem unless ``principal`` may see ``patient_id`` (one of the patient's teams
    is theirs, they are an admin, or it is the patient's own token); 503 while the
    enrollments are still being read. The request's audit event names the patient, whatever
    the answer."""
    note_patients([patient_id])
    if principal.may(Permission.ALL_PATIENTS):
        return
    if not model.ready:  # a patient's token, too, may since have been revoked or erased
        raise not_ready(
            "still reading the enrollments topic; care-team access is not known yet",
            retry_after_s=settings.retry_after_s,
        )
    if principal.patient_id is not None:
        if not principal.is_patient(patient_id):
            raise not_yours(principal)
    elif not principal.sees(model.teams_of(patient_id)):
        raise not_yours(principal)


def not_yours(principal: Principal) -> ProblemError:
    """The 403 for a patient (or an alert or silence) the caller may not see. It names
    nobody, and an unknown alert or silence id gets the same answer as another team's, so
    the answers cannot be used to learn who has what."""
    return ProblemError(
        status=403,
        slug="forbidden-patient",
        detail=f"nothing here that {principal.name} may see: not a patient of their care teams"
        if principal.patient_id is None
        else f"nothing here that {principal.name} may see: a patient sees only their own data",
    )
