"""The care-team API with an identity provider: its JWTs carry role and teams, and the
team checks and the audit trail treat them as they treat users-file users.

The app runs in-process (TestClient, no lifespan); the provider is a real HTTP server on the
loopback (:mod:`tests.oidc_idp`) that the app fetches its keys from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.access import hash_token
from pghd.service.oidc import OidcSettings
from tests.oidc_idp import AUDIENCE, LoopbackIdp, serving_idp
from tests.unit.alerts.api.conftest import RecordingProducer, build, make_alert
from tests.unit.alerts.api.test_access import NOBODYS, OURS, THEIRS
from tests.unit.audit_sink import RecordingAuditSink


@pytest.fixture
def idp() -> Iterator[LoopbackIdp]:
    with serving_idp() as idp:
        yield idp


@pytest.fixture
def audit() -> RecordingAuditSink:
    return RecordingAuditSink()


@pytest.fixture
def client(idp: LoopbackIdp, audit: RecordingAuditSink, tmp_path: Path) -> TestClient:
    users = tmp_path / "users.json"
    users.write_text(
        '{"schema_version": 1, "users": {"nurse-b": {"role": "clinician", "teams": ["ward-b"],'
        f' "token_sha256": ["{hash_token("nurse-b-token")}"]}}}}}}'
    )
    settings = CareApiSettings(
        users_file=users,
        kafka_bootstrap="127.0.0.1:1",
        # keys through discovery; no interval between fetches (tests/unit/pghd/test_oidc.py
        # shows the interval with a fake clock)
        oidc=OidcSettings(issuer=idp.issuer, audience=AUDIENCE, jwks_min_refresh_s=0),
    )
    model = ReadModel(ready=True)
    model.patient_teams = {OURS: frozenset({"ward-a"}), THEIRS: frozenset({"ward-b"})}
    model.load_alerts(
        [make_alert(patient_id=p, alert_id=f"al-{p}") for p in (OURS, THEIRS, NOBODYS)]
    )
    return TestClient(build(settings, RecordingProducer(), model, audit))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_clinician_jwt_reaches_their_teams_patients_only(
    client: TestClient, idp: LoopbackIdp, audit: RecordingAuditSink
) -> None:
    nurse = bearer(idp.token())  # nurse-a, clinician of ward-a
    own = client.get(f"/v1/alerts/al-{OURS}", headers=nurse)
    assert own.status_code == 200, own.text
    foreign = client.get(f"/v1/alerts/al-{THEIRS}", headers=nurse)
    assert foreign.status_code == 403, foreign.text
    assert foreign.json()["type"] == "urn:pghd:problem:forbidden-patient"
    assert client.get(f"/v1/alerts/al-{NOBODYS}", headers=nurse).status_code == 403
    listed = client.get("/v1/alerts", headers=nurse).json()["items"]
    assert {a["patient_id"] for a in listed} == {OURS}
    acknowledged = client.post(f"/v1/alerts/al-{OURS}/acknowledge", json={}, headers=nurse)
    assert acknowledged.status_code == 202, acknowledged.text

    agents = [(e.agent.name, e.agent.role, e.agent.teams, e.outcome) for e in audit.events]
    assert agents[:2] == [
        ("oidc:nurse-a", "clinician", ["ward-a"], "success"),
        ("oidc:nurse-a", "clinician", ["ward-a"], "denied"),
    ]
    assert audit.events[1].patients == [THEIRS]


def test_a_viewer_jwt_reads_but_cannot_act(client: TestClient, idp: LoopbackIdp) -> None:
    viewer = bearer(idp.token(pghd_role="viewer", preferred_username="student-a"))
    assert client.get(f"/v1/alerts/al-{OURS}", headers=viewer).status_code == 200
    refused = client.post(f"/v1/alerts/al-{OURS}/acknowledge", json={}, headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:pghd:problem:forbidden-role"
    assert "oidc:student-a is a viewer" in refused.json()["detail"]


def test_users_file_tokens_keep_working_beside_jwts(client: TestClient, idp: LoopbackIdp) -> None:
    assert client.get(f"/v1/alerts/al-{THEIRS}", headers=bearer("nurse-b-token")).status_code == (
        200
    )
    assert client.get(f"/v1/alerts/al-{THEIRS}", headers=bearer("nurse-a-token")).status_code == (
        401
    )


def test_bad_jwts_are_401_and_audited_as_anonymous(
    client: TestClient, idp: LoopbackIdp, audit: RecordingAuditSink
) -> None:
    for token in (idp.token(aud="another-api"), idp.token(pghd_role=None)):
        response = client.get(f"/v1/alerts/al-{OURS}", headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["detail"].startswith("invalid bearer token")
    assert {e.agent.name for e in audit.events} == {"anonymous"}


def test_a_jwt_needing_a_key_while_the_provider_is_down_is_503(
    client: TestClient, idp: LoopbackIdp
) -> None:
    assert client.get("/v1/alerts", headers=bearer(idp.token())).status_code == 200
    rotated = idp.add_key("ES256")
    idp.stop()
    response = client.get("/v1/alerts", headers=bearer(idp.token(rotated)))
    assert response.status_code == 503, response.text
    assert response.json()["type"] == "urn:pghd:problem:idp-unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert client.get("/v1/alerts", headers=bearer(idp.token())).status_code == 200
    metrics = client.get("/metrics").text
    assert 'oidc_jwks_fetches_total{outcome="fetched"} 1.0' in metrics
    assert 'oidc_jwks_fetches_total{outcome="failed"} 1.0' in metrics
