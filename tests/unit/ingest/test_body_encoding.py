"""Request bodies: gzip accepted and bounded after inflating, other codings refused (415)."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.types import Message

from ingest.app import create_app
from ingest.body import read_body
from ingest.deps import get_gateway
from ingest.settings import IngestSettings
from pghd import wire
from pghd.contracts import Measurement
from pghd.problems import ProblemError
from tests.unit.ingest.conftest import MAX_BODY, RecordingGateway, reading

URL = "/v1/measurements"
PROBLEM = "application/problem+json"


@pytest.fixture
def app(settings: IngestSettings, gateway: RecordingGateway) -> FastAPI:
    """The ingest app without enrollment checks: these tests are about the body only."""
    app = create_app(settings.model_copy(update={"consent": "off"}))
    app.dependency_overrides[get_gateway] = lambda: gateway
    return app


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", "identity, gzip"])
def test_gzip_body_is_inflated_and_produced(
    client: TestClient, gateway: RecordingGateway, encoding: str
) -> None:
    body = gzip.compress(orjson.dumps([reading(event_id="gz-1"), reading(value=80)]))
    response = client.post(URL, content=body, headers={"Content-Encoding": encoding})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2
    events = [wire.decode(Measurement, value).event_id for _, value in gateway.records]
    assert events[0] == "gz-1" and len(events) == 2


def test_concatenated_gzip_members_are_one_body(
    client: TestClient, gateway: RecordingGateway
) -> None:
    text = orjson.dumps(reading(event_id="two-members"))
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    response = client.post(URL, content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text
    assert len(gateway.records) == 1


def test_gzip_body_streamed_in_small_chunks(client: TestClient, gateway: RecordingGateway) -> None:
    body = gzip.compress(orjson.dumps([reading(value=60 + i) for i in range(5)]))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    response = client.post(URL, content=chunks(), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202, response.text
    assert len(gateway.records) == 5


def test_gzip_bomb_is_413_naming_the_decompressed_limit(
    client: TestClient, gateway: RecordingGateway
) -> None:
    bomb = gzip.compress(b" " * (2 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < MAX_BODY  # small on the wire, 2 MiB inflated
    response = client.post(URL, content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"] == f"the decompressed body is larger than {MAX_BODY} bytes"
    assert gateway.calls == 0


def test_compressed_body_over_the_limit_is_413_before_inflating(client: TestClient) -> None:
    noise = gzip.compress(bytes(range(256)) * 64, compresslevel=0)  # stored, not deflated
    assert len(noise) > MAX_BODY
    response = client.post(URL, content=noise, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json()["detail"] == f"the body is larger than {MAX_BODY} bytes"


def _request(body: bytes, *, chunk: int = 16 * 1024) -> Request:
    parts = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]

    async def receive() -> Message:
        part = parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(parts)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": URL,
        "headers": [(b"content-encoding", b"gzip")],
    }
    return Request(scope, receive)


def test_a_bomb_is_never_inflated_beyond_the_limit() -> None:
    inflated_size = 64 * 1024 * 1024
    bomb = zlib.compress(b"\0" * inflated_size, 9, wbits=31)  # ~64 KB of gzip
    limit = 64 * 1024

    tracemalloc.start()
    try:
        with pytest.raises(ProblemError) as exc:
            asyncio.run(read_body(_request(bomb), limit=limit * 100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.status == 413
    assert "decompressed" in exc.value.detail
    # Inflating it all would hold 64 MiB; the reader holds about the limit (6.4 MiB) once.
    assert peak < 3 * limit * 100


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"definitely not gzip", "incorrect header check"),
        (gzip.compress(b'{"a": 1}')[:-6], "ends before"),
        (gzip.compress(b'{"a": 1}') + b"trailing junk", "incorrect header check"),
    ],
    ids=["not-gzip", "truncated", "trailing-junk"],
)
def test_corrupt_gzip_is_400_problem(
    client: TestClient, gateway: RecordingGateway, body: bytes, reason: str
) -> None:
    response = client.post(URL, content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "urn:pghd:problem:malformed-gzip"
    assert reason in problem["detail"]
    assert gateway.calls == 0


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd", "gzip, gzip", "gzip, br"])
def test_other_encodings_are_415_naming_the_supported_ones(
    client: TestClient, gateway: RecordingGateway, encoding: str
) -> None:
    response = client.post(
        URL, content=orjson.dumps(reading()), headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["Accept-Encoding"] == "gzip, identity"
    detail = response.json()["detail"]
    assert repr(encoding) in detail and "gzip, identity" in detail
    assert gateway.calls == 0


def test_identity_encoding_is_the_plain_body(client: TestClient, gateway: RecordingGateway) -> None:
    response = client.post(
        URL, content=orjson.dumps(reading()), headers={"Content-Encoding": "identity"}
    )
    assert response.status_code == 202, response.text


def test_limits_and_encodings_are_in_the_openapi(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][URL]["post"]
    responses = operation["responses"]
    assert {"400", "401", "413", "415", "422", "429", "503"} <= set(responses)
    assert "PGHD_INGEST_MAX_BODY_BYTES" in responses["413"]["description"]
    assert "PGHD_INGEST_MAX_BATCH" in responses["413"]["description"]
    assert "gzip" in operation["requestBody"]["description"]
