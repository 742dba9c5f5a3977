"""The OpenAPI spec documents the problem documents the handlers really answer with."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def test_fastapi_validation_errors_are_documented_as_problems(client: TestClient) -> None:
    """FastAPI would document 422 as application/json HTTPValidationError; the handler
    answers problem+json, and the spec says so."""
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(spec)
    validated = [
        (label, op)
        for label, op in operations(spec)
        if op.get("parameters") and "422" in op["responses"]
    ]
    assert validated
    for label, op in validated:
        assert PROBLEM in op["responses"]["422"]["content"], label


def test_every_operation_with_a_body_documents_400(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    with_body = [(label, op) for label, op in operations(spec) if "requestBody" in op]
    assert with_body
    for label, op in with_body:
        assert "400" in op["responses"], label
