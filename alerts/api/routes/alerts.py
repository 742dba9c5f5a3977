"""``/v1/alerts``: list and show alerts, acknowledge and resolve them.

Reads come from the read model (the compacted alerts topic). Acknowledge and resolve produce
an :class:`~pghd.alert_commands.AlertCommand` keyed by the alert's patient id and answer
``202`` once Kafka acknowledged it; the alerts worker applies it and publishes the new alert
state, which then shows here. ``by`` is the authenticated user.

A viewer or clinician lists and reads only the alerts of their teams' patients (``403`` on
another team's); acknowledging and resolving take a clinician or an admin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from alerts.api.commands import issue, new_command
from alerts.api.deps import (
    ClinicianDep,
    MetricsDep,
    PrincipalDep,
    ProducerDep,
    ReadModelDep,
    SettingsDep,
    TeamOfDep,
    authenticate,
    check_patient,
    not_yours,
)
from alerts.api.read_model import ReadModel
from alerts.api.schemas import (
    AcknowledgeIn,
    AlertDetail,
    AlertList,
    AlertOut,
    CommandAccepted,
    ResolveIn,
)
from alerts.api.settings import CareApiSettings
from pghd.access import Permission, Principal
from pghd.alert_commands import CommandKind
from pghd.alerting import Alert, AlertState
from pghd.audit_trail import note_patients
from pghd.contracts import Severity
from pghd.problems import ProblemError, problem_responses
from pghd.service.follower import not_ready

__all__ = ["find_alert", "router"]

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], dependencies=[Depends(authenticate)])

_READ_ERRORS = {
    401: "Missing or unknown bearer token",
    403: "The alert's patient is not in a care team of the caller",
}
_COMMAND_ERRORS = {
    **_READ_ERRORS,
    403: "The caller's role may not act, or the patient is not in a care team of theirs",
    404: "No such alert",
    409: "The alert is already resolved",
    422: "The body is not valid",
    503: "Kafka cannot take the command now (or the API is still reading the alerts topic);"
    " retry after Retry-After seconds",
}


def find_alert(
    model: ReadModel, alert_id: str, *, principal: Principal, settings: CareApiSettings
) -> Alert:
    """The alert with this id (or fingerprint) if ``principal`` may see it. 503 if not ready;
    an unknown id is 404 for an admin and, like another team's alert, 403 for anyone else
    (fingerprints can be computed from a patient id: the answer must not tell)."""
    alert = model.alerts.get(alert_id)
    if alert is not None:
        check_patient(principal, alert.patient_id, model=model, settings=settings)
        return alert
    if not model.ready:
        raise not_ready(
            "still reading the alerts topic; the alert may not be known yet",
            retry_after_s=settings.retry_after_s,
        )
    if not principal.may(Permission.ALL_PATIENTS):
        raise not_yours(principal)
    raise ProblemError(status=404, slug="alert-not-found", detail=f"no alert {alert_id!r}")


@router.get(
    "",
    summary="List alerts, most recently updated first",
    response_model=AlertList,
    responses=problem_responses({**_READ_ERRORS, 400: "team filter without routing config"}),
)
async def list_alerts(
    principal: PrincipalDep,
    model: ReadModelDep,
    team_of: TeamOfDep,
    state: Annotated[AlertState | None, Query(description="open, acknowledged, resolved")] = None,
    patient_id: Annotated[str | None, Query(max_length=128)] = None,
    severity: Severity | None = None,
    team: Annotated[
        str | None, Query(max_length=128, description="needs the routing config's team map")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """Alerts matching every given filter, of the patients the caller may see."""
    if team is not None and team_of is None:
        raise ProblemError(
            status=400,
            slug="no-team-map",
            detail="no routing config (PGHD_ALERTS_ROUTING_FILE) maps patients to teams",
        )
    found = model.alerts.query(
        state=state,
        patient_id=patient_id,
        severity=severity,
        team=team,
        team_of=team_of,
        visible=lambda patient: principal.sees(model.teams_of(patient)),
        limit=limit,
    )
    note_patients(a.patient_id for a in found)
    items = [AlertOut.of(a, team=team_of(a.patient_id) if team_of else None) for a in found]
    return AlertList(count=len(items), ready=model.ready, items=items)


@router.get(
    "/{alert_id}",
    summary="One alert: its anomalies, summary and notification history",
    response_model=AlertDetail,
    responses=problem_responses({**_READ_ERRORS, 404: "No such alert", 503: "Not ready yet"}),
)
async def show_alert(
    alert_id: str,
    principal: PrincipalDep,
    model: ReadModelDep,
    team_of: TeamOfDep,
    settings: SettingsDep,
) -> AlertDetail:
    """The alert with this id (its fingerprint works too)."""
    alert = find_alert(model, alert_id, principal=principal, settings=settings)
    return AlertDetail.of(alert, team=team_of(alert.patient_id) if team_of else None)


@router.post(
    "/{alert_id}/acknowledge",
    summary="Acknowledge an alert (stops its escalation)",
    status_code=202,
    response_model=CommandAccepted,
    responses=problem_responses(_COMMAND_ERRORS),
)
async def acknowledge(
    alert_id: str,
    principal: ClinicianDep,
    model: ReadModelDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    body: Annotated[AcknowledgeIn | None, Body()] = None,
) -> CommandAccepted:
    """Issue an acknowledge command; 202 once Kafka acknowledged it."""
    alert = _actionable(model, alert_id, principal=principal, settings=settings)
    command = new_command(
        kind=CommandKind.ACKNOWLEDGE,
        patient_id=alert.patient_id,
        by=principal.name,
        alert_id=alert.alert_id,
        reason=body.comment if body else "",
    )
    await issue(command, producer=producer, metrics=metrics, settings=settings)
    return CommandAccepted(
        command_id=command.command_id, kind=command.kind, alert_id=alert.alert_id
    )


@router.post(
    "/{alert_id}/resolve",
    summary="Resolve an alert, saying why",
    status_code=202,
    response_model=CommandAccepted,
    responses=problem_responses(_COMMAND_ERRORS),
)
async def resolve(
    alert_id: str,
    body: ResolveIn,
    principal: ClinicianDep,
    model: ReadModelDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CommandAccepted:
    """Issue a resolve command; 202 once Kafka acknowledged it."""
    alert = _actionable(model, alert_id, principal=principal, settings=settings)
    command = new_command(
        kind=CommandKind.RESOLVE,
        patient_id=alert.patient_id,
        by=principal.name,
        alert_id=alert.alert_id,
        reason=body.reason,
    )
    await issue(command, producer=producer, metrics=metrics, settings=settings)
    return CommandAccepted(
        command_id=command.command_id, kind=command.kind, alert_id=alert.alert_id
    )


def _actionable(
    model: ReadModel, alert_id: str, *, principal: Principal, settings: CareApiSettings
) -> Alert:
    alert = find_alert(model, alert_id, principal=principal, settings=settings)
    if alert.status is AlertState.RESOLVED:
        raise ProblemError(
            status=409, slug="alert-resolved", detail=f"alert {alert.alert_id} is already resolved"
        )
    return alert
