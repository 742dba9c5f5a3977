"""``/v1/patients/{patient_id}/care-plan``: show, set and clear a patient's care plan.

``PUT`` validates the plan (:class:`~pghd.care_plans.CarePlanSettings`; a problem document
names every wrong field), stamps it with the authenticated user and the time, and produces
it to the compacted ``pghd.care-plans.v1`` keyed by the patient id; ``202`` with the plan
once Kafka acknowledged it. The processors take it from there: the next readings of the
patient are judged with it, no restart. ``DELETE`` produces a tombstone (the patient is
judged without a plan again). ``GET`` answers from the read model, which follows the topic
(plans set through any instance) and holds the plans this process set as soon as Kafka
acknowledged them. Only members of the patient's care teams (and admins) reach a patient's
plan (``403`` otherwise); setting and clearing take a clinician or an admin.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from alerts.api.deps import (
    ClinicianDep,
    MetricsDep,
    PrincipalDep,
    PublisherDep,
    ReadModelDep,
    SettingsDep,
    authenticate,
    check_patient,
    unavailable,
)
from alerts.api.metrics import CareApiMetrics
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd import wire
from pghd.care_plans import CarePlan, CarePlanSettings
from pghd.contracts import ID_PATTERN
from pghd.problems import ProblemError, problem_responses
from pghd.pseudonym import pseudonym
from pghd.service.follower import not_ready
from pghd.service.producer import KafkaUnavailable, RecordPublisher
from pghd.topics import CARE_PLANS

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/patients", tags=["care plans"], dependencies=[Depends(authenticate)])

PatientPath = Annotated[str, Path(pattern=ID_PATTERN, description="the patient's id")]

_ERRORS = {
    401: "Missing or unknown bearer token",
    403: "The caller's role may not do this, or the patient is not in a care team of theirs",
    503: "Kafka cannot take the plan now (or the API is still reading the care-plans topic);"
    " retry after Retry-After seconds",
}


def _known_plan(model: ReadModel, patient_id: str, *, settings: CareApiSettings) -> CarePlan:
    plan = model.care_plans.get(patient_id)
    if plan is not None:
        return plan
    if not model.ready:
        raise not_ready(
            "still reading the care-plans topic; the plan may not be known yet",
            retry_after_s=settings.retry_after_s,
        )
    raise ProblemError(
        status=404, slug="care-plan-not-found", detail=f"patient {patient_id} has no care plan"
    )


async def _publish(
    publisher: RecordPublisher,
    *,
    patient_id: str,
    value: bytes | None,
    kind: str,
    metrics: CareApiMetrics,
    settings: CareApiSettings,
) -> None:
    try:
        await publisher.publish(topic=CARE_PLANS, key=patient_id.encode("utf-8"), value=value)
    except KafkaUnavailable as exc:
        metrics.commands.labels(kind=kind, outcome="unavailable").inc()
        logger.warning("%s for %s not written: %s", kind, pseudonym(patient_id), exc)
        raise unavailable(settings, f"the care plan could not be written to Kafka: {exc}") from exc
    metrics.commands.labels(kind=kind, outcome="accepted").inc()
    logger.info("%s for %s written to %s", kind, pseudonym(patient_id), CARE_PLANS)


@router.get(
    "/{patient_id}/care-plan",
    summary="Show a patient's care plan",
    response_model=CarePlan,
    responses=problem_responses({**_ERRORS, 404: "The patient has no care plan"}),
)
async def get_care_plan(
    patient_id: PatientPath, principal: PrincipalDep, model: ReadModelDep, settings: SettingsDep
) -> CarePlan:
    """The patient's current care plan."""
    check_patient(principal, patient_id, model=model, settings=settings)
    return _known_plan(model, patient_id, settings=settings)


@router.put(
    "/{patient_id}/care-plan",
    summary="Set (replace) a patient's care plan",
    status_code=202,
    response_model=CarePlan,
    responses=problem_responses({**_ERRORS, 422: "Invalid care plan"}),
)
async def put_care_plan(
    patient_id: PatientPath,
    body: CarePlanSettings,
    principal: ClinicianDep,
    model: ReadModelDep,
    publisher: PublisherDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CarePlan:
    """Replace the plan with ``body``; 202 with the stamped plan once Kafka acknowledged it."""
    check_patient(principal, patient_id, model=model, settings=settings)
    plan = CarePlan.of(
        body, patient_id=patient_id, updated_at=datetime.now(UTC), updated_by=principal.name
    )
    await _publish(
        publisher,
        patient_id=patient_id,
        value=wire.encode(plan),
        kind="care_plan_set",
        metrics=metrics,
        settings=settings,
    )
    model.care_plans[patient_id] = plan
    return plan


@router.delete(
    "/{patient_id}/care-plan",
    summary="Clear a patient's care plan",
    status_code=202,
    response_model=CarePlan,
    responses=problem_responses({**_ERRORS, 404: "The patient has no care plan"}),
)
async def delete_care_plan(
    patient_id: PatientPath,
    principal: ClinicianDep,
    model: ReadModelDep,
    publisher: PublisherDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> CarePlan:
    """Clear the plan (a tombstone on the topic); 202 with the plan that was cleared."""
    check_patient(principal, patient_id, model=model, settings=settings)
    plan = _known_plan(model, patient_id, settings=settings)
    await _publish(
        publisher,
        patient_id=patient_id,
        value=None,
        kind="care_plan_clear",
        metrics=metrics,
        settings=settings,
    )
    model.care_plans.pop(patient_id, None)
    logger.info("care plan of %s cleared by %s", pseudonym(patient_id), principal.name)
    return plan
