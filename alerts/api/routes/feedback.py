"""``/v1/me/feedback``: a patient registers their app for feedback, reads and withdraws it.

Only a patient's own token reaches these routes (:data:`~alerts.api.deps.PatientDep`; care-team
members get ``403``), and only for that patient; every request is audited like every ``/v1/``
route. ``PUT`` takes the app's URL and the kinds of feedback the patient consents to
(any :class:`~pghd.feedback.wording.Kind`), checks the URL (:func:`~pghd.feedback.
subscription.url_problem`: https to a host on the internet; the loopback only where
``PGHD_CARE_API_FEEDBACK_ALLOW_LOOPBACK_HTTP`` allows it), makes a new signing secret and
writes the subscription to the compacted ``pghd.feedback-subscriptions.v1`` (key: the patient
id); once Kafka acknowledged it, ``200`` with the registration and the secret, which is never
shown again (``Cache-Control: no-store``). Each ``PUT`` replaces the registration and its
secret (rotate by registering again); a kind consented to before keeps its time of consent,
one left out is withdrawn. ``GET`` shows the registration without the secret; ``DELETE``
writes a tombstone: nothing is sent any more. The alerts worker follows the topic and sends.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from alerts.api.deps import MetricsDep, PatientDep, PublisherDep, ReadModelDep, SettingsDep
from alerts.api.deps import unavailable as kafka_refused
from alerts.api.metrics import CareApiMetrics
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd import wire
from pghd.audit_trail import note_patients
from pghd.feedback.subscription import (
    MAX_URL_LENGTH,
    FeedbackRegistration,
    new_secret,
    subscribe,
    url_problem,
)
from pghd.feedback.wording import Kind
from pghd.problems import ProblemError, problem_responses
from pghd.pseudonym import pseudonym
from pghd.service.follower import not_ready
from pghd.service.producer import KafkaUnavailable, RecordPublisher
from pghd.signatures import PGHD_SIGNATURE_HEADER
from pghd.topics import FEEDBACK_SUBSCRIPTIONS

__all__ = ["FeedbackRequest", "FeedbackSecret", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/me/feedback", tags=["feedback"])

NO_STORE = "no-store"

_ERRORS = {
    401: "Missing or unknown bearer token",
    403: "Not a patient's own token (care-team members do not register patients' apps)",
    503: "Kafka cannot take the registration now, or the API is still reading the"
    " subscriptions topic; retry after Retry-After seconds",
}


class FeedbackRequest(BaseModel):
    """Where the patient's app takes feedback, and which kinds the patient consents to."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=8, max_length=MAX_URL_LENGTH)] = Field(
        description="https URL the events are POSTed to (plain http only to the loopback,"
        " where the deployment allows it)",
        examples=["https://app.example.org/pghd/feedback"],
    )
    kinds: Annotated[list[Kind], Field(min_length=1, max_length=len(Kind))] = Field(
        description="the kinds of feedback the patient consents to; nothing else is sent",
        examples=[["finding_opened", "finding_resolved"]],
    )


class FeedbackSecret(FeedbackRegistration):
    """The registration and, this once, its signing secret."""

    secret: str = Field(
        description="64 hex digits, shown only now: the app verifies each delivery's"
        f" {PGHD_SIGNATURE_HEADER} (t=<unix>,v1=<hex HMAC-SHA256 over '<t>.' + raw body>)"
        " with it, its ASCII bytes being the key"
    )


def _ready(model: ReadModel, settings: CareApiSettings) -> None:
    if not model.ready:
        raise not_ready(
            "still reading the subscriptions topic; the registration is not known yet",
            retry_after_s=settings.retry_after_s,
        )


def _registered(
    model: ReadModel, patient_id: str, settings: CareApiSettings
) -> FeedbackRegistration:
    _ready(model, settings)
    found = model.feedback.get(patient_id)
    if found is None:
        raise ProblemError(
            status=404,
            slug="feedback-not-registered",
            detail="no app is registered for feedback (PUT /v1/me/feedback registers one)",
        )
    return found


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
        await publisher.publish(
            topic=FEEDBACK_SUBSCRIPTIONS, key=patient_id.encode("utf-8"), value=value
        )
    except KafkaUnavailable as exc:
        metrics.commands.labels(kind=kind, outcome="unavailable").inc()
        logger.warning("%s for %s not written: %s", kind, pseudonym(patient_id), exc)
        raise kafka_refused(settings, f"the registration could not be written: {exc}") from exc
    metrics.commands.labels(kind=kind, outcome="accepted").inc()
    logger.info("%s for %s written to %s", kind, pseudonym(patient_id), FEEDBACK_SUBSCRIPTIONS)


def checked(body: FeedbackRequest, settings: CareApiSettings) -> list[Kind]:
    """The kinds of ``body`` once its URL and kinds pass (else a ``422`` problem)."""
    problem = url_problem(body.url, allow_loopback_http=settings.feedback_allow_loopback_http)
    if problem is not None:
        raise ProblemError(status=422, slug="feedback-url-refused", detail=problem)
    return body.kinds


@router.put(
    "",
    summary="Register the patient's app for feedback (answers its signing secret, once)",
    response_model=FeedbackSecret,
    responses=problem_responses({**_ERRORS, 422: "The URL or a kind is refused"}),
)
async def put_feedback(
    body: FeedbackRequest,
    principal: PatientDep,
    response: Response,
    model: ReadModelDep,
    publisher: PublisherDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> FeedbackSecret:
    """Register (or replace) where the patient's app takes feedback and which kinds; a new
    signing secret each time, answered now and never again."""
    patient_id = principal.patient_id
    assert patient_id is not None  # PatientDep
    note_patients([patient_id])
    response.headers["Cache-Control"] = NO_STORE
    kinds = checked(body, settings)
    _ready(model, settings)
    made = subscribe(
        patient_id,
        url=body.url,
        kinds=kinds,
        now=datetime.now(UTC),
        secret=new_secret(),
        previous=model.feedback.get(patient_id),
    )
    await _publish(
        publisher,
        patient_id=patient_id,
        value=wire.encode(made),
        kind="feedback_register",
        metrics=metrics,
        settings=settings,
    )
    model.feedback[patient_id] = made.registration()
    return FeedbackSecret(**made.registration().model_dump(), secret=made.secret)


@router.get(
    "",
    summary="Show the patient's feedback registration (never its secret)",
    response_model=FeedbackRegistration,
    responses=problem_responses({**_ERRORS, 404: "No app is registered"}),
)
async def get_feedback(
    principal: PatientDep, response: Response, model: ReadModelDep, settings: SettingsDep
) -> FeedbackRegistration:
    """Where the patient's app takes feedback, which kinds, since when."""
    assert principal.patient_id is not None
    note_patients([principal.patient_id])
    response.headers["Cache-Control"] = NO_STORE
    return _registered(model, principal.patient_id, settings)


@router.delete(
    "",
    summary="Withdraw the patient's feedback registration",
    status_code=204,
    responses=problem_responses({**_ERRORS, 404: "No app is registered"}),
)
async def delete_feedback(
    principal: PatientDep,
    model: ReadModelDep,
    publisher: PublisherDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Response:
    """Nothing is sent any more (a tombstone on the topic; the secret goes with it)."""
    patient_id = principal.patient_id
    assert patient_id is not None
    note_patients([patient_id])
    _registered(model, patient_id, settings)
    await _publish(
        publisher,
        patient_id=patient_id,
        value=None,
        kind="feedback_withdraw",
        metrics=metrics,
        settings=settings,
    )
    model.feedback.pop(patient_id, None)
    return Response(status_code=204)
