"""``/fhir``: the FHIR R4 read API for clinical systems (an EHR polling its patients' data).

- ``GET /fhir/metadata``: the CapabilityStatement; public, not audited (no patient data);
- ``GET /fhir/Observation?patient=&code=&date=&_count=``: a patient's readings from
  InfluxDB as vital-signs Observations, in a paged ``searchset`` Bundle whose ``next`` link
  carries an opaque cursor (:mod:`pghd.fhir_read`);
- ``GET /fhir/Flag?patient=&status=``: the patient's alerts from the read model as Flags.

A patient reading their own data gets no care-team text: interpretations carry their codes
without the findings' explanations, Flags the problem's label without the alert's summary.

Access and audit are the care-team API's: a bearer token (a care-team member's, or the
patient's own), then :func:`~alerts.api.deps.check_patient` (the patient's teams, an admin,
or the patient themselves; the audit event names the patient, refusals included). Every
answer is ``application/fhir+json`` and ``Cache-Control: no-store``, errors OperationOutcomes
with the same status as the rest of the API would answer: 400 for a search that cannot be
run (``patient`` missing, a bad date or cursor, unknown parameters under ``Prefer:
handling=strict``), 401, 403, 404 for a path under ``/fhir`` that is none of these, 405 for
another method, and 503 + ``Retry-After`` when InfluxDB does not answer within
``PGHD_CARE_API_INFLUX_TIMEOUT_S`` (the whole page) or is not configured, or the read model
is still loading (404 and 405 reach no route: :func:`install_errors` has the app answer
them so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response

import pghd
from alerts.api.deps import AnyoneDep, ReadModelDep, SettingsDep, check_patient, get_oidc
from alerts.api.settings import CareApiSettings
from pghd.audit_trail import AUDIT_UNAVAILABLE, problem_refusal
from pghd.export.influx import ExportStoreError
from pghd.fhir_read.cursor import encode_cursor
from pghd.fhir_read.influx import ObservationPage, ObservationStore
from pghd.fhir_read.interpretation import flags_of, index_findings
from pghd.fhir_read.resources import capability_statement, flag, searchset, vital_sign
from pghd.fhir_read.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    SearchError,
    matching_alerts,
    parse_flag_search,
    parse_observation_search,
    strict_handling,
)
from pghd.problems import ProblemError
from pghd.pseudonym import pseudonym
from pghd.service.fhir_outcome import (
    FHIR_MEDIA_TYPE,
    FhirResponse,
    FhirRoute,
    install_outcome_handlers,
    issue,
    operation_outcome,
    outcome_response,
)
from pghd.service.follower import not_ready
from pghd.service.oidc import OidcVerifier

__all__ = [
    "NO_STORE",
    "PREFIX",
    "PUBLIC",
    "ReadRoute",
    "audit_refusal",
    "get_now",
    "get_observation_store",
    "install_errors",
    "router",
]

logger = logging.getLogger(__name__)

PREFIX = "/fhir"
PUBLIC = (f"{PREFIX}/metadata",)
"""The read API's paths that read no patient's data: not audited, no token needed."""

NO_STORE = {"Cache-Control": "no-store"}
"""Every answer of the read API: patient data is cached nowhere (as ``/v1/me``'s)."""


class ReadRoute(FhirRoute):
    """A read API route: its errors are OperationOutcomes (:class:`FhirRoute`), and none of
    its answers is cached (:data:`NO_STORE`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def no_store(request: Request) -> Response:
            response = await handler(request)
            response.headers.update(NO_STORE)
            return response

        return no_store


router = APIRouter(prefix=PREFIX, tags=["fhir"], route_class=ReadRoute)


def install_errors(app: FastAPI) -> None:
    """Answer the errors under ``/fhir`` that no route sees (no such path: 404; a method no
    route serves: 405; an unexpected error: 500) as OperationOutcomes, not stored either.
    After :func:`pghd.problems.install_handlers`, whose handlers it scopes."""
    install_outcome_handlers(app, prefix=PREFIX, headers=NO_STORE)


T = TypeVar("T")

_CONTENT = {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}}


def _responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"description": text, "content": _CONTENT} for status, text in descriptions.items()
    }


_SEARCH_ERRORS = {
    400: "The search cannot be run: patient missing, a bad parameter value or cursor, or unknown"
    " parameters with Prefer: handling=strict (OperationOutcome)",
    401: "Missing or unknown bearer token (OperationOutcome)",
    403: "The patient is not in a care team of the caller, or is not the caller (OperationOutcome)",
    503: "The audit trail, InfluxDB or the read model is not available now; retry after"
    " Retry-After seconds (OperationOutcome)",
}


def _query(
    name: str, description: str, *, required: bool = False, array: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = (
        {"type": "array", "items": {"type": "string"}} if array else {"type": "string"}
    )
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


_PATIENT = _query("patient", "The patient: its id, or Patient/<id>", required=True)


def get_now() -> datetime:
    """The clock of the read API (tests pin it with a dependency override)."""
    return datetime.now(UTC)


def get_observation_store(request: Request) -> ObservationStore | None:
    """The app's reader of readings (None without an InfluxDB token)."""
    store: ObservationStore | None = getattr(request.app.state, "fhir_store", None)
    return store


NowDep = Annotated[datetime, Depends(get_now)]
StoreDep = Annotated[ObservationStore | None, Depends(get_observation_store)]
OidcDep = Annotated[OidcVerifier | None, Depends(get_oidc)]


def audit_refusal(path: str) -> tuple[str, bytes]:
    """The answer when the audit event of a request cannot be written: an OperationOutcome
    on the read API's paths, a problem document elsewhere."""
    if not path.startswith(f"{PREFIX}/"):
        return problem_refusal(path)
    outcome = operation_outcome(
        [issue(detail=AUDIT_UNAVAILABLE, code="transient", severity="fatal")]
    )
    return FHIR_MEDIA_TYPE, orjson.dumps(outcome)


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _strict(request: Request) -> bool:
    return strict_handling(request.headers.get("prefer"))


def _refused(error: SearchError) -> FhirResponse:
    """The 400 OperationOutcome of a search that cannot be run, naming the parameter."""
    return outcome_response(
        [issue(detail=error.detail, code=error.code, expression=error.parameter)], status=400
    )


def _base(request: Request, settings: CareApiSettings) -> str:
    """The read API's base URL: the configured public one, else the request's own."""
    if settings.fhir_base_url:
        return settings.fhir_base_url.rstrip("/")
    own = str(request.url.replace(query=""))
    return own[: own.index(f"{PREFIX}/") + len(PREFIX)]


def _url(request: Request, settings: CareApiSettings, params: Sequence[tuple[str, str]]) -> str:
    """The URL of the request's resource type with ``params`` (a self or next link)."""
    resource = request.url.path.rsplit("/", 1)[1]
    return f"{_base(request, settings)}/{resource}?{urlencode(list(params))}"


def _unavailable(settings: CareApiSettings, detail: str) -> ProblemError:
    return ProblemError(
        status=503,
        slug="store-unavailable",
        detail=detail,
        headers={"Retry-After": str(settings.retry_after_s)},
    )


async def _within_timeout(read: Awaitable[T], settings: CareApiSettings, patient_id: str) -> T:
    """``read``, or a 503 once InfluxDB failed or the page took longer than the timeout."""
    try:
        async with asyncio.timeout(settings.influx_timeout_s):
            return await read
    except (ExportStoreError, TimeoutError) as exc:
        reason = str(exc) or f"no answer within {settings.influx_timeout_s:g} s"
        logger.warning("FHIR search of %s: InfluxDB unavailable: %s", pseudonym(patient_id), reason)
        raise _unavailable(settings, f"cannot read InfluxDB now: {reason}") from exc


@router.get(
    "/metadata",
    summary="The CapabilityStatement: what this FHIR read API serves (no token needed)",
    response_class=FhirResponse,
    responses=_responses({200: "A CapabilityStatement (FHIR R4 4.0.1)"}),
)
async def metadata(
    request: Request, settings: SettingsDep, oidc: OidcDep, now: NowDep
) -> FhirResponse:
    """FHIR R4 ``capabilities``: Observation and Flag searches, the security in use."""
    statement = capability_statement(
        version=pghd.__version__,
        date=now,
        base_url=_base(request, settings),
        identity_provider=oidc is not None,
    )
    return FhirResponse(statement)


@router.get(
    "/Observation",
    summary="Search a patient's readings: vital-signs Observations in a paged searchset Bundle",
    response_class=FhirResponse,
    responses=_responses(
        {200: "A searchset Bundle (next link while more follow)", **_SEARCH_ERRORS}
    ),
    openapi_extra={
        "parameters": [
            _PATIENT,
            _query("code", "LOINC code(s), comma-separated: 8867-4 or http://loinc.org|8867-4"),
            _query("date", "The reading's time: [eq|ge|gt|le|lt]<date or dateTime>", array=True),
            _query("_count", f"Readings per page, {DEFAULT_COUNT} by default, at most {MAX_COUNT}"),
            _query("_cursor", "Where the previous page ended (from a next link; opaque)"),
        ]
    },
)
async def search_observations(
    request: Request,
    principal: AnyoneDep,
    model: ReadModelDep,
    settings: SettingsDep,
    store: StoreDep,
    now: NowDep,
) -> FhirResponse:
    """One page of the patient's readings, oldest first, with their interpretation where
    the processors flagged them."""
    try:
        search = parse_observation_search(_params(request), strict=_strict(request))
    except SearchError as exc:
        return _refused(exc)
    check_patient(principal, search.patient_id, model=model, settings=settings)
    if store is None:
        raise _unavailable(
            settings, "the FHIR read API needs InfluxDB: set PGHD_CARE_API_INFLUX_TOKEN"
        )
    page: ObservationPage = await _within_timeout(
        store.page(search, now=now), settings, search.patient_id
    )
    index = index_findings(page.findings)
    for_patient = principal.patient_id is not None  # no clinician text: docs/patients.md
    resources = [
        vital_sign(reading, flags_of(reading, index), for_patient=for_patient)
        for reading in page.readings
    ]
    shown = [*search.applied, ("_count", str(search.count))]
    here = shown + ([("_cursor", encode_cursor(search.cursor))] if search.cursor else [])
    links = [("self", _url(request, settings, here))]
    if page.next is not None:
        following = [*shown, ("_cursor", encode_cursor(page.next))]
        links.append(("next", _url(request, settings, following)))
    return FhirResponse(searchset(resources, links=links, now=now))


@router.get(
    "/Flag",
    summary="Search a patient's alerts: Flags (active: open or acknowledged; inactive: resolved"
    " within 30 days)",
    response_class=FhirResponse,
    responses=_responses({200: "A searchset Bundle of every matching Flag", **_SEARCH_ERRORS}),
    openapi_extra={
        "parameters": [
            _PATIENT,
            _query("status", "active, inactive, or both comma-separated (default: both)"),
        ]
    },
)
async def search_flags(
    request: Request,
    principal: AnyoneDep,
    model: ReadModelDep,
    settings: SettingsDep,
    now: NowDep,
) -> FhirResponse:
    """The patient's alerts as Flags, most recently updated first (one page: the read model
    keeps one alert per patient and problem)."""
    try:
        search = parse_flag_search(_params(request), strict=_strict(request))
    except SearchError as exc:
        return _refused(exc)
    check_patient(principal, search.patient_id, model=model, settings=settings)
    if not model.ready:
        raise not_ready(
            "still reading the alerts topic; the patient's alerts are not known yet",
            retry_after_s=settings.retry_after_s,
        )
    found = matching_alerts(model.alerts.query(patient_id=search.patient_id), search, now=now)
    links = [("self", _url(request, settings, search.applied))]
    for_patient = principal.patient_id is not None  # no clinician text: docs/patients.md
    flags = [flag(alert, for_patient=for_patient) for alert in found]
    return FhirResponse(searchset(flags, links=links, now=now))
