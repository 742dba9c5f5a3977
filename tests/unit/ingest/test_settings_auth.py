"""Settings from the environment and API-key lookup."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.testclient import TestClient
from pydantic import ValidationError

from ingest.app import create_app
from ingest.auth import ApiKeyAuthenticator, hash_key
from ingest.deps import authenticate_admin, get_gateway
from ingest.settings import IngestSettings
from pghd.access import CredentialBook, Role, hash_token
from pghd.problems import ProblemError
from pghd.service.auth import authenticate_bearer
from pghd.service.oidc import OidcSettings
from tests.oidc_idp import serving_idp
from tests.unit.ingest.conftest import RecordingGateway, reading


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


def _write(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc))
    st = path.stat()  # a rewrite within the clock's tick still reads as a change
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _keys(**sources: object) -> dict[str, object]:
    return {"schema_version": 1, "sources": sources}


def test_source_keys_rotate_and_revoke_without_a_restart(
    tmp_path: Path, gateway: RecordingGateway
) -> None:
    path = tmp_path / "keys.json"
    _write(path, _keys(acme={"key_sha256": [hash_key("old-key")]}))
    settings = IngestSettings(
        api_keys_file=path,
        credentials_recheck_s=0.001,
        kafka_bootstrap="127.0.0.1:1",
        consent="off",
    )
    app = create_app(settings)
    app.dependency_overrides[get_gateway] = lambda: gateway
    client = TestClient(app)

    def post(key: str) -> int:
        return client.post(
            "/v1/measurements", json=reading(), headers={"X-API-Key": key}
        ).status_code

    assert post("old-key") == 202
    assert post("new-key") == 401
    _write(path, _keys(acme={"key_sha256": [hash_key("new-key"), hash_key("old-key")]}))
    assert (post("new-key"), post("old-key")) == (202, 202), "both work while rotating"
    _write(path, _keys(acme={"key_sha256": [hash_key("new-key")]}))
    assert (post("new-key"), post("old-key")) == (202, 401)
    _write(path, _keys(acme={"key_sha256": [hash_key("new-key")], "disabled": True}))
    assert post("new-key") == 401
    _write(path, {"sources": "not a mapping"})  # refused: the last good file stays in force
    assert post("new-key") == 401


def test_the_users_files_admins_may_use_the_patients_api(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    _write(
        users,
        {
            "users": {
                "lead": {"role": "admin", "token_sha256": [hash_token("lead-token")]},
                "nurse": {
                    "role": "clinician",
                    "teams": ["ward-a"],
                    "token_sha256": [hash_token("nurse-token")],
                },
            }
        },
    )
    settings = IngestSettings(
        admin_tokens={"ops": hash_key("ops-token")}, users_file=users, credentials_recheck_s=0.001
    )
    admins: CredentialBook = create_app(settings).state.admin_credentials

    def admin(token: str) -> str | None:
        presented = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
        try:
            return authenticate_bearer(admins, presented, role=Role.ADMIN).name
        except ProblemError as exc:
            assert exc.status == 401
            return None

    assert admin("lead-token") == "lead"
    assert admin("nurse-token") is None, "a clinician is no admin of enrollments"
    assert admin("ops-token") == "ops"
    assert admin("nobody") is None


def test_the_care_api_users_file_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_CARE_API_USERS_FILE", "/etc/pghd/users.json")
    assert str(IngestSettings().users_file) == "/etc/pghd/users.json"
    monkeypatch.setenv("PGHD_INGEST_USERS_FILE", "/etc/pghd/ingest-users.json")
    assert str(IngestSettings().users_file) == "/etc/pghd/ingest-users.json"


def test_admins_signed_in_at_an_identity_provider_use_the_patients_api() -> None:
    with serving_idp() as idp:
        settings = IngestSettings(
            admin_tokens={"ops": hash_key("ops-token")},
            oidc=OidcSettings(issuer=idp.issuer, audience="pghd-ingest"),
        )
        request = cast(Request, SimpleNamespace(app=create_app(settings)))

        def admin(token: str) -> str | None:
            presented = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
            try:
                return authenticate_admin(request, presented)
            except ProblemError as exc:
                assert exc.status == 401, exc.detail
                return None

        lead = idp.token(aud="pghd-ingest", pghd_role="admin", preferred_username="lead")
        assert admin(lead) == "oidc:lead"
        assert admin(idp.token(aud="pghd-ingest")) is None, "a clinician is no admin"
        assert admin(idp.token(pghd_role="admin")) is None, "the care API's audience"
        assert admin("ops-token") == "ops", "static admin tokens keep working"


def test_an_erasure_settles_longer_than_a_reading_can_take_to_reach_kafka() -> None:
    """A reading accepted just before the tombstone is on the topic or abandoned within the
    produce timeout: a shorter settle would let it land behind the erasure marker."""
    with pytest.raises(ValidationError, match="erase_settle_s"):
        IngestSettings(produce_timeout_s=5, erase_settle_s=2)
    assert IngestSettings(produce_timeout_s=5).erase_settle_s > 5
    assert IngestSettings(produce_timeout_s=5, erase_settle_s=0).erase_settle_s == 0
