"""FHIR answers as ``application/fhir+json``: OperationOutcomes, batch/transaction responses.

:class:`FhirRoute` makes every error of a FHIR route, including those its dependencies
raise (401 unknown key, 413, 429, 503 Kafka down...), an OperationOutcome with the same
status and headers instead of a problem+json document.
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
    "entry_status",
    "issue",
    "issue_code",
    "operation_outcome",
    "outcome_response",
]

FHIR_MEDIA_TYPE = "application/fhir+json"

_CODE_BY_REASON = {
    "invalid": "invalid",
    "unit": "code-invalid",
    "range": "value",
    "time": "value",
    "consent": "forbidden",
    "unlinked-source": "forbidden",
    "unknown-account": "not-found",
    "unsupported": "not-supported",
    "status": "business-rule",
}
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


_FORBIDDEN = {"consent", "unlinked-source"}


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


def issue_code(err: Mapping[str, Any], reason: str | None) -> str:
    """The FHIR issue type of an item error: its own, else the one of its refusal reason."""
    own = err.get("code")
    return str(own) if own else _CODE_BY_REASON.get(reason or "invalid", "invalid")


def operation_outcome(issues: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome resource of ``issues`` (already in ``issue`` shape)."""
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def outcome_response(
    issues: Iterable[dict[str, Any]], *, status: int, headers: Mapping[str, str] | None = None
) -> FhirResponse:
    """An OperationOutcome answer."""
    return FhirResponse(operation_outcome(issues), status_code=status, headers=dict(headers or {}))


def entry_status(*, accepted: bool, reason: str | None) -> str:
    """``Bundle.entry.response.status`` of one entry of a batch or transaction."""
    if accepted:
        return "201 Created"
    return "403 Forbidden" if reason in _FORBIDDEN else "400 Bad Request"


def _from_problem(exc: ProblemError) -> FhirResponse:
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
                return _from_problem(exc)

        return fhir_handler
