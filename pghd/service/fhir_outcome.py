"""FHIR answers as ``application/fhir+json``: resources, OperationOutcomes, and routes whose
errors are OperationOutcomes.

:class:`FhirRoute` makes every error of a FHIR route, including those its dependencies
raise (401 unknown key or token, 403, 413, 429, 503 Kafka or InfluxDB down...), an
OperationOutcome with the same status and headers instead of a problem+json document.
Ingest's ``POST /v1/fhir`` and the care-team API's ``/fhir`` read API both use it.

Some errors reach no route: a path no route has (404), a method the path's route does not
serve (405), an error no handler expected (500). The app's handlers
(:func:`pghd.problems.install_handlers`) answer those; :func:`install_outcome_handlers`
has them answer OperationOutcomes instead under one path prefix (the read API's ``/fhir``),
problem documents elsewhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from pghd.problems import PROBLEM_MEDIA_TYPE, JsonResponse, ProblemError

__all__ = [
    "FHIR_MEDIA_TYPE",
    "FhirResponse",
    "FhirRoute",
    "install_outcome_handlers",
    "issue",
    "operation_outcome",
    "outcome_of_problem",
    "outcome_response",
]

FHIR_MEDIA_TYPE = "application/fhir+json"

_CODE_BY_STATUS = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class FhirResponse(JsonResponse):
    """A FHIR resource, rendered with orjson."""

    media_type = FHIR_MEDIA_TYPE


def issue(
    *, detail: str, code: str, expression: str = "", severity: str = "error"
) -> dict[str, Any]:
    """One ``OperationOutcome.issue`` (``expression`` left out when empty)."""
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": detail}
    if expression:
        out["expression"] = [expression]
    return out


def operation_outcome(issues: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome resource of ``issues`` (already in ``issue`` shape)."""
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def outcome_response(
    issues: Iterable[dict[str, Any]], *, status: int, headers: Mapping[str, str] | None = None
) -> FhirResponse:
    """An OperationOutcome answer."""
    return FhirResponse(operation_outcome(issues), status_code=status, headers=dict(headers or {}))


def outcome_of_problem(exc: ProblemError) -> FhirResponse:
    """The OperationOutcome answer of a problem: same status, headers and detail; the issue
    type from the status (``forbidden``, ``transient``...), ``fatal`` from 500 up."""
    code = _CODE_BY_STATUS.get(exc.status, "exception")
    issues = [
        issue(detail=exc.detail, code=code, severity="fatal" if exc.status >= 500 else "error")
    ]
    for err in exc.errors or []:
        if isinstance(err, Mapping):
            issues.append(
                issue(detail=str(err.get("detail")), code=code, expression=err.get("pointer", ""))
            )
    return outcome_response(issues, status=exc.status, headers=exc.headers)


class FhirRoute(APIRoute):
    """A route whose errors (its own and its dependencies') are OperationOutcomes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ProblemError as exc:
                return outcome_of_problem(exc)

        return fhir_handler


Handler = Callable[[Request, Exception], Any]
_NOT_COPIED = frozenset({"content-length", "content-type"})


def _as_outcome(response: Response, headers: Mapping[str, str]) -> Response:
    """A problem document answer as the OperationOutcome of the same problem (status,
    detail, item errors, headers), with ``headers`` added; any other answer as it is."""
    if response.media_type != PROBLEM_MEDIA_TYPE:
        return response
    problem = orjson.loads(bytes(response.body))
    kept = {k: v for k, v in response.headers.items() if k.lower() not in _NOT_COPIED}
    error = ProblemError(
        status=response.status_code,
        detail=str(problem.get("detail") or problem.get("title") or ""),
        errors=problem.get("errors"),
        headers={**kept, **headers},
    )
    return outcome_of_problem(error)


def install_outcome_handlers(
    app: FastAPI, *, prefix: str, headers: Mapping[str, str] | None = None
) -> None:
    """Have ``app``'s handlers of errors no route sees (404, 405, 422, 500: those
    :func:`pghd.problems.install_handlers` installed, so call it first) answer an
    OperationOutcome, with ``headers`` added, for the paths ``prefix`` and under it
    (``/fhir``: ``/fhir``, ``/fhir/...``); elsewhere they answer as before."""
    added = dict(headers or {})
    under = prefix.rstrip("/") + "/"

    def scoped(handler: Handler) -> Handler:
        async def outcome_handler(request: Request, exc: Exception) -> Response:
            answer = handler(request, exc)  # problems.py's are async; Starlette's may not be
            response: Response = await answer if inspect.isawaitable(answer) else answer
            path = request.url.path
            if path != under.rstrip("/") and not path.startswith(under):
                return response
            return _as_outcome(response, added)

        return outcome_handler

    for kind in (StarletteHTTPException, RequestValidationError, Exception):
        handler = app.exception_handlers.get(kind)
        if handler is not None:
            app.add_exception_handler(kind, scoped(handler))
