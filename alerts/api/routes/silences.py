"""``/v1/silences``: mute a patient's alerts for a while, list silences, expire one.

The alerts worker does not publish silences, so ``GET`` lists what the read model rebuilt
from the silence and expire-silence commands on ``pghd.alert-commands.v1`` (issued by any
instance of this API, within the topic's retention), plus what this process issued and
Kafka acknowledged, of enrolled patients only (an erased patient's silence commands stay on
the topic for its retention). Issuing and expiring produce an
:class:`~pghd.alert_commands.AlertCommand` keyed by the patient id; ``202`` once Kafka
acknowledged it.

Silencing and expiring take a clinician or an admin of the patient's team; a silence may
last at most ``PGHD_CARE_API_MAX_SILENCE_S`` (7 days by default): a silence hides a
patient's alerts from everyone, so its length is policy, not a personal choice. Lists show
only the silences of the patients the caller may see.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from alerts.api.commands import issue, new_command
from alerts.api.deps import (
    ClinicianDep,
    MetricsDep,
    PrincipalDep,
    ProducerDep,
    ReadModelDep,
    SettingsDep,
    authenticate,
    check_patient,
    not_yours,
)
from alerts.api.read_model import SilenceState
from alerts.api.schemas import CommandAccepted, SilenceIn, SilenceList, SilenceOut
from pghd.access import Permission
from pghd.alert_commands import CommandKind, Silence
from pghd.audit_trail import note_patients
from pghd.problems import ProblemError, problem_responses

__all__ = ["router"]

router = APIRouter(prefix="/v1/silences", tags=["silences"], dependencies=[Depends(authenticate)])

_ERRORS = {
    401: "Missing or unknown bearer token",
    403: "The caller's role may not act, or the patient is not in a care team of theirs",
    503: "Kafka cannot take the command now; retry after Retry-After seconds",
}


@router.post(
    "",
    summary="Silence a patient's alerts until ends_at",
    status_code=202,
    response_model=CommandAccepted,
    responses=problem_responses({**_ERRORS, 422: "Invalid silence"}),
)
async def create_silence(
    body: SilenceIn,
    principal: ClinicianDep,
    model: ReadModelDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CommandAccepted:
    """Issue a silence command; 202 with the silence id once Kafka acknowledged it."""
    check_patient(principal, body.patient_id, model=model, settings=settings)
    now = datetime.now(UTC)
    starts_at = body.starts_at or now
    longest = timedelta(seconds=settings.max_silence_s)
    if body.ends_at - min(starts_at, now) > longest:  # no chain of future silences either
        raise ProblemError(
            status=422,
            slug="silence-too-long",
            detail=f"a silence may last at most {_span(longest)} and end at most that far"
            f" from now; this one lasts {_span(body.ends_at - starts_at)} and ends"
            f" {_span(body.ends_at - now)} from now",
        )
    silence = Silence(
        matchers=body.all_matchers(),
        starts_at=starts_at,
        ends_at=body.ends_at,
        created_by=principal.name,
        comment=body.comment,
    )
    command = new_command(
        kind=CommandKind.SILENCE, patient_id=body.patient_id, by=principal.name, silence=silence
    )
    await issue(command, producer=producer, metrics=metrics, settings=settings)
    model.apply_command(command)
    return CommandAccepted(
        command_id=command.command_id, kind=command.kind, silence_id=silence.silence_id
    )


@router.get(
    "",
    summary="List silences",
    response_model=SilenceList,
    responses=problem_responses({401: _ERRORS[401]}),
)
async def list_silences(
    principal: PrincipalDep,
    model: ReadModelDep,
    state: Annotated[SilenceState | None, Query(description="pending, active, expired")] = None,
    patient_id: Annotated[str | None, Query(max_length=128)] = None,
) -> SilenceList:
    """Silences known to this API of the patients the caller may see, oldest first."""
    now = datetime.now(UTC)
    entries = model.list_silences(
        now=now,
        state=state,
        patient_id=patient_id,
        visible=lambda patient: principal.sees(model.teams_of(patient)),
    )
    note_patients(entry.silence.matchers["patient_id"] for entry in entries)
    items = [SilenceOut.of(entry, now=now) for entry in entries]
    return SilenceList(count=len(items), items=items)


@router.delete(
    "/{silence_id}",
    summary="Expire a silence now",
    status_code=202,
    response_model=CommandAccepted,
    responses=problem_responses(
        {**_ERRORS, 404: "No such silence", 409: "The silence has already expired"}
    ),
)
async def expire_silence(
    silence_id: str,
    principal: ClinicianDep,
    model: ReadModelDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CommandAccepted:
    """Issue an expire-silence command; 202 once Kafka acknowledged it."""
    entry = model.silence(silence_id)
    if entry is None:
        if not principal.may(Permission.ALL_PATIENTS):
            raise not_yours(principal)  # as for another team's silence: the answer tells nothing
        raise ProblemError(
            status=404, slug="silence-not-found", detail=f"no silence {silence_id!r}"
        )
    patient_id = entry.silence.matchers["patient_id"]
    check_patient(principal, patient_id, model=model, settings=settings)
    if entry.state(datetime.now(UTC)) == "expired":
        raise ProblemError(
            status=409, slug="silence-expired", detail=f"silence {silence_id} has already expired"
        )
    command = new_command(
        kind=CommandKind.EXPIRE_SILENCE,
        patient_id=patient_id,
        by=principal.name,
        silence_id=silence_id,
    )
    await issue(command, producer=producer, metrics=metrics, settings=settings)
    model.apply_command(command)
    return CommandAccepted(command_id=command.command_id, kind=command.kind, silence_id=silence_id)


def _span(span: timedelta) -> str:
    """``span`` for people: days from one day up, else hours."""
    seconds = span.total_seconds()
    return f"{seconds / 86400:.3g} d" if seconds >= 86400 else f"{seconds / 3600:.3g} h"
