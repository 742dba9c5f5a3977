"""Bearer-token authentication and the settings that configure it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from alerts.api.settings import CareApiSettings
from pghd.access import CredentialBook, Role, hash_token
from tests.unit.alerts.api.conftest import AUTH, TOKEN, USER


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"X-API-Key": TOKEN},
    ],
    ids=["none", "unknown", "not-bearer", "ingest-style-key"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/alerts"),
        ("GET", "/v1/alerts/whatever"),
        ("POST", "/v1/alerts/whatever/acknowledge"),
        ("GET", "/v1/silences"),
        ("DELETE", "/v1/silences/s1"),
    ],
)
def test_every_resource_needs_a_known_bearer_token(
    client: TestClient, headers: dict[str, str], method: str, path: str
) -> None:
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert body["type"] == "urn:pghd:problem:unauthorized"
    assert TOKEN not in response.text


def test_a_known_token_is_let_in(client: TestClient) -> None:
    assert client.get("/v1/alerts", headers=AUTH).status_code == 200


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_older_tokens_name_admins() -> None:
    book = CredentialBook(None, fixed={USER: hash_token(TOKEN), "b": hash_token("b-token")})
    found = book.identify(TOKEN)
    assert found is not None and (found.name, found.role) == (USER, Role.ADMIN)
    assert (who := book.identify("b-token")) is not None and who.name == "b"
    assert book.identify("nope") is None
    assert book.identify(None) is None
    assert not CredentialBook(None).configured


def test_settings_take_digests_not_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="SHA-256 hex digest"):
        CareApiSettings(tokens={USER: TOKEN})
    with pytest.raises(ValidationError, match="user name"):
        CareApiSettings(tokens={"no spaces": hash_token(TOKEN)})
    digest = hash_token(TOKEN).upper()
    monkeypatch.setenv("PGHD_CARE_API_TOKENS", f'{{"{USER}": "{digest}"}}')
    monkeypatch.setenv("PGHD_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("PGHD_ALERTS_ROUTING_FILE", "/etc/pghd/routing.json")
    settings = CareApiSettings()
    assert settings.tokens == {USER: hash_token(TOKEN)}
    assert settings.kafka_bootstrap == "kafka:9092"
    assert str(settings.routing_file) == "/etc/pghd/routing.json"
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)


def test_no_default_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHD_CARE_API_TOKENS", raising=False)
    assert CareApiSettings().tokens == {}
