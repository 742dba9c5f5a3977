"""Who may see and do what in the care-team API: roles, teams, the silence limit, and a
users file that changes under a running app.

Every route that needs a token is found in the app's own OpenAPI document, so a route
added later is checked too: a clinician of another team gets 403 on it, whatever it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.access import CredentialBook, Permission, Principal, Role, UserEntry, hash_token
from pghd.alert_commands import Silence
from pghd.care_plans import CarePlan, CarePlanSettings
from tests.unit.alerts.api.conftest import RecordingProducer, build, make_alert
from tests.unit.alerts.api.fhir_store import ListStore

OURS, THEIRS, NOBODYS = "patient-ward-a", "patient-ward-b", "patient-no-team"
USERS = {
    "viewer-a": ("viewer", ["ward-a"]),
    "nurse-a": ("clinician", ["ward-a"]),
    "nurse-b": ("clinician", ["ward-b"]),
    "chief": ("admin", []),
}


def token(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}-token"}


def write_users(path: Path, users: dict[str, tuple[str, list[str]]], **extra: Any) -> None:
    doc = {
        "schema_version": 1,
        "users": {
            name: {"role": role, "teams": teams, "token_sha256": [hash_token(f"{name}-token")]}
            | extra.get(name, {})
            for name, (role, teams) in users.items()
        },
    }
    path.write_text(json.dumps(doc))


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    write_users(path, USERS)
    return path


@pytest.fixture
def model() -> ReadModel:
    model = ReadModel(ready=True)
    model.patient_teams = {OURS: frozenset({"ward-a"}), THEIRS: frozenset({"ward-b", "cardio"})}
    model.load_alerts(
        [make_alert(patient_id=p, alert_id=f"al-{p}") for p in (OURS, THEIRS, NOBODYS)]
    )
    now = datetime.now(UTC)
    for patient in (OURS, THEIRS):
        model.silences.add(
            Silence(
                silence_id=f"si-{patient}",
                matchers={"patient_id": patient},
                starts_at=now,
                ends_at=now + timedelta(hours=2),
                created_by="someone",
            )
        )
        plan = CarePlanSettings.model_validate({"spo2_scale": 2})
        model.care_plans[patient] = CarePlan.of(
            plan, patient_id=patient, updated_at=now, updated_by="someone"
        )
    return model


@pytest.fixture
def producer() -> RecordingProducer:
    return RecordingProducer()


@pytest.fixture
def client(users_file: Path, model: ReadModel, producer: RecordingProducer) -> Iterator[TestClient]:
    settings = CareApiSettings(
        users_file=users_file, users_recheck_s=0.001, kafka_bootstrap="127.0.0.1:1"
    )
    app = build(settings, producer, model)

    class Publisher:
        async def publish(self, *, topic: str, key: bytes, value: bytes | None) -> None:
            return None

    from alerts.api.deps import get_publisher

    app.dependency_overrides[get_publisher] = Publisher
    app.state.fhir_store = ListStore()  # the FHIR read API's readings: none stored
    yield TestClient(app)


def _body(method: str, path: str, patient: str) -> dict[str, Any] | None:
    if path.endswith("/resolve"):
        return {"reason": "handled on the ward"}
    if path == "/v1/silences" and method == "POST":
        ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        return {"patient_id": patient, "ends_at": ends, "comment": "night"}
    if path.endswith("/care-plan") and method == "PUT":
        return {"spo2_scale": 2}
    return None


def _query(operation: dict[str, Any], patient: str) -> str:
    """A search route's query naming ``patient`` (the FHIR read API's ``?patient=``)."""
    names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    return f"?patient={patient}" if "patient" in names else ""


def _requests(client: TestClient, patient: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route of the OpenAPI document that takes a token, about ``patient`` (in its
    path, or in its query for a search that names the patient there)."""
    spec = client.get("/openapi.json").json()
    found = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "401" not in operation.get("responses", {}):
                continue  # health and metrics: no token, no patient data
            path = (
                template.replace("{alert_id}", f"al-{patient}")
                .replace("{patient_id}", patient)
                .replace("{silence_id}", f"si-{patient}")
            )
            assert "{" not in path, f"a path parameter this test does not know: {template}"
            path += _query(operation, patient)
            found.append((method.upper(), path, _body(method.upper(), template, patient)))
    return found


def _error_type(path: str) -> str:
    """What an error of ``path`` is: an OperationOutcome on the FHIR read API."""
    return "application/fhir+json" if path.startswith("/fhir/") else "application/problem+json"


def _is_list(path: str) -> bool:
    return path in ("/v1/alerts", "/v1/silences")


def _patients_own(path: str) -> bool:
    """A route for a patient's own token only: every care-team member gets 403 there."""
    return path.startswith("/v1/me")


def test_another_teams_clinician_gets_403_on_every_patient_route(client: TestClient) -> None:
    requests = _requests(client, THEIRS)
    assert len(requests) >= 11, requests
    assert ("GET", f"/fhir/Observation?patient={THEIRS}", None) in requests
    for method, path, body in requests:
        if _is_list(path) and method == "GET":
            continue
        response = client.request(method, path, json=body, headers=token("nurse-a"))
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"] == _error_type(path)
    for method, path, body in requests:
        if path == "/v1/audit" or _patients_own(path):
            continue  # admins only (test_only_admins_read_the_audit_trail); patients only
        response = client.request(method, path, json=body, headers=token("nurse-b"))
        assert response.status_code < 300, (method, path, response.text)


def test_a_search_that_names_no_patient_reads_nobody(client: TestClient) -> None:
    """The routes that take the patient in the query (the FHIR searches) refuse a search
    without one (400), whoever asks, rather than answer about every patient."""
    searches = [path for _, path, _ in _requests(client, THEIRS) if "?patient=" in path]
    assert searches, "no search route found"
    for path in searches:
        bare = path.split("?", 1)[0]
        for user in ("nurse-a", "chief"):
            response = client.get(bare, headers=token(user))
            assert response.status_code == 400, (bare, user, response.text)


def test_lists_show_only_the_callers_patients(client: TestClient) -> None:
    def patients(user: str, path: str) -> set[str]:
        items = client.get(path, headers=token(user)).json()["items"]
        return {i.get("patient_id") or i["matchers"]["patient_id"] for i in items}

    assert patients("nurse-a", "/v1/alerts") == {OURS}
    assert patients("viewer-a", "/v1/alerts") == {OURS}
    assert patients("nurse-b", "/v1/alerts") == {THEIRS}
    assert patients("chief", "/v1/alerts") == {OURS, THEIRS, NOBODYS}
    assert patients("nurse-a", "/v1/silences") == {OURS}
    assert patients("nurse-a", f"/v1/alerts?patient_id={THEIRS}") == set()


def test_a_viewer_reads_but_cannot_act(client: TestClient, producer: RecordingProducer) -> None:
    for method, path, body in _requests(client, OURS):
        response = client.request(method, path, json=body, headers=token("viewer-a"))
        if method == "GET" and path != "/v1/audit" and not _patients_own(path):
            assert response.status_code == 200, (path, response.text)
        else:
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["type"] == "urn:pghd:problem:forbidden-role"
    assert producer.sent == []


def test_a_patient_in_no_team_is_seen_by_admins_only(client: TestClient) -> None:
    path = f"/v1/alerts/al-{NOBODYS}"
    assert client.get(path, headers=token("nurse-a")).status_code == 403
    assert client.get(path, headers=token("chief")).status_code == 200


def test_unknown_and_foreign_ids_get_the_same_answer_naming_nobody(client: TestClient) -> None:
    """Fingerprints can be computed from a patient id and a problem: 403 for another team's
    alert but 404 for none would tell a viewer which patients have which alerts."""
    foreign = client.get(f"/v1/alerts/al-{THEIRS}", headers=token("viewer-a"))
    unknown = client.get("/v1/alerts/no-such-alert", headers=token("viewer-a"))
    assert (foreign.status_code, unknown.status_code) == (403, 403)
    assert foreign.json() == unknown.json()
    assert THEIRS not in foreign.text
    silence = client.delete("/v1/silences/no-such-silence", headers=token("nurse-a"))
    assert silence.status_code == 403
    assert client.get("/v1/alerts/no-such-alert", headers=token("chief")).status_code == 404


def test_a_silence_longer_than_the_policy_is_refused(
    client: TestClient, producer: RecordingProducer
) -> None:
    now = datetime.now(UTC)
    body = {"patient_id": OURS, "starts_at": now.isoformat()}
    too_long = {**body, "ends_at": (now + timedelta(days=7, seconds=1)).isoformat()}
    refused = client.post("/v1/silences", json=too_long, headers=token("nurse-a"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == "urn:pghd:problem:silence-too-long"
    assert "at most 7 d" in refused.json()["detail"]
    assert producer.sent == []
    week = {**body, "ends_at": (now + timedelta(days=7)).isoformat()}
    assert client.post("/v1/silences", json=week, headers=token("nurse-a")).status_code == 202
    # no chain of future silences: the next week's may not be set now
    later = now + timedelta(days=7)
    chained = {
        "patient_id": OURS,
        "starts_at": later.isoformat(),
        "ends_at": (later + timedelta(days=1)).isoformat(),
    }
    refused_chain = client.post("/v1/silences", json=chained, headers=token("nurse-a"))
    assert refused_chain.status_code == 422, refused_chain.text


def test_not_ready_is_503_not_403(client: TestClient, model: ReadModel) -> None:
    model.ready = False
    response = client.get(f"/v1/patients/{OURS}/care-plan", headers=token("nurse-a"))
    assert response.status_code == 503 and response.headers["Retry-After"]


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_tokens_are_rotated_and_revoked_without_a_restart(
    client: TestClient, users_file: Path
) -> None:
    assert client.get("/v1/alerts", headers=token("nurse-a")).status_code == 200
    # rotation: nurse-a holds the old and the new token for a while, then only the new one
    rotated = {"nurse-a": {"token_sha256": [hash_token("new-token"), hash_token("nurse-a-token")]}}
    write_users(users_file, USERS, **rotated)
    _touch_later(users_file)
    new = {"Authorization": "Bearer new-token"}
    assert client.get("/v1/alerts", headers=new).status_code == 200
    assert client.get("/v1/alerts", headers=token("nurse-a")).status_code == 200
    write_users(users_file, USERS, **{"nurse-a": {"token_sha256": [hash_token("new-token")]}})
    _touch_later(users_file)
    assert client.get("/v1/alerts", headers=token("nurse-a")).status_code == 401
    assert client.get("/v1/alerts", headers=new).status_code == 200
    # revocation: a disabled user is refused whatever token they hold
    write_users(users_file, USERS, **{"nurse-b": {"disabled": True}})
    _touch_later(users_file)
    assert client.get("/v1/alerts", headers=token("nurse-b")).status_code == 401


def test_a_broken_users_file_keeps_the_users_in_force(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_users(path, USERS)
    outcomes: list[str] = []
    now = [0.0]
    book = CredentialBook(path, recheck_s=1.0, clock=lambda: now[0], on_reload=outcomes.append)
    assert (who := book.identify("nurse-a-token")) is not None and who.role is Role.CLINICIAN
    path.write_text('{"schema_version": 1, "users": {"nurse-a": {"role": "boss"')
    _touch_later(path)
    assert book.identify("nurse-a-token") is not None, "checked again only after recheck_s"
    now[0] = 2.0
    assert book.identify("nurse-a-token") is not None
    assert outcomes == ["refused"]
    write_users(path, {"nurse-a": ("viewer", ["ward-a"])})
    _touch_later(path)
    now[0] = 4.0
    assert (who := book.identify("nurse-a-token")) is not None and who.role is Role.VIEWER
    assert book.identify("chief-token") is None
    assert outcomes == ["refused", "reloaded"]


def test_a_users_file_that_does_not_parse_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"users": {"x": {"role": "viewer", "token_sha256": ["not-a-digest"]}}}')
    with pytest.raises(ValueError, match="token_sha256"):
        CredentialBook(path)


class OnePatientToken:
    """Stands in for the enrollments' patient tokens: ``OURS`` holds ``ours-patient-token``."""

    def identify(self, token: str | None) -> Principal | None:
        return Principal.for_patient(OURS) if token == "ours-patient-token" else None


def test_a_patient_token_reaches_no_care_team_route(
    client: TestClient, producer: RecordingProducer
) -> None:
    """A patient reads their own data under /v1/me and /fhir; every care-team route, even
    about their own alerts, answers 403 (the routes care teams use are found in the OpenAPI
    document, so a route added later is checked too)."""
    client.app.state.patient_tokens = OnePatientToken()  # type: ignore[attr-defined]
    patient = {"Authorization": "Bearer ours-patient-token"}
    checked = 0
    for method, path, body in _requests(client, OURS):
        if path.startswith(("/v1/me", "/fhir")):
            continue
        response = client.request(method, path, json=body, headers=patient)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["type"] == "urn:pghd:problem:forbidden-role"
        checked += 1
    assert checked >= 9
    assert producer.sent == []
    unknown = client.get("/v1/alerts", headers={"Authorization": "Bearer not-a-patient-token"})
    assert unknown.status_code == 401


def test_check_patient_lets_a_patient_reach_only_themselves(model: ReadModel) -> None:
    from alerts.api.deps import check_patient
    from pghd.problems import ProblemError

    settings = CareApiSettings(kafka_bootstrap="127.0.0.1:1")
    check_patient(Principal.for_patient(OURS), OURS, model=model, settings=settings)
    with pytest.raises(ProblemError) as refused:
        check_patient(Principal.for_patient(OURS), THEIRS, model=model, settings=settings)
    assert refused.value.status == 403
    assert THEIRS not in str(refused.value.detail)


def test_patients_are_not_users_of_the_users_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="issue a patient token"):
        UserEntry.model_validate({"role": "patient", "token_sha256": [hash_token("x")]})
    with pytest.raises(ValueError, match="patient_id"):
        Principal("someone", Role.PATIENT)
    with pytest.raises(ValueError, match="patient_id"):
        Principal("nurse", Role.CLINICIAN, patient_id=OURS)
    assert not Principal.for_patient(OURS).may(Permission.READ)
    assert not Principal("chief", Role.ADMIN).may(Permission.SELF)


def test_no_patient_token_is_taken_while_the_enrollments_are_replayed(
    users_file: Path, producer: RecordingProducer
) -> None:
    """The enrollments topic is read from its start: a token issued before a later rotation,
    revocation or erasure is in the book until that record is read, so while the read model
    is not ready every patient token gets 503 (retry), known or not."""
    from alerts.api.patient_tokens import EnrolledPatientTokens
    from pghd.patient_tokens import new_token

    token = new_token()
    model = ReadModel(ready=False)
    model.patient_tokens.put(OURS, [hash_token(token)])  # the issue, its revocation unread
    settings = CareApiSettings(users_file=users_file, kafka_bootstrap="127.0.0.1:1")
    app = build(settings, producer, model)
    app.state.patient_tokens = EnrolledPatientTokens(model, retry_after_s=7)
    client = TestClient(app)
    as_patient = {"Authorization": f"Bearer {token}"}
    for path in ("/v1/me/summary", "/v1/me/readings?metric=heart_rate"):
        answer = client.get(path, headers=as_patient)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.headers["Retry-After"] == "7"
    model.ready = True
    model.patient_tokens.forget(OURS)  # the revocation, read
    assert client.get("/v1/me/summary", headers=as_patient).status_code == 401
