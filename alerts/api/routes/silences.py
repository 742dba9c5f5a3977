"""``/v1/silences``: mute a patient's alerts for a while, list silences, expire one.

The alerts worker does not publish silences, so ``GET`` lists what the read model rebuilt
from the silence and expire-silence commands on ``pghd.alert-commands.v1`` (issued by any
instance of this API, within the topic's retention), plus what this process issued and
Kafka acknowledged. Issuing and expiring produce an
:class:`~pghd.alert_commands.AlertCommand` keyed by the patient id; ``202`` once Kafka
acknowledged it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from alerts.api.commands import issue, new_command
from alerts.api.deps import (
    MetricsDep,
    ProducerDep,
    ReadModelDep,
    SettingsDep,
    UserDep,
    authenticate,
)
from alerts.api.problems import ProblemError, problem_responses
from alerts.api.read_model import SilenceState
from alerts.api.schemas import CommandAccepted, SilenceIn, SilenceList, SilenceOut
from pghd.alert_commands import CommandKind, Silence

__all__ = ["router"]

router = APIRouter(prefix="/v1/silences", tags=["silences"], dependencies=[Depends(authenticate)])

_ERRORS = {
    401: "Missing or unknown bearer token",
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
    user: UserDep,
    model: ReadModelDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CommandAccepted:
    """Issue a silence command; 202 with the silence id once Kafka acknowledged it."""
    silence = Silence(
        matchers=body.all_matchers(),
        starts_at=body.starts_at or datetime.now(UTC),
        ends_at=body.ends_at,
        created_by=user,
        comment=body.comment,
    )
    command = new_command(
        kind=CommandKind.SILENCE, patient_id=body.patient_id, by=user, silence=silence
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
    model: ReadModelDep,
    state: Annotated[SilenceState | None, Query(description="pending, active, expired")] = None,
    patient_id: Annotated[str | None, Query(max_length=128)] = None,
) -> SilenceList:
    """Silences known to this API, oldest first."""
    now = datetime.now(UTC)
    entries = model.silences.list(now=now, state=state, patient_id=patient_id)
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
    user: UserDep,
    model: ReadModelDep,
    producer: ProducerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CommandAccepted:
    """Issue an expire-silence command; 202 once Kafka acknowledged it."""
    entry = model.silences.get(silence_id)
    if entry is None:
        raise ProblemError(
            status=404, slug="silence-not-found", detail=f"no silence {silence_id!r}"
        )
    if entry.state(datetime.now(UTC)) == "expired":
        raise ProblemError(
            status=409, slug="silence-expired", detail=f"silence {silence_id} has already expired"
        )
    command = new_command(
        kind=CommandKind.EXPIRE_SILENCE,
        patient_id=entry.silence.matchers["patient_id"],
        by=user,
        silence_id=silence_id,
    )
    await issue(command, producer=producer, metrics=metrics, settings=settings)
    model.apply_command(command)
    return CommandAccepted(command_id=command.command_id, kind=command.kind, silence_id=silence_id)
