"""RFC 9457 problem details (``application/problem+json``) and orjson responses.

Routes raise :class:`ProblemError`; the handlers installed by :func:`install_handlers` turn
it, FastAPI's request validation errors and Starlette's HTTP errors into problem documents.
(The same shape as ingest's; services import ``pghd``, never each other.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_SCHEMAS",
    "FieldError",
    "JsonResponse",
    "Problem",
    "ProblemError",
    "ProblemResponse",
    "install_handlers",
    "problem_responses",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF_TEMPLATE = "#/components/schemas/{model}"


class JsonResponse(JSONResponse):
    """A JSON response rendered with orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(JsonResponse):
    """A problem details document."""

    media_type = PROBLEM_MEDIA_TYPE


class FieldError(BaseModel):
    """One thing wrong with the request."""

    pointer: str = Field(description="JSON pointer (RFC 6901) into the request")
    field: str | None = Field(description="the field, dotted; null when the whole body is wrong")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template=_REF_TEMPLATE)
    return {**schema.pop("$defs", {}), "Problem": schema}


PROBLEM_SCHEMAS: dict[str, Any] = _problem_schemas()
"""OpenAPI component schemas of problem documents (the app adds them to its OpenAPI)."""


def problem_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem documents, by status."""
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF_TEMPLATE.format(model="Problem")}}}
    return {
        status: {"description": text, "content": content} for status, text in descriptions.items()
    }


class ProblemError(Exception):
    """Raised by routes and dependencies to answer with a problem document."""

    def __init__(
        self,
        *,
        status: int,
        detail: str,
        slug: str | None = None,
        errors: list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = f"urn:pghd:problem:{slug}" if slug else "about:blank"
        self.title = HTTPStatus(status).phrase
        self.errors = errors
        self.headers = dict(headers or {})

    def to_response(self) -> ProblemResponse:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return ProblemResponse(body, status_code=self.status, headers=self.headers)


def _pointer(loc: tuple[int | str, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


async def _problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return exc.to_response()


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "pointer": _pointer(tuple(e["loc"])),
            "field": ".".join(str(p) for p in e["loc"][1:]) or None,
            "detail": e["msg"],
        }
        for e in exc.errors()
    ]
    return ProblemError(
        status=422, slug="invalid-request", detail="the request is not valid", errors=errors
    ).to_response()


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return ProblemError(
        status=exc.status_code, detail=detail, headers=dict(exc.headers or {})
    ).to_response()


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ProblemError(status=500, detail="unexpected error; it has been logged").to_response()


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""
    app.add_exception_handler(Exception, _unexpected_handler)
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
