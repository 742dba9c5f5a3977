"""``/v1/me``: a patient's own data, read with their own token (``PatientDep``).

``GET /v1/me/summary``: their latest readings against their usual ranges, 7- and 30-day
trends, nightly resting heart rates and their open findings in plain words
(:mod:`pghd.patient_view.summary`); ``GET /v1/me/readings``: one metric's points over a
span, downsampled for long spans, with the usual range alongside
(:mod:`pghd.patient_view.chart`). Only the token's own patient is ever read: the patient id
comes from the token, never from the request. Every request is audited like every other
``/v1/`` one, naming the patient. Answers are ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from alerts.api.deps import PatientDep, ReadModelDep, SettingsDep
from alerts.api.patient_view import ClockDep, PatientViewDep, view_unavailable
from alerts.api.settings import CareApiSettings
from pghd.access import Principal
from pghd.audit_trail import note_patients
from pghd.catalogue import Metric
from pghd.patient_view.chart import Chart, ChartRequestError, Resolution, chart, plan
from pghd.patient_view.influx import PatientViewUnavailable
from pghd.patient_view.summary import Summary, summarize, usual_by_channel
from pghd.problems import ProblemError, problem_responses

__all__ = ["router"]

router = APIRouter(prefix="/v1/me", tags=["me"])

_ERRORS = {
    401: "Missing or unknown bearer token",
    403: "Not a patient's own token (care-team members use the other routes)",
    503: "InfluxDB or the enrollments cannot be read now; see Retry-After",
}


def _patient(principal: Principal, response: Response) -> str:
    """The token's own patient, named in the request's audit event; the answer is cached
    nowhere."""
    assert principal.patient_id is not None  # PatientDep
    note_patients([principal.patient_id])
    response.headers["Cache-Control"] = "no-store"
    return principal.patient_id


def _unreadable(settings: CareApiSettings, exc: PatientViewUnavailable) -> ProblemError:
    return view_unavailable(settings, f"your readings cannot be read now; retry shortly ({exc})")


@router.get(
    "/summary",
    summary="My latest readings against my usual ranges, trends, nights and findings",
    response_model=Summary,
    responses=problem_responses(_ERRORS),
)
async def my_summary(
    principal: PatientDep,
    response: Response,
    model: ReadModelDep,
    store: PatientViewDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> Summary:
    """The patient's own summary (see docs/patients.md for every field)."""
    patient_id = _patient(principal, response)
    if not model.ready:
        raise view_unavailable(settings, "still reading your findings; retry shortly")
    now = clock()
    alerts = [a for a in model.alerts.query(patient_id=patient_id) if a.active]
    try:
        inputs = await store.summary_inputs(patient_id, now=now, findings=bool(alerts))
    except PatientViewUnavailable as exc:
        raise _unreadable(settings, exc) from exc
    return summarize(patient_id, inputs, alerts, now=now)


@router.get(
    "/readings",
    summary="My readings of one metric over a span, for a chart",
    response_model=Chart,
    responses=problem_responses({**_ERRORS, 422: "Invalid metric, span or resolution"}),
)
async def my_readings(
    principal: PatientDep,
    response: Response,
    store: PatientViewDep,
    clock: ClockDep,
    settings: SettingsDep,
    metric: Annotated[Metric, Query(description="a metric of the catalogue")],
    start: Annotated[
        AwareDatetime | None, Query(description="from (default: 7 days before end)")
    ] = None,
    end: Annotated[AwareDatetime | None, Query(description="until (default: now)")] = None,
    resolution: Annotated[
        Resolution,
        Query(description="raw, a window (5m ... 1d), or auto: raw up to 6 h, else ~300 points"),
    ] = Resolution.AUTO,
) -> Chart:
    """The patient's own points of ``metric`` in ``[start, end)``, per channel, with each
    channel's usual range as it stood at ``end``."""
    patient_id = _patient(principal, response)
    try:
        chosen = plan(metric, now=clock(), start=start, end=end, resolution=resolution)
    except ChartRequestError as exc:
        raise ProblemError(status=422, slug="invalid-chart", detail=str(exc)) from None
    try:
        series, baselines = await store.chart_inputs(patient_id, chosen)
    except PatientViewUnavailable as exc:
        raise _unreadable(settings, exc) from exc
    return chart(patient_id, chosen, series, usual_by_channel(baselines))
