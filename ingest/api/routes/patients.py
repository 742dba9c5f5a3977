"""``/v1/patients``: enrollment, device links, consent and care teams, for administrators.

Authenticated with an admin bearer token (``PGHD_INGEST_ADMIN_TOKENS``), never with a
device source's API key. Every write produces the patient's whole new Enrollment to the
compacted ``pghd.enrollments.v1`` topic and answers once this instance has read it back, so
a following read (here) sees it; other instances see it as soon as their follower fetches
it (within a second or so). A write that changes nothing (granting a consent already held)
produces nothing and answers the current enrollment. Which care teams a patient is assigned
to decides which care-team members may see it; the care-team API enforces that.

A patient's own bearer token (for the care-team API's ``/v1/me``) is issued by
``POST /v1/patients/{id}/token`` (or ``issue_token`` when enrolling): the answer shows it
once (``Cache-Control: no-store``), the enrollment keeps only its SHA-256 digest. Issuing
again rotates it (the old one stops working), ``DELETE`` revokes it; either takes effect in
the care-team API as soon as it reads the enrollment.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Path, Query, Response
from kafka.errors import KafkaError as KafkaClientError
from pydantic import BaseModel, Field

from ingest.deps import AdminDep, EnrollmentsDep, EraserDep, SettingsDep
from ingest.enrollment import EnrollmentService, NotApplied, RegistryLoading
from ingest.erasure import ReportsUnavailable
from ingest.settings import IngestSettings
from pghd.access import hash_token
from pghd.audit_trail import note_patients
from pghd.catalogue import Metric
from pghd.contracts import ID_PATTERN
from pghd.enrollment import (
    ACCOUNT_PATTERN,
    Action,
    Enrollment,
    EnrollmentCommand,
    EnrollmentError,
    EnrollmentStatus,
    ErrorKind,
    TeamName,
)
from pghd.erasure import ErasureReport
from pghd.patient_tokens import new_token
from pghd.problems import ProblemError, problem_responses
from pghd.service.producer import KafkaUnavailable, kafka_unavailable

__all__ = [
    "EnrollRequest",
    "EnrolledPatient",
    "IssuedToken",
    "LinkRequest",
    "PatientPage",
    "router",
]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/patients", tags=["patients"])

PatientPath = Annotated[str, Path(pattern=ID_PATTERN, description="Opaque patient identifier")]
SourcePath = Annotated[str, Path(pattern=ID_PATTERN, description="Vendor (API key) name")]
AccountPath = Annotated[
    str, Path(pattern=ACCOUNT_PATTERN, description="Vendor account or device id")
]
MetricPath = Annotated[Metric, Path(description="A metric of the catalogue")]
TeamPath = Annotated[
    str, Path(pattern=ID_PATTERN, description="Care team whose members may see the patient")
]


class LinkRequest(BaseModel):
    """A vendor account or device whose readings belong to the patient."""

    source: Annotated[str, Field(pattern=ID_PATTERN, examples=["acme"])]
    account: Annotated[str, Field(pattern=ACCOUNT_PATTERN, examples=["watch-7731"])]


class EnrollRequest(BaseModel):
    """Enroll a patient, optionally with initial consents, links and care teams."""

    patient_id: Annotated[str, Field(pattern=ID_PATTERN, examples=["patient-001"])]
    consents: list[Metric] = Field(
        default_factory=list, description="metrics the patient consents to have stored"
    )
    links: list[LinkRequest] = Field(default_factory=list)
    teams: list[TeamName] = Field(
        default_factory=list,
        description="care teams the patient is assigned to",
        examples=[["cardiology"]],
    )
    issue_token: bool = Field(
        default=False,
        description="also issue the patient's own bearer token (for /v1/me of the care-team"
        " API), answered once in `token`",
    )


class EnrolledPatient(Enrollment):
    """The new enrollment, with the patient's token when ``issue_token`` asked for one."""

    token: str | None = Field(
        default=None,
        description="the patient's bearer token, shown this once (only its digest is kept);"
        " null unless issue_token was asked",
    )


class IssuedToken(BaseModel):
    """A patient's new bearer token: shown this once, only its digest is kept."""

    patient_id: str
    token: str = Field(description="the bearer token for the care-team API's /v1/me routes")
    issued_at: datetime
    revision: int = Field(description="the enrollment's revision that holds its digest")


class PatientPage(BaseModel):
    """One page of enrollments, by patient id."""

    total: int
    items: list[Enrollment]


_WRITE_RESPONSES = problem_responses(
    {
        401: "Missing or unknown admin bearer token",
        404: "No such patient, link, consent or team assignment",
        409: "The patient's state forbids it (already enrolled, withdrawn, link held elsewhere)",
        422: "Invalid patient id, metric, source, account or team",
        503: "Kafka cannot take the write, or the registry is still loading; see Retry-After",
    }
)
_READ_RESPONSES = problem_responses(
    {
        401: "Missing or unknown admin bearer token",
        404: "No such patient",
        503: "The registry is still loading; see Retry-After",
    }
)


def _loading(settings: IngestSettings) -> ProblemError:
    return ProblemError(
        status=503,
        slug="registry-loading",
        detail="the enrollment registry is still loading; retry shortly",
        headers={"Retry-After": str(settings.retry_after_s)},
    )


async def _execute(
    service: EnrollmentService,
    commands: list[EnrollmentCommand],
    *,
    admin: str,
    settings: IngestSettings,
) -> Enrollment:
    """Run ``commands`` as one change; their refusals as problem documents."""
    note_patients(c.patient_id for c in commands)
    try:
        return await service.execute(commands, by=admin)
    except EnrollmentError as exc:
        status = 404 if exc.kind is ErrorKind.NOT_FOUND else 409
        raise ProblemError(
            status=status, slug=f"enrollment-{exc.kind.value}", detail=str(exc)
        ) from None
    except RegistryLoading:
        raise _loading(settings) from None
    except (KafkaUnavailable, NotApplied) as exc:
        raise kafka_unavailable(
            f"the change was not confirmed, retry later: {exc}",
            retry_after_s=settings.retry_after_s,
        ) from exc


def _current(service: EnrollmentService, patient_id: str, settings: IngestSettings) -> Enrollment:
    note_patients([patient_id])
    try:
        enrollment = service.current(patient_id)
    except RegistryLoading:
        raise _loading(settings) from None
    if enrollment is None:
        raise ProblemError(
            status=404, slug="enrollment-not-found", detail=f"patient {patient_id} is not enrolled"
        )
    return enrollment


def _issue(patient_id: str, token: str) -> EnrollmentCommand:
    """The command giving ``patient_id`` the token (by its digest: the token is not kept)."""
    return EnrollmentCommand(
        action=Action.ISSUE_TOKEN, patient_id=patient_id, token_sha256=hash_token(token)
    )


def _no_store(response: Response) -> None:
    """An answer holding a token: kept by no cache, on the way or in the client."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "",
    status_code=201,
    summary="Enroll a patient (with initial consents, links, care teams, and a token)",
    response_model=EnrolledPatient,
    responses=_WRITE_RESPONSES,
)
async def enroll_patient(
    body: EnrollRequest,
    response: Response,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> EnrolledPatient:
    """Enroll ``patient_id`` (again, after a withdrawal); 409 while already enrolled. With
    ``issue_token``, the answer carries the patient's new bearer token, once."""
    pid = body.patient_id
    token = new_token() if body.issue_token else None
    commands = [
        EnrollmentCommand(action=Action.ENROLL, patient_id=pid),
        *(
            EnrollmentCommand(action=Action.LINK, patient_id=pid, **link.model_dump())
            for link in body.links
        ),
        *(EnrollmentCommand(action=Action.GRANT, patient_id=pid, metric=m) for m in body.consents),
        *(EnrollmentCommand(action=Action.ASSIGN, patient_id=pid, team=t) for t in body.teams),
    ]
    if token is not None:
        commands.append(_issue(pid, token))
    enrollment = await _execute(service, commands, admin=admin, settings=settings)
    response.headers["Location"] = f"/v1/patients/{pid}"
    if token is not None:
        _no_store(response)
    return EnrolledPatient(**dict(enrollment), token=token)


@router.get("", summary="List enrollments", response_model=PatientPage, responses=_READ_RESPONSES)
async def list_patients(
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
    status: Annotated[EnrollmentStatus | None, Query(description="only this status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PatientPage:
    """Enrollments by patient id, one page at a time."""
    if not service.book.ready:
        raise _loading(settings)
    total, items = service.book.query(status=status, limit=limit, offset=offset)
    note_patients(e.patient_id for e in items)
    return PatientPage(total=total, items=items)


@router.get(
    "/{patient_id}",
    summary="One patient's enrollment, links, consents and care teams",
    response_model=Enrollment,
    responses=_READ_RESPONSES,
)
async def get_patient(
    patient_id: PatientPath, admin: AdminDep, service: EnrollmentsDep, settings: SettingsDep
) -> Enrollment:
    """The patient's current enrollment as this instance knows it."""
    return _current(service, patient_id, settings)


@router.post(
    "/{patient_id}/links",
    summary="Link a vendor account or device to the patient",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def link_account(
    patient_id: PatientPath,
    body: LinkRequest,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> Enrollment:
    """Readings of ``source`` naming ``account`` are then the patient's; 409 if held by another."""
    command = EnrollmentCommand(action=Action.LINK, patient_id=patient_id, **body.model_dump())
    return await _execute(service, [command], admin=admin, settings=settings)


@router.delete(
    "/{patient_id}/links/{source}/{account}",
    summary="Unlink a vendor account or device",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def unlink_account(
    patient_id: PatientPath,
    source: SourcePath,
    account: AccountPath,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> Enrollment:
    """Readings naming that account are no longer the patient's."""
    command = EnrollmentCommand(
        action=Action.UNLINK, patient_id=patient_id, source=source, account=account
    )
    return await _execute(service, [command], admin=admin, settings=settings)


@router.put(
    "/{patient_id}/consents/{metric}",
    summary="Record consent to store a metric",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def grant_consent(
    patient_id: PatientPath,
    metric: MetricPath,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> Enrollment:
    """Readings of ``metric`` for the patient are stored from now on."""
    command = EnrollmentCommand(action=Action.GRANT, patient_id=patient_id, metric=metric)
    return await _execute(service, [command], admin=admin, settings=settings)


@router.delete(
    "/{patient_id}/consents/{metric}",
    summary="Revoke consent to store a metric",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def revoke_consent(
    patient_id: PatientPath,
    metric: MetricPath,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> Enrollment:
    """No reading of ``metric`` for the patient is stored any more, on any ingest instance."""
    command = EnrollmentCommand(action=Action.REVOKE, patient_id=patient_id, metric=metric)
    return await _execute(service, [command], admin=admin, settings=settings)


@router.put(
    "/{patient_id}/teams/{team}",
    summary="Assign the patient to a care team",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def assign_team(
    patient_id: PatientPath,
    team: TeamPath,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> Enrollment:
    """Members of ``team`` may see the patient from now on; 409 once withdrawn."""
    command = EnrollmentCommand(action=Action.ASSIGN, patient_id=patient_id, team=team)
    return await _execute(service, [command], admin=admin, settings=settings)


@router.delete(
    "/{patient_id}/teams/{team}",
    summary="Take the patient out of a care team",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def unassign_team(
    patient_id: PatientPath,
    team: TeamPath,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> Enrollment:
    """Members of ``team`` no longer see the patient (a withdrawn one too); 404 if not in it."""
    command = EnrollmentCommand(action=Action.UNASSIGN, patient_id=patient_id, team=team)
    return await _execute(service, [command], admin=admin, settings=settings)


@router.post(
    "/{patient_id}/token",
    status_code=201,
    summary="Issue (or rotate) the patient's own bearer token",
    response_model=IssuedToken,
    responses=_WRITE_RESPONSES,
)
async def issue_patient_token(
    patient_id: PatientPath,
    response: Response,
    admin: AdminDep,
    service: EnrollmentsDep,
    settings: SettingsDep,
) -> IssuedToken:
    """A new token for the patient (or their app) to read their own data at the care-team
    API's ``/v1/me``, shown in this answer only (``Cache-Control: no-store``); any token
    they held stops working (rotation). Withdrawn patients may get one: they still read
    their history. 404 for a patient never enrolled (or erased)."""
    token = new_token()
    enrollment = await _execute(
        service, [_issue(patient_id, token)], admin=admin, settings=settings
    )
    _no_store(response)
    (held,) = enrollment.patient_tokens
    return IssuedToken(
        patient_id=patient_id, token=token, issued_at=held.issued_at, revision=enrollment.revision
    )


@router.delete(
    "/{patient_id}/token",
    summary="Revoke the patient's own bearer token",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def revoke_patient_token(
    patient_id: PatientPath, admin: AdminDep, service: EnrollmentsDep, settings: SettingsDep
) -> Enrollment:
    """The patient's token stops working (in the care-team API as soon as it reads the
    enrollment); 404 when they hold none."""
    command = EnrollmentCommand(action=Action.REVOKE_TOKENS, patient_id=patient_id)
    return await _execute(service, [command], admin=admin, settings=settings)


@router.post(
    "/{patient_id}/withdraw",
    summary="Withdraw the patient",
    response_model=Enrollment,
    responses=_WRITE_RESPONSES,
)
async def withdraw_patient(
    patient_id: PatientPath, admin: AdminDep, service: EnrollmentsDep, settings: SettingsDep
) -> Enrollment:
    """Every consent revoked and every link dropped; nothing more is stored for the patient.

    Its care teams stay assigned: they keep seeing the history until it is erased; so does
    the patient's own token (revoke it with ``DELETE …/token``)."""
    command = EnrollmentCommand(action=Action.WITHDRAW, patient_id=patient_id)
    return await _execute(service, [command], admin=admin, settings=settings)


@router.post(
    "/{patient_id}/erase",
    summary="Erase everything stored about the patient",
    response_model=ErasureReport,
    responses={
        202: {
            "model": ErasureReport,
            "description": "Asked; some stages have not reported (or failed) within the wait",
        },
        **problem_responses(
            {
                401: "Missing or unknown admin bearer token",
                422: "Invalid patient id or wait",
                503: "Kafka cannot take the erasure, or the registry is still loading;"
                " see Retry-After. Asking again is safe",
            }
        ),
    },
)
async def erase_patient(
    patient_id: PatientPath,
    admin: AdminDep,
    eraser: EraserDep,
    settings: SettingsDep,
    response: Response,
    wait: Annotated[
        float,
        Query(ge=0, description="seconds to wait for every stage's report (0: do not wait)"),
    ] = 60.0,
) -> ErasureReport:
    """The enrollment, care plan, stored readings (every InfluxDB bucket), the processors'
    and the alerts worker's state, the patient's alerts and their dashboard annotations are
    removed, and new readings for the patient are refused. 200 with the report once every
    stage reported; 202 with what is known if one has not within ``wait`` or failed (ask
    again: erasure is idempotent). The audit trail keeps the erasure and who asked."""
    note_patients([patient_id])
    try:
        report = await eraser.erase(
            patient_id, by=admin, wait_s=min(wait, settings.erase_max_wait_s)
        )
    except RegistryLoading:
        raise _loading(settings) from None
    except (
        KafkaUnavailable,
        KafkaError,
        KafkaClientError,
        OSError,
        TimeoutError,
        ReportsUnavailable,
    ) as exc:
        raise kafka_unavailable(
            f"the erasure was not completed, ask again: {type(exc).__name__}: {exc}",
            retry_after_s=settings.retry_after_s,
        ) from exc
    if not report.complete:
        response.status_code = 202
    return report
