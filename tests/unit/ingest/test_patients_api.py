"""The admin patients API and consent enforcement, with Kafka replaced by a loopback.

The loopback hands every produced enrollment straight to the follower, as Kafka would
deliver it; the real topic round trip is in tests/integration/test_enrollment.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import httpx
import pytest
from aiokafka import TopicPartition
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ingest.app import create_app
from ingest.auth import hash_key
from ingest.deps import get_gateway
from ingest.enrollment import EnrollmentBook, EnrollmentFollower, EnrollmentService
from ingest.erasure import Eraser
from ingest.settings import IngestSettings
from pghd.access import hash_token
from pghd.commands import patients as patients_command
from pghd.erasure import ErasureMarker, is_marker, stage_event
from pghd.service.producer import KafkaUnavailable, Record
from pghd.topics import ENROLLMENTS
from tests.clock import ANCHOR as NOW
from tests.unit.audit_sink import RecordingAuditSink
from tests.unit.ingest.conftest import API_KEY, SOURCE, RecordingGateway, reading

ADMIN = "admin-token-0123456789"
PROBLEM = "application/problem+json"


class Loopback:
    """A gateway whose records are delivered to the follower at once (or that fails)."""

    def __init__(self, follower: EnrollmentFollower) -> None:
        self.follower = follower
        self.sent: list[Record] = []
        self.failure: Exception | None = None

    async def send_batch(self, records: Sequence[Record]) -> None:
        if self.failure is not None:
            raise self.failure
        for key, value in records:
            self.sent.append((key, value))
            record = SimpleNamespace(key=key, value=value, offset=len(self.sent) - 1)
            self.follower.apply(TopicPartition(ENROLLMENTS, 0), record)

    async def ready(self) -> bool:
        return True


@pytest.fixture
def book() -> EnrollmentBook:
    return EnrollmentBook()


@pytest.fixture
def loopback(book: EnrollmentBook) -> Loopback:
    return Loopback(EnrollmentFollower(bootstrap="127.0.0.1:1", book=book))


@pytest.fixture
def audit() -> RecordingAuditSink:
    return RecordingAuditSink()


@pytest.fixture
def client(
    book: EnrollmentBook, loopback: Loopback, gateway: RecordingGateway, audit: RecordingAuditSink
) -> Iterator[TestClient]:
    settings = IngestSettings(
        api_keys={SOURCE: hash_key(API_KEY)},
        admin_tokens={"ops": hash_key(ADMIN)},
        kafka_bootstrap="127.0.0.1:1",
        retry_after_s=7,
    )
    app = create_app(settings)
    app.state.enrollment_book = app.state.registry = book
    app.state.audit_sink = audit
    app.state.enrollments = EnrollmentService(
        book=book, follower=loopback.follower, gateway=loopback
    )
    app.dependency_overrides[get_gateway] = lambda: gateway
    book.ready = True
    yield TestClient(app, headers={"X-API-Key": API_KEY, "Authorization": f"Bearer {ADMIN}"})


_ACME = {"source": SOURCE, "account": "w1"}


def _refusal(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    return str(body["errors"][0]["detail"])


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Bearer {API_KEY}"])
def test_admin_api_needs_an_admin_token_not_an_api_key(
    client: TestClient, auth: str | None, loopback: Loopback
) -> None:
    headers = {"Authorization": auth} if auth else {}
    if auth is None:
        client.headers.pop("Authorization")
    response = client.post("/v1/patients", json={"patient_id": "p1"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert loopback.sent == []


def test_enroll_with_consent_then_readings_are_accepted_or_refused_by_metric(
    client: TestClient, gateway: RecordingGateway
) -> None:
    body = {
        "patient_id": "p1",
        "consents": ["heart_rate"],
        "links": [{"source": "acme", "account": "w1"}],
    }
    created = client.post("/v1/patients", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/v1/patients/p1"
    doc = created.json()
    assert doc["status"] == "enrolled" and doc["revision"] == 1
    assert doc["change"]["action"] == "enroll" and doc["change"]["by"] == "ops"
    assert list(doc["consents"]) == ["heart_rate"] and doc["links"][0]["account"] == "w1"

    assert client.post("/v1/measurements", json=reading(patient_id="p1")).status_code == 202
    refused = client.post(
        "/v1/measurements", json=reading(patient_id="p1", metric="spo2", value=97, unit="%")
    )
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert _refusal(refused) == "patient p1 has not consented to spo2"
    unknown = client.post("/v1/measurements", json=reading(patient_id="nobody"))
    assert _refusal(unknown) == f"patient nobody is not enrolled with source {SOURCE}"
    assert len(gateway.records) == 1

    batch = [reading(patient_id="p1"), reading(patient_id="nobody")]
    mixed = client.post("/v1/measurements", json=batch)
    assert mixed.status_code == 202
    items = mixed.json()["items"]
    assert [i["status"] for i in items] == ["accepted", "rejected"]
    assert items[1]["errors"][0]["detail"] == f"patient nobody is not enrolled with source {SOURCE}"


def test_enrolling_twice_is_409(client: TestClient) -> None:
    assert client.post("/v1/patients", json={"patient_id": "p1"}).status_code == 201
    again = client.post("/v1/patients", json={"patient_id": "p1"})
    assert again.status_code == 409 and again.json()["detail"] == "patient p1 is already enrolled"


def test_a_source_writes_only_for_patients_linked_to_it(client: TestClient) -> None:
    other = {"source": "other-vendor", "account": "band-9"}
    body = {"patient_id": "p1", "consents": ["heart_rate"], "links": [other]}
    assert client.post("/v1/patients", json=body).status_code == 201
    refused = client.post("/v1/measurements", json=reading(patient_id="p1"))
    assert _refusal(refused) == f"patient p1 is not enrolled with source {SOURCE}"

    batch = [reading(patient_id="p1"), reading(patient_id="p2")]
    body = {"patient_id": "p2", "consents": ["heart_rate"], "links": [_ACME]}
    assert client.post("/v1/patients", json=body).status_code == 201
    items = client.post("/v1/measurements", json=batch).json()["items"]
    assert [i["status"] for i in items] == ["rejected", "accepted"]

    watch = {"source": SOURCE, "account": "w2"}
    assert client.post("/v1/patients/p1/links", json=watch).status_code == 200
    assert client.post("/v1/measurements", json=reading(patient_id="p1")).status_code == 202
    assert client.delete(f"/v1/patients/p1/links/{SOURCE}/w2").status_code == 200
    refused_again = client.post("/v1/measurements", json=reading(patient_id="p1"))
    assert _refusal(refused_again) == f"patient p1 is not enrolled with source {SOURCE}"


def test_revoke_refuses_from_then_on_and_grant_restores(
    client: TestClient, loopback: Loopback
) -> None:
    body = {"patient_id": "p1", "consents": ["heart_rate"], "links": [_ACME]}
    client.post("/v1/patients", json=body)
    revoked = client.delete("/v1/patients/p1/consents/heart_rate")
    assert revoked.status_code == 200 and revoked.json()["consents"]["heart_rate"]["revoked_at"]
    refused = client.post("/v1/measurements", json=reading(patient_id="p1"))
    assert _refusal(refused).startswith("patient p1 revoked consent to heart_rate at ")
    sent = len(loopback.sent)
    assert client.delete("/v1/patients/p1/consents/heart_rate").status_code == 200
    assert len(loopback.sent) == sent, "a change that changes nothing is not produced"
    assert client.put("/v1/patients/p1/consents/heart_rate").status_code == 200
    assert client.post("/v1/measurements", json=reading(patient_id="p1")).status_code == 202
    missing = client.delete("/v1/patients/p1/consents/spo2")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "patient p1 has not consented to spo2"
    assert client.put("/v1/patients/p1/consents/nonsense").status_code == 422


def test_links_conflict_unlink_and_withdraw(client: TestClient) -> None:
    client.post("/v1/patients", json={"patient_id": "p1"})
    client.post("/v1/patients", json={"patient_id": "p2"})
    link = {"source": "acme", "account": "watch-7"}
    assert client.post("/v1/patients/p1/links", json=link).status_code == 200
    taken = client.post("/v1/patients/p2/links", json=link)
    assert taken.status_code == 409
    assert taken.json()["detail"] == "acme account 'watch-7' is already linked to another patient"
    assert client.delete("/v1/patients/p2/links/acme/watch-7").status_code == 404
    assert client.delete("/v1/patients/p1/links/acme/watch-7").json()["links"] == []
    assert client.post("/v1/patients/p2/links", json=link).status_code == 200
    withdrawn = client.post("/v1/patients/p2/withdraw")
    assert withdrawn.json()["status"] == "withdrawn" and withdrawn.json()["links"] == []
    assert client.post("/v1/patients/p1/links", json=link).status_code == 200
    assert client.post("/v1/patients/nobody/withdraw").status_code == 404


def test_enroll_with_teams_then_assign_and_unassign(client: TestClient, loopback: Loopback) -> None:
    body = {"patient_id": "p1", "teams": ["renal", "cardiology", "renal"]}
    created = client.post("/v1/patients", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["teams"] == ["cardiology", "renal"]
    assert created.json()["revision"] == 1, "enroll and its teams are one change"
    assigned = client.put("/v1/patients/p1/teams/oncology")
    assert assigned.status_code == 200
    assert assigned.json()["teams"] == ["cardiology", "oncology", "renal"]
    assert assigned.json()["change"]["action"] == "assign"
    sent = len(loopback.sent)
    assert client.put("/v1/patients/p1/teams/oncology").status_code == 200
    assert len(loopback.sent) == sent, "a change that changes nothing is not produced"
    unassigned = client.delete("/v1/patients/p1/teams/renal")
    assert unassigned.status_code == 200
    assert unassigned.json()["teams"] == ["cardiology", "oncology"]
    assert client.get("/v1/patients/p1").json()["teams"] == ["cardiology", "oncology"]


def test_unassigning_a_team_not_held_is_404_and_teams_outlive_withdrawal(
    client: TestClient,
) -> None:
    client.post("/v1/patients", json={"patient_id": "p1", "teams": ["renal"]})
    missing = client.delete("/v1/patients/p1/teams/cardiology")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["detail"] == "patient p1 is not in team cardiology"
    assert client.put("/v1/patients/nobody/teams/renal").status_code == 404
    assert client.put("/v1/patients/p1/teams/bad%20team").status_code == 422
    withdrawn = client.post("/v1/patients/p1/withdraw").json()
    assert withdrawn["teams"] == ["renal"]
    refused = client.put("/v1/patients/p1/teams/cardiology")
    assert refused.status_code == 409 and "not enrolled" in refused.json()["detail"]
    assert client.delete("/v1/patients/p1/teams/renal").json()["teams"] == []


def test_cli_enrolls_assigns_unassigns_and_shows_teams(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def through_app(request: httpx.Request) -> httpx.Response:
        """The CLI's request, answered by the app (with the fixture's admin token)."""
        path = request.url.raw_path.decode()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        return client.request(request.method, path, content=request.content, headers=headers)

    def app_client(url: str, token: str) -> httpx.Client:
        return httpx.Client(base_url=url, transport=httpx.MockTransport(through_app))

    monkeypatch.setattr(patients_command, "_client", app_client)

    def pghd_patients(*args: str) -> str:
        result = CliRunner().invoke(patients_command.app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    shown = pghd_patients("enroll", "p1", "--team", "renal", "--team", "cardiology")
    assert "teams     cardiology,renal" in shown
    assert pghd_patients("assign", "p1", "oncology") == "patient p1 assigned to team oncology\n"
    assert "unassigned from team renal" in pghd_patients("unassign", "p1", "renal")
    assert "teams     cardiology,oncology" in pghd_patients("show", "p1")
    pghd_patients("enroll", "p2")
    assert "teams     none (only admins see the patient)" in pghd_patients("show", "p2")
    listed = pghd_patients("list").splitlines()
    assert listed[0].split() == ["patient", "status", "consents", "links", "teams", "updated"]
    assert listed[1].split()[-3:-1] == ["0", "cardiology,oncology"]  # links, teams
    assert listed[2].split()[-3:-1] == ["0", "-"]
    refused = CliRunner().invoke(patients_command.app, ["unassign", "p1", "renal"])
    assert refused.exit_code == 1 and "HTTP 404: patient p1 is not in team renal" in refused.output


def test_get_and_list(client: TestClient) -> None:
    for pid in ("p2", "p1", "p3"):
        client.post("/v1/patients", json={"patient_id": pid})
    client.post("/v1/patients/p3/withdraw")
    assert client.get("/v1/patients/p1").json()["patient_id"] == "p1"
    missing = client.get("/v1/patients/p9")
    assert missing.status_code == 404 and missing.json()["detail"] == "patient p9 is not enrolled"
    page = client.get("/v1/patients", params={"limit": 2}).json()
    assert page["total"] == 3 and [e["patient_id"] for e in page["items"]] == ["p1", "p2"]
    enrolled = client.get("/v1/patients", params={"status": "enrolled"}).json()
    assert enrolled["total"] == 2


def test_while_the_registry_loads_readings_and_reads_are_503(
    client: TestClient, book: EnrollmentBook, gateway: RecordingGateway
) -> None:
    book.ready = False
    for response in (
        client.post("/v1/measurements", json=reading(patient_id="p1")),
        client.get("/v1/patients/p1"),
        client.get("/v1/patients"),
        client.post("/v1/patients", json={"patient_id": "p1"}),
        client.get("/readyz"),
    ):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "7"
        assert response.json()["detail"].startswith("the enrollment registry is still loading")
    assert gateway.calls == 0


def test_kafka_down_write_is_503(client: TestClient, loopback: Loopback) -> None:
    loopback.failure = KafkaUnavailable("not connected to Kafka")
    response = client.post("/v1/patients", json={"patient_id": "p1"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "7"
    assert client.get("/v1/patients/p1").status_code == 404


def test_openapi_documents_the_patients_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"post", "get"} <= set(spec["paths"]["/v1/patients"])
    assert "delete" in spec["paths"]["/v1/patients/{patient_id}/consents/{metric}"]
    teams = spec["paths"]["/v1/patients/{patient_id}/teams/{team}"]
    assert {"put", "delete"} <= set(teams) and "404" in teams["delete"]["responses"]
    assert "409" in spec["paths"]["/v1/patients/{patient_id}/links"]["post"]["responses"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_settings_admin_tokens_are_digests_and_consent_is_enforced_by_default() -> None:
    settings = IngestSettings(admin_tokens={"ops": hash_key(ADMIN).upper()})
    assert settings.admin_tokens == {"ops": hash_key(ADMIN)}
    assert settings.consent == "enforce"
    assert IngestSettings().admin_tokens == {}, "no default admin token"
    with pytest.raises(ValueError, match="SHA-256 hex digest"):
        IngestSettings(admin_tokens={"ops": ADMIN})
    with pytest.raises(ValueError):
        IngestSettings(consent="maybe")  # type: ignore[arg-type]


def test_consent_off_allows_anyone_and_says_so_loudly(
    caplog: pytest.LogCaptureFixture, gateway: RecordingGateway
) -> None:
    with caplog.at_level("WARNING", logger="ingest.app"):
        app = create_app(IngestSettings(api_keys={SOURCE: hash_key(API_KEY)}, consent="off"))
    assert "CONSENT IS OFF" in caplog.text
    app.dependency_overrides[get_gateway] = lambda: gateway
    response = TestClient(app).post(
        "/v1/measurements", json=reading(patient_id="anyone"), headers={"X-API-Key": API_KEY}
    )
    assert response.status_code == 202
    enforced = create_app(IngestSettings(api_keys={SOURCE: hash_key(API_KEY)}))
    assert isinstance(enforced.state.registry, EnrollmentBook)


def test_every_patients_api_request_is_audited(
    client: TestClient, audit: RecordingAuditSink
) -> None:
    client.post("/v1/patients", json={"patient_id": "p1", "consents": ["heart_rate"]})
    client.get("/v1/patients/p1")
    client.get("/v1/patients")
    client.get("/v1/patients/p9")  # unknown: refused, recorded
    client.get("/v1/patients", headers={"Authorization": "Bearer wrong"})
    enroll, read, listing, unknown, anonymous = audit.events
    assert (enroll.service, enroll.action, enroll.patients, enroll.status) == (
        "ingest",
        "create",
        ["p1"],
        201,
    )
    assert (read.agent.name, read.agent.role, read.operation, read.patients) == (
        "ops",
        "admin",
        "GET /v1/patients/{patient_id}",
        ["p1"],
    )
    assert listing.patients == ["p1"]
    assert (unknown.outcome, unknown.patients) == ("denied", ["p9"])
    assert (anonymous.agent.name, anonymous.status) == ("anonymous", 401)
    client.post("/v1/measurements", json=reading(patient_id="p1"))
    assert len(audit.events) == 5, "device writes are not patient-data reads by people"


def test_no_patients_api_answer_without_its_audit_event(
    client: TestClient, audit: RecordingAuditSink
) -> None:
    audit.failure = ConnectionError("kafka down")
    response = client.get("/v1/patients")
    assert response.status_code == 503
    assert response.json()["type"] == "urn:pghd:problem:audit-unavailable"


class _Reports:
    """The audit topic as the eraser reads it: the stages' events it is given."""

    def __init__(self, order: list[str], stages: Sequence[str]) -> None:
        self.order = order
        self.stages = stages

    async def positions(self) -> dict[int, int]:
        self.order.append("positions")
        return {0: 0}

    async def collect(self, request_id: str, since: dict[int, int], *, wait_s: float) -> list:  # type: ignore[type-arg]
        marker = ErasureMarker(
            erasure_id=request_id, patient_id="p1", requested_at=NOW, requested_by="ops"
        )
        return [
            stage_event(marker, stage=s, resource=s, removed={"n": 1}, recorded=NOW)
            for s in self.stages
        ]


class _Ordered(RecordingGateway):
    def __init__(self, name: str, order: list[str]) -> None:
        super().__init__()
        self.name, self.order = name, order

    async def send_batch(self, records: Sequence[Record]) -> None:
        self.order.append(self.name)
        await super().send_batch(records)


@pytest.mark.parametrize(
    ("stages", "status"),
    [(("processors", "store", "alerts"), 200), (("processors",), 202)],
)
def test_erase_tombstones_first_then_sends_the_marker_and_answers_the_report(
    client: TestClient, loopback: Loopback, stages: tuple[str, ...], status: int
) -> None:
    assert client.post("/v1/patients", json={"patient_id": "p1"}).status_code == 201
    order: list[str] = []
    plans, readings = _Ordered("care-plans", order), _Ordered("measurements", order)
    app = client.app
    app.state.eraser = Eraser(  # type: ignore[attr-defined]
        enrollments=app.state.enrollments,  # type: ignore[attr-defined]
        care_plans=plans,
        measurements=readings,
        reports=_Reports(order, stages),  # type: ignore[arg-type]
        settle_s=0,
    )
    response = client.post("/v1/patients/p1/erase", params={"wait": 1})
    assert response.status_code == status, response.text
    report = response.json()
    assert report["removed"]["ingest"] == {"enrollments": 1, "care_plan_tombstones": 1}
    assert report["pending"] == [s for s in ("processors", "store", "alerts") if s not in stages]
    assert loopback.sent[-1] == (b"p1", None)  # the enrollment's tombstone
    assert plans.records == [(b"p1", None)]
    ((key, marker),) = readings.records
    assert key == b"p1" and is_marker(marker)
    assert order == ["care-plans", "positions", "measurements"]
    assert client.get("/v1/patients/p1").status_code == 404
    refused = client.post("/v1/measurements", json=reading(patient_id="p1"))
    assert refused.status_code == 422
    again = client.post("/v1/patients/p1/erase", params={"wait": 1}).json()
    assert again["removed"]["ingest"]["enrollments"] == 0


def test_erase_needs_an_admin(client: TestClient) -> None:
    response = client.post("/v1/patients/p1/erase", headers={"Authorization": "Bearer no"})
    assert response.status_code == 401


def test_a_patient_token_is_issued_once_rotated_and_revoked(
    client: TestClient, audit: RecordingAuditSink, loopback: Loopback
) -> None:
    assert client.post("/v1/patients", json={"patient_id": "p1"}).status_code == 201
    issued = client.post("/v1/patients/p1/token")
    assert issued.status_code == 201, issued.text
    assert issued.headers["Cache-Control"] == "no-store"
    first = issued.json()
    assert first["patient_id"] == "p1" and first["token"].startswith("pghd_pt_")
    held = client.get("/v1/patients/p1").json()["patient_tokens"]
    assert held == [{"sha256": hash_token(first["token"]), "issued_at": first["issued_at"]}]
    assert all(first["token"].encode() not in value for _, value in loopback.sent if value)
    assert "Cache-Control" not in client.get("/v1/patients/p1").headers

    second = client.post("/v1/patients/p1/token").json()
    assert second["token"] != first["token"] and second["revision"] == first["revision"] + 1
    rotated = client.get("/v1/patients/p1").json()["patient_tokens"]
    assert [t["sha256"] for t in rotated] == [hash_token(second["token"])]

    revoked = client.delete("/v1/patients/p1/token")
    assert revoked.status_code == 200 and revoked.json()["patient_tokens"] == []
    again = client.delete("/v1/patients/p1/token")
    assert again.status_code == 404 and "holds no patient token" in again.json()["detail"]
    unknown = client.post("/v1/patients/p9/token")
    assert unknown.status_code == 404
    token_events = [e for e in audit.events if e.operation.endswith("/token")]
    assert [(e.operation, e.patients, e.status) for e in token_events] == [
        ("POST /v1/patients/{patient_id}/token", ["p1"], 201),
        ("POST /v1/patients/{patient_id}/token", ["p1"], 201),
        ("DELETE /v1/patients/{patient_id}/token", ["p1"], 200),
        ("DELETE /v1/patients/{patient_id}/token", ["p1"], 404),
        ("POST /v1/patients/{patient_id}/token", ["p9"], 404),
    ]


def test_enrolling_may_issue_the_token_and_withdrawal_keeps_it(client: TestClient) -> None:
    plain = client.post("/v1/patients", json={"patient_id": "p1"})
    assert plain.json()["token"] is None and "Cache-Control" not in plain.headers
    enrolled = client.post("/v1/patients", json={"patient_id": "p2", "issue_token": True})
    assert enrolled.status_code == 201 and enrolled.headers["Cache-Control"] == "no-store"
    token = enrolled.json()["token"]
    assert [t["sha256"] for t in enrolled.json()["patient_tokens"]] == [hash_token(token)]
    assert enrolled.json()["revision"] == 1, "enrolled with its token in one change"
    withdrawn = client.post("/v1/patients/p2/withdraw").json()
    assert [t["sha256"] for t in withdrawn["patient_tokens"]] == [hash_token(token)]
    assert client.post("/v1/patients/p2/token").status_code == 201


def test_cli_prints_a_new_token_alone_and_revokes_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def through_app(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        return client.request(request.method, path, content=request.content, headers=headers)

    def app_client(url: str, token: str) -> httpx.Client:
        return httpx.Client(base_url=url, transport=httpx.MockTransport(through_app))

    monkeypatch.setattr(patients_command, "_client", app_client)
    runner = CliRunner()
    enrolled = runner.invoke(patients_command.app, ["enroll", "p1", "--issue-token"])
    assert enrolled.exit_code == 0, enrolled.output
    assert "patient token (shown once): pghd_pt_" in enrolled.output
    issued = runner.invoke(patients_command.app, ["token", "p1"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    held = client.get("/v1/patients/p1").json()["patient_tokens"]
    assert [t["sha256"] for t in held] == [hash_token(token)]
    shown = runner.invoke(patients_command.app, ["show", "p1"]).output
    assert f"token     issued {held[0]['issued_at']}" in shown
    revoked = runner.invoke(patients_command.app, ["token", "p1", "--revoke"])
    assert revoked.exit_code == 0 and "p1's token revoked" in revoked.output
    assert "token     none" in runner.invoke(patients_command.app, ["show", "p1"]).output
