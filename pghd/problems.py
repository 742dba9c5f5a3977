"""RFC 9457 problem details (``application/problem+json``) and orjson responses.

Routes raise :class:`ProblemError`; the handlers installed by :func:`install_handlers` turn it,
FastAPI's request validation errors and Starlette's HTTP errors into problem documents, and
:func:`document_problem_responses` makes an OpenAPI document say so (:func:`install_openapi`
has an app's OpenAPI document do all that). Ingest and the care-team API both use this one
module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from pghd.log_privacy import scrub_query

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_SCHEMAS",
    "ItemError",
    "JsonResponse",
    "Problem",
    "ProblemError",
    "ProblemResponse",
    "document_problem_responses",
    "install_handlers",
    "install_openapi",
    "problem_responses",
    "problem_type",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_type(slug: str) -> str:
    """The ``type`` URI of one kind of problem."""
    return f"urn:pghd:problem:{slug}"


class JsonResponse(JSONResponse):
    """A JSON response rendered with orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ProblemResponse(JsonResponse):
    """A problem details document."""

    media_type = PROBLEM_MEDIA_TYPE


class ItemError(BaseModel):
    """One thing wrong with one item of the request body."""

    pointer: str = Field(description="JSON pointer (RFC 6901) into the request")
    field: str | None = Field(description="the field, dotted; null when the whole item is wrong")
    detail: str


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[ItemError] | None = Field(
        default=None, description="what is wrong where, when the problem is about the body"
    )


_REF_TEMPLATE = "#/components/schemas/{model}"


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
        title: str | None = None,
        errors: list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = problem_type(slug) if slug else "about:blank"
        self.title = title or HTTPStatus(status).phrase
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
    headers = dict(exc.headers or {})
    return ProblemError(status=exc.status_code, detail=detail, headers=headers).to_response()


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    path = scrub_query(request.url.path)  # no patient id in the log
    logger.error("unexpected error on %s %s", request.method, path, exc_info=exc)
    return ProblemError(status=500, detail="unexpected error; it has been logged").to_response()


_FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def document_problem_responses(schema: dict[str, Any]) -> None:
    """Make an OpenAPI ``schema`` say what the handlers answer for FastAPI's own errors.

    FastAPI documents its request validation errors as 422 ``application/json``
    ``HTTPValidationError``, and a body it cannot parse as nothing at all; the handlers
    answer both with problem documents (422 and 400).
    """
    problem = problem_responses({400: "The body cannot be parsed", 422: "The request is not valid"})
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, response in list(responses.items()):
                content = response.get("content", {}).get("application/json", {})
                if content.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION_REF:
                    responses[status] = {**problem[422], "description": response["description"]}
            if "requestBody" in operation:
                responses.setdefault("400", problem[400])
    if _FASTAPI_VALIDATION_REF not in orjson.dumps(schema.get("paths", {})).decode():
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""
    app.add_exception_handler(Exception, _unexpected_handler)
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)


def install_openapi(
    app: FastAPI,
    *,
    schemas: Mapping[str, Any] | None = None,
    customize: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Have ``app``'s OpenAPI document (built once, when first asked for) hold the problem
    document schemas and the component ``schemas`` that hand-parsed request bodies refer to,
    say what the handlers answer (:func:`document_problem_responses`), and whatever
    ``customize`` adds to it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in {**PROBLEM_SCHEMAS, **(schemas or {})}.items():
                components.setdefault(name, definition)
            if customize is not None:
                customize(schema)
            document_problem_responses(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
