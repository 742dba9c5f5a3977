"""FHIR answers as ``application/fhir+json``: resources, OperationOutcomes, and routes whose
errors are OperationOutcomes.

:class:`FhirRoute` makes every error of a FHIR route, including those its dependencies
raise (401 unknown key or token, 403, 413, 429, 503 Kafka or InfluxDB down...), an
OperationOutcome with the same status and headers instead of a problem+json document.
Ingest's ``POST /v1/fhir`` and the care-team API's ``/fhir`` read API both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from pghd.problems import JsonResponse, ProblemError

__all__ = [
    "FHIR_MEDIA_TYPE",
    "FhirResponse",
    "FhirRoute",
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
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
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
