"""Settings from the environment and API-key lookup."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ingest.auth import ApiKeyAuthenticator, hash_key
from ingest.settings import IngestSettings


def test_defaults_have_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHD_INGEST_KAFKA_BOOTSTRAP", "PGHD_KAFKA_BOOTSTRAP", "PGHD_INGEST_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    settings = IngestSettings()
    assert settings.api_keys == {}
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert (settings.max_batch, settings.produce_timeout_s, settings.retry_after_s) == (
        1000,
        5.0,
        5,
    )
    assert settings.max_body_bytes == 5 * 1024 * 1024
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_environment_and_bootstrap_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hash_key("secret")
    monkeypatch.setenv("PGHD_INGEST_API_KEYS", f'{{"acme": "{digest.upper()}"}}')
    monkeypatch.setenv("PGHD_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    monkeypatch.delenv("PGHD_INGEST_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("PGHD_INGEST_MAX_BATCH", "50")
    settings = IngestSettings()
    assert settings.api_keys == {"acme": digest}
    assert settings.kafka_bootstrap == "10.0.0.1:9092"
    assert settings.max_batch == 50
    monkeypatch.setenv("PGHD_INGEST_KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    assert IngestSettings().kafka_bootstrap == "127.0.0.1:29092"
    assert IngestSettings(kafka_bootstrap="h:1").kafka_bootstrap == "h:1"


@pytest.mark.parametrize("keys", [{"acme": "plain-secret"}, {"bad name": hash_key("x")}])
def test_keys_must_be_digests_of_named_sources(keys: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        IngestSettings(api_keys=keys)


def test_authenticator_finds_the_source_of_a_key() -> None:
    auth = ApiKeyAuthenticator({"acme": hash_key("k1"), "globex": hash_key("k2")})
    assert auth.identify("k2") == "globex"
    assert auth.identify("k1") == "acme"
    assert auth.identify("k3") is None
    assert auth.identify(None) is None
    assert auth.identify("") is None
    assert not ApiKeyAuthenticator({}).configured
