"""Per-source rate limits: 429 problem with Retry-After, per-source overrides, metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

import limits.storage.memory
import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.testclient import TestClient
from pydantic import ValidationError

import ingest.ratelimit
from ingest.app import create_app
from ingest.auth import hash_key
from ingest.deps import RateLimiterDep, get_gateway
from ingest.metrics import IngestMetrics
from ingest.ratelimit import SourceRateLimiter, parse_limit
from ingest.settings import IngestSettings
from pghd.problems import ProblemError
from tests.unit.ingest.conftest import API_KEY, SOURCE, RecordingGateway, reading

URL = "/v1/measurements"
PROBLEM = "application/problem+json"


def make_client(gateway: RecordingGateway, **settings: object) -> TestClient:
    app = create_app(
        IngestSettings(
            api_keys={SOURCE: hash_key(API_KEY), "other": hash_key("other-key")},
            kafka_bootstrap="127.0.0.1:1",
            consent="off",
            **settings,  # type: ignore[arg-type]
        )
    )
    app.dependency_overrides[get_gateway] = lambda: gateway
    return TestClient(app, headers={"X-API-Key": API_KEY})


def test_over_the_limit_is_429_problem_with_retry_after(gateway: RecordingGateway) -> None:
    client = make_client(gateway, rate_limit="2/minute")
    assert [client.post(URL, json=reading()).status_code for _ in range(2)] == [202, 202]

    response = client.post(URL, json=reading())

    assert response.status_code == 429
    assert response.headers["content-type"] == PROBLEM
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    problem = response.json()
    assert problem["type"] == "urn:pghd:problem:rate-limited"
    assert "2 requests per minute" in problem["detail"]
    assert SOURCE in problem["detail"]
    assert gateway.calls == 2
    metrics = client.get("/metrics").text
    assert f'rate_limited_total{{source="{SOURCE}"}} 1.0' in metrics
    assert 'http_requests_total{method="POST",route="/v1/measurements",status="429"} 1.0' in metrics


def test_each_source_has_its_own_window(gateway: RecordingGateway) -> None:
    client = make_client(gateway, rate_limit="1/minute")
    assert client.post(URL, json=reading()).status_code == 202
    assert client.post(URL, json=reading()).status_code == 429
    other = client.post(URL, json=reading(), headers={"X-API-Key": "other-key"})
    assert other.status_code == 202


def test_per_source_override_and_off(gateway: RecordingGateway) -> None:
    client = make_client(gateway, rate_limit="1/minute", rate_limits={SOURCE: "off"})
    assert [client.post(URL, json=reading()).status_code for _ in range(5)] == [202] * 5
    other = [
        client.post(URL, json=reading(), headers={"X-API-Key": "other-key"}).status_code
        for _ in range(2)
    ]
    assert other == [202, 429]


def test_unauthenticated_requests_are_401_not_counted(gateway: RecordingGateway) -> None:
    client = make_client(gateway, rate_limit="1/minute")
    for _ in range(3):
        assert client.post(URL, json=reading(), headers={"X-API-Key": "nope"}).status_code == 401
    assert client.post(URL, json=reading()).status_code == 202


class _Clock:
    """Stands in for the ``time`` module of the limiter and of ``limits``' memory storage:
    its ``time()`` moves only when the test moves it (a loaded machine cannot pass a window)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(ingest.ratelimit, "time", fake)
    return fake


def test_retry_after_is_when_the_oldest_request_leaves_the_window(clock: _Clock) -> None:
    limiter = SourceRateLimiter(default="2/second")
    assert limiter.retry_after("acme") is None
    assert limiter.retry_after("acme") is None
    assert limiter.retry_after("acme") == 1
    clock.now += 1.05
    assert limiter.retry_after("acme") is None


def test_refused_requests_do_not_count_against_the_window(clock: _Clock) -> None:
    limiter = SourceRateLimiter(default="1/second;3/minute")
    assert limiter.retry_after("acme") is None
    assert limiter.retry_after("acme") == 1  # refused by 1/second: uses nothing of 3/minute
    clock.now += 1.05
    assert limiter.retry_after("acme") is None
    clock.now += 1.05
    assert limiter.retry_after("acme") is None
    wait = limiter.retry_after("acme")  # 3/minute is full now: wait for the first to leave
    assert wait is not None and 55 <= wait <= 60


def _vendor_of(x_vendor: Annotated[str, Header()]) -> str:
    """Stands in for a signed webhook's own authentication."""
    return x_vendor


def _hook(source: Annotated[str, Depends(_vendor_of)], limiter: RateLimiterDep) -> dict[str, str]:
    try:
        limiter.enforce(source)
    except ProblemError as exc:
        return {"status": str(exc.status), "retry_after": exc.headers["Retry-After"]}
    return {"status": "ok"}


@pytest.fixture
def webhook_app() -> Iterator[TestClient]:
    """A route with its own authentication, limited through ``RateLimiterDep``."""
    app = FastAPI()
    app.state.rate_limiter = SourceRateLimiter(default="1/minute", metrics=IngestMetrics())
    app.post("/hook")(_hook)
    yield TestClient(app)


def test_routes_with_their_own_auth_call_enforce_with_their_source(
    webhook_app: TestClient,
) -> None:
    first = webhook_app.post("/hook", headers={"X-Vendor": "withings"}).json()
    second = webhook_app.post("/hook", headers={"X-Vendor": "withings"}).json()
    third = webhook_app.post("/hook", headers={"X-Vendor": "fitbit"}).json()
    assert first == {"status": "ok"} and third == {"status": "ok"}
    assert second["status"] == "429" and int(second["retry_after"]) >= 1


@pytest.mark.parametrize("text", ["lots", "1200/fortnight", "", "-1/minute"])
def test_invalid_limits_are_refused_by_settings(text: str) -> None:
    with pytest.raises(ValidationError, match="rate limit"):
        IngestSettings(rate_limit=text)
    with pytest.raises(ValidationError, match="rate limit"):
        IngestSettings(rate_limits={"acme": text})


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_INGEST_RATE_LIMIT", "20/second;1200/minute")
    monkeypatch.setenv("PGHD_INGEST_RATE_LIMITS", '{"acme": "6000/minute", "beta": "off"}')
    settings = IngestSettings()
    assert settings.rate_limit == "20/second;1200/minute"
    assert settings.rate_limits == {"acme": "6000/minute", "beta": "off"}
    assert [item.amount for item in parse_limit(settings.rate_limit)] == [20, 1200]
    assert parse_limit("OFF") == []


def test_default_is_1200_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHD_INGEST_RATE_LIMIT", raising=False)
    assert IngestSettings().rate_limit == "1200/minute"


def test_every_api_key_operation_documents_429(gateway: RecordingGateway) -> None:
    spec = make_client(gateway).get("/openapi.json").json()
    secured = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if any("APIKeyHeader" in r for r in op.get("security", []))
    ]
    assert secured
    for path, method, op in secured:
        assert "429" in op["responses"], f"{method.upper()} {path}"
        schema = op["responses"]["429"]["content"][PROBLEM]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}
