"""The care-team API's FHIR read API (``/fhir``): searches answered as FHIR, scoped and
audited like every other route, failing as OperationOutcomes.

InfluxDB is replaced by a list here (:class:`ListStore`), except where the test is about
InfluxDB not answering: then the real reader talks to a port that never answers.
tests/integration/test_fhir_read.py runs everything on real Kafka and InfluxDB.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from alerts.api.read_model import ReadModel
from alerts.api.routes.fhir import get_now
from alerts.api.settings import CareApiSettings
from pghd.access import Principal, hash_token
from pghd.alerting import AlertState
from pghd.catalogue import Metric
from pghd.export.influx import ExportStoreError
from pghd.export.records import StoredFinding, StoredReading, format_time
from tests.clock import ANCHOR
from tests.unit.alerts.api.conftest import RecordingProducer, build, make_alert
from tests.unit.alerts.api.fhir_store import ListStore
from tests.unit.audit_sink import RecordingAuditSink

FHIR = "application/fhir+json"
OURS, THEIRS = "patient-ward-a", "patient-ward-b"
NOW = ANCHOR + timedelta(hours=8)
USERS = {
    "nurse-a": ("clinician", ["ward-a"]),
    "viewer-a": ("viewer", ["ward-a"]),
    "nurse-b": ("clinician", ["ward-b"]),
    "chief": ("admin", []),
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-token"}


def heart_rate(patient: str, i: int, value: float = 70.0) -> StoredReading:
    return StoredReading(
        patient_id=patient,
        metric=Metric.HEART_RATE,
        time=ANCHOR + timedelta(minutes=5 * i),
        unit="/min",
        values={"heart_rate": value},
        source="acme",
        event_id=f"{patient}-hr-{i}",
        device="watch-1",
    )


SPIKE = heart_rate(OURS, 3, value=165.0)
READINGS = [heart_rate(OURS, i) for i in range(7) if i != 3] + [SPIKE, heart_rate(THEIRS, 1)]
FLAG = StoredFinding(
    patient_id=OURS,
    anomaly_id="a" * 32,
    time=SPIKE.time,
    metric=Metric.HEART_RATE,
    channel="heart_rate",
    detector="deviation",
    severity="critical",
    score=7.0,
    value=165.0,
    unit="/min",
    explanation="Heart rate 165 /min at rest is far above this patient's usual 70 /min.",
)


class OnePatientToken:
    """The enrollments' patient tokens: ``OURS`` holds ``ours-patient-token``."""

    def identify(self, token: str | None) -> Principal | None:
        return Principal.for_patient(OURS) if token == "ours-patient-token" else None


@pytest.fixture
def store() -> ListStore:
    return ListStore(READINGS, [FLAG])


@pytest.fixture
def sink() -> RecordingAuditSink:
    return RecordingAuditSink()


@pytest.fixture
def model() -> ReadModel:
    model = ReadModel(ready=True)
    model.patient_teams = {OURS: frozenset({"ward-a"}), THEIRS: frozenset({"ward-b"})}
    return model


def make_app(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink, **settings: Any
) -> FastAPI:
    users = tmp_path / "users.json"
    users.write_text(
        json.dumps(
            {
                "users": {
                    name: {
                        "role": role,
                        "teams": teams,
                        "token_sha256": [hash_token(f"{name}-token")],
                    }
                    for name, (role, teams) in USERS.items()
                }
            }
        )
    )
    app = build(
        CareApiSettings(
            users_file=users, kafka_bootstrap="127.0.0.1:1", retry_after_s=7, **settings
        ),
        RecordingProducer(),
        model,
        audit=sink,
    )
    app.state.patient_tokens = OnePatientToken()
    app.dependency_overrides[get_now] = lambda: NOW
    return app


@pytest.fixture
def client(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink, store: ListStore
) -> Iterator[TestClient]:
    app = make_app(tmp_path, model, sink)
    app.state.fhir_store = store
    yield TestClient(app)


def outcome(response: Any, status: int, *, by_a_route: bool = True) -> dict[str, Any]:
    """The OperationOutcome ``response`` must be, with ``status``; stored nowhere when the
    read API (its routes, its error handlers) answered it, not the audit middleware."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR
    if by_a_route:
        assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    OperationOutcome.model_validate(body)
    return body


def bundle(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR
    assert response.headers["cache-control"] == "no-store"  # patient data, stored nowhere
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    return body


def links(body: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in body["link"]}


# --- metadata ------------------------------------------------------------------------------


def test_the_capability_statement_is_public_and_not_audited(
    client: TestClient, sink: RecordingAuditSink
) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == FHIR
    assert response.headers["cache-control"] == "no-store"
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["date"] == format_time(NOW)
    assert statement["implementation"]["url"] == "http://testserver/fhir"
    assert sink.events == []


# --- Observation ---------------------------------------------------------------------------


def test_a_search_answers_the_patients_readings_as_vital_signs(client: TestClient) -> None:
    response = client.get(
        "/fhir/Observation",
        params={"patient": OURS, "code": "http://loinc.org|8867-4"},
        headers=bearer("nurse-a"),
    )
    body = bundle(response)
    assert body["timestamp"] == format_time(NOW)
    resources = [e["resource"] for e in body["entry"]]
    assert len(resources) == 7
    assert {r["subject"]["reference"] for r in resources} == {f"Patient/{OURS}"}
    assert [r["effectiveDateTime"] for r in resources] == sorted(
        r["effectiveDateTime"] for r in resources
    )
    assert all(r["meta"]["profile"][1].endswith("/heartrate") for r in resources)
    [flagged] = [r for r in resources if "interpretation" in r]
    assert flagged["valueQuantity"]["value"] == 165.0
    assert flagged["interpretation"][0]["coding"][0]["code"] == "HH"
    assert flagged["interpretation"][0]["text"] == FLAG.explanation
    assert all(e["search"] == {"mode": "match"} for e in body["entry"])
    assert "next" not in links(body)
    self_url = urlsplit(links(body)["self"])
    assert self_url.path == "/fhir/Observation"
    assert parse_qsl(self_url.query) == [
        ("patient", OURS),
        ("code", "http://loinc.org|8867-4"),
        ("_count", "50"),
    ]


def test_paging_through_next_links_serves_every_reading_once(
    client: TestClient, store: ListStore
) -> None:
    url: str | None = f"/fhir/Observation?patient=Patient/{OURS}&_count=3&date=ge2000-01-01"
    seen: list[str] = []
    pages = 0
    while url is not None:
        body = bundle(client.get(url, headers=bearer("viewer-a")))
        seen += [e["resource"]["identifier"][0]["value"] for e in body.get("entry", [])]
        url = links(body).get("next")
        pages += 1
        if url is not None:
            query = dict(parse_qsl(urlsplit(url).query))
            assert (query["patient"], query["_count"], query["date"]) == (
                f"Patient/{OURS}",
                "3",
                "ge2000-01-01",
            )
    assert pages == 3
    assert seen == [f"{OURS}-hr-{i}" for i in range(7)]  # by time, the spike 4th
    assert len(seen) == len(set(seen)) == 7
    assert [s.cursor is not None for s in store.searches] == [False, True, True]


def test_a_search_that_cannot_be_run_is_a_400_operation_outcome(
    client: TestClient, store: ListStore
) -> None:
    missing = outcome(client.get("/fhir/Observation", headers=bearer("chief")), 400)
    assert missing["issue"][0]["code"] == "required"
    assert missing["issue"][0]["expression"] == ["patient"]
    bad_date = client.get(
        "/fhir/Observation", params={"patient": OURS, "date": "sa2026"}, headers=bearer("chief")
    )
    assert outcome(bad_date, 400)["issue"][0]["expression"] == ["date"]
    forged = client.get(
        "/fhir/Observation", params={"patient": OURS, "_cursor": "abc"}, headers=bearer("chief")
    )
    assert outcome(forged, 400)["issue"][0]["expression"] == ["_cursor"]
    assert store.searches == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("date", "9999-12-31"),
        ("date", "9999-12-31T23:59"),
        ("date", "0001-01-01T00:00:00+14:00"),
        ("_cursor", "eyJ2IjoxLCJ0IjoiMDAwMS0wMS0wMVQwMDowMDowMCsxNDowMCJ9"),
    ],
)
def test_dates_outside_the_years_1_to_9999_are_a_400_not_a_500(
    client: TestClient, store: ListStore, name: str, value: str
) -> None:
    """The ranges these stand for leave Python's datetime (once an unhandled OverflowError);
    the cursor is ``{"v":1,"t":"0001-01-01T00:00:00+14:00"}``."""
    response = client.get(
        "/fhir/Observation", params={"patient": OURS, name: value}, headers=bearer("chief")
    )
    assert outcome(response, 400)["issue"][0]["expression"] == [name]
    assert store.searches == []


def test_unknown_parameters_are_ignored_unless_the_client_asks_for_strict_handling(
    client: TestClient,
) -> None:
    query = {"patient": OURS, "_sort": "-date"}
    lenient = bundle(client.get("/fhir/Observation", params=query, headers=bearer("chief")))
    assert "_sort" not in links(lenient)["self"]
    strict = client.get(
        "/fhir/Observation",
        params=query,
        headers={**bearer("chief"), "Prefer": "handling=strict"},
    )
    issue = outcome(strict, 400)["issue"][0]
    assert issue["code"] == "not-supported" and "_sort" in issue["diagnostics"]


def test_another_teams_clinician_is_refused_naming_nobody(
    client: TestClient, store: ListStore
) -> None:
    for path in ("/fhir/Observation", "/fhir/Flag"):
        refused = client.get(path, params={"patient": THEIRS}, headers=bearer("nurse-a"))
        body = outcome(refused, 403)
        assert body["issue"][0]["code"] == "forbidden"
        assert THEIRS not in refused.text
        assert (
            client.get(path, params={"patient": THEIRS}, headers=bearer("nurse-b")).status_code
            == 200
        )
    unknown = client.get("/fhir/Observation", params={"patient": OURS}, headers=bearer("nobody"))
    outcome(unknown, 401)
    assert [s.patient_id for s in store.searches] == [THEIRS]


def test_a_patient_reads_their_own_data_and_nobody_else_s(client: TestClient) -> None:
    own = {"Authorization": "Bearer ours-patient-token"}
    mine = bundle(client.get("/fhir/Observation", params={"patient": OURS}, headers=own))
    assert len(mine["entry"]) == 7
    bundle(client.get("/fhir/Flag", params={"patient": OURS}, headers=own))
    outcome(client.get("/fhir/Observation", params={"patient": THEIRS}, headers=own), 403)
    outcome(client.get("/fhir/Flag", params={"patient": THEIRS}, headers=own), 403)


def test_a_patient_gets_codes_and_labels_but_never_the_care_team_s_text(
    client: TestClient, model: ReadModel
) -> None:
    """docs/patients.md: Alert.summary and the findings' explanations are never passed to
    patients; their care team reads both."""
    alert = make_alert(patient_id=OURS, summary="Heart rate 165 /min, far above the usual 70")
    model.load_alerts([alert])
    own = {"Authorization": "Bearer ours-patient-token"}
    query = {"patient": OURS}
    mine = client.get("/fhir/Observation", params=query, headers=own)
    [flagged] = [e["resource"] for e in bundle(mine)["entry"] if "interpretation" in e["resource"]]
    assert flagged["interpretation"][0]["coding"][0]["code"] == "HH"
    assert "text" not in flagged["interpretation"][0]
    assert FLAG.explanation not in mine.text
    my_flags = client.get("/fhir/Flag", params=query, headers=own)
    [my_flag] = [e["resource"] for e in bundle(my_flags)["entry"]]
    assert my_flag["code"]["text"] == "Heart rate"
    assert alert.summary not in my_flags.text

    team = bundle(client.get("/fhir/Observation", params=query, headers=bearer("nurse-a")))
    [seen] = [e["resource"] for e in team["entry"] if "interpretation" in e["resource"]]
    assert seen["interpretation"][0]["text"] == FLAG.explanation
    team_flags = bundle(client.get("/fhir/Flag", params=query, headers=bearer("nurse-a")))
    assert team_flags["entry"][0]["resource"]["code"]["text"] == f"Heart rate: {alert.summary}"


def test_influxdb_failing_is_a_503_with_retry_after(client: TestClient, store: ListStore) -> None:
    store.failure = ExportStoreError("InfluxDB query failed: HTTP 500: boom")
    response = client.get("/fhir/Observation", params={"patient": OURS}, headers=bearer("chief"))
    body = outcome(response, 503)
    assert response.headers["Retry-After"] == "7"
    assert body["issue"][0]["code"] == "transient" and "boom" in body["issue"][0]["diagnostics"]


def test_a_page_taking_longer_than_the_timeout_is_a_503(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink, store: ListStore
) -> None:
    """The timeout bounds the whole page (several queries), not each query."""
    app = make_app(tmp_path, model, sink, influx_timeout_s=0.3)
    store.delay_s = 5.0
    app.state.fhir_store = store
    started = time.monotonic()
    response = TestClient(app).get(
        "/fhir/Observation", params={"patient": OURS}, headers=bearer("chief")
    )
    assert time.monotonic() - started < 2.0
    outcome(response, 503)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers (an InfluxDB that hangs)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_an_influxdb_that_does_not_answer_is_a_503_within_the_timeout(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink, silent_port: int
) -> None:
    app = make_app(
        tmp_path,
        model,
        sink,
        influx_url=f"http://127.0.0.1:{silent_port}",
        influx_token="pghd:pghd",
        influx_timeout_s=0.5,
    )
    started = time.monotonic()
    response = TestClient(app).get(
        "/fhir/Observation", params={"patient": OURS}, headers=bearer("chief")
    )
    elapsed = time.monotonic() - started
    asyncio.run(app.state.fhir_store.close())
    assert 0.4 < elapsed < 3.0, elapsed
    assert outcome(response, 503)["issue"][0]["severity"] == "fatal"
    assert response.headers["Retry-After"] == "7"


def test_without_influxdb_searches_are_503_but_refusals_come_first(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink
) -> None:
    client = TestClient(make_app(tmp_path, model, sink))  # no InfluxDB token: no reader
    outcome(client.get("/fhir/Observation", params={"patient": OURS}, headers=bearer("chief")), 503)
    refused = client.get("/fhir/Observation", params={"patient": THEIRS}, headers=bearer("nurse-a"))
    outcome(refused, 403)


def test_every_search_is_audited_naming_the_patient(
    client: TestClient, sink: RecordingAuditSink
) -> None:
    calls = [
        ("nurse-a", "/fhir/Observation", OURS, 200),
        ("nurse-a", "/fhir/Flag", OURS, 200),
        ("nurse-a", "/fhir/Observation", THEIRS, 403),
    ]
    for user, path, patient, status in calls:
        response = client.get(
            path,
            params={"patient": patient},
            headers={**bearer(user), "X-Request-ID": path + patient},
        )
        assert response.status_code == status
    assert [(e.operation, e.patients, e.outcome, e.agent.name) for e in sink.events] == [
        ("GET /fhir/Observation", [OURS], "success", "nurse-a"),
        ("GET /fhir/Flag", [OURS], "success", "nurse-a"),
        ("GET /fhir/Observation", [THEIRS], "denied", "nurse-a"),
    ]
    assert [e.request_id for e in sink.events] == [path + patient for _, path, patient, _ in calls]
    assert sink.events[0].resource == "/fhir/Observation"  # the query string stays out


def test_nothing_is_answered_when_the_audit_trail_cannot_be_written(
    client: TestClient, sink: RecordingAuditSink
) -> None:
    sink.failure = RuntimeError("kafka down")
    response = client.get("/fhir/Observation", params={"patient": OURS}, headers=bearer("chief"))
    body = outcome(response, 503, by_a_route=False)  # the middleware's answer: no patient data
    assert "audit" in body["issue"][0]["diagnostics"]
    assert response.headers["Retry-After"] == "7"
    assert client.get("/fhir/metadata").status_code == 200  # public: no audit needed


def test_paths_and_methods_the_read_api_does_not_serve_are_operation_outcomes(
    client: TestClient, sink: RecordingAuditSink
) -> None:
    """They reach no route (no FhirRoute to make them FHIR): the app's handlers answer them
    as OperationOutcomes under /fhir, as problem documents elsewhere."""
    for path in ("/fhir/Observation/abc", "/fhir/Patient", "/fhir"):
        missing = outcome(client.get(path, headers=bearer("chief")), 404)
        assert missing["issue"][0]["code"] == "not-found"
    for method, path in (("POST", "/fhir/Observation/_search"), ("DELETE", "/fhir/Flag")):
        response = client.request(method, path, params={"patient": OURS}, headers=bearer("chief"))
        status = 405 if path == "/fhir/Flag" else 404
        assert outcome(response, status)["issue"][0]["code"] in ("not-supported", "not-found")
    post = client.post("/fhir/Observation", params={"patient": OURS}, headers=bearer("chief"))
    assert outcome(post, 405)["issue"][0]["code"] == "not-supported"
    assert post.headers["allow"] == "GET"
    elsewhere = client.get("/v1/nothing-here", headers=bearer("chief"))
    assert elsewhere.status_code == 404
    assert elsewhere.headers["content-type"] == "application/problem+json"
    assert "cache-control" not in elsewhere.headers


def test_an_unexpected_error_under_fhir_is_a_500_operation_outcome(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink, store: ListStore
) -> None:
    app = make_app(tmp_path, model, sink)
    store.failure = RuntimeError("a bug")  # not an ExportStoreError: nobody expected it
    app.state.fhir_store = store
    client = TestClient(app, raise_server_exceptions=False)
    response = client.get("/fhir/Observation", params={"patient": OURS}, headers=bearer("chief"))
    body = outcome(response, 500)
    assert body["issue"][0]["severity"] == "fatal" and "a bug" not in response.text


# --- Flag ----------------------------------------------------------------------------------


def test_flags_are_the_patients_open_and_recently_resolved_alerts(
    client: TestClient, model: ReadModel
) -> None:
    model.load_alerts(
        [
            make_alert(patient_id=OURS),
            make_alert(patient_id=OURS, problem="spo2", status=AlertState.RESOLVED),
            make_alert(patient_id=THEIRS),
        ]
    )

    def statuses(**query: str) -> list[str]:
        body = bundle(
            client.get("/fhir/Flag", params={"patient": OURS, **query}, headers=bearer("viewer-a"))
        )
        for entry in body.get("entry", []):
            assert entry["resource"]["subject"]["reference"] == f"Patient/{OURS}"
        return [e["resource"]["status"] for e in body.get("entry", [])]

    assert sorted(statuses()) == ["active", "inactive"]
    assert statuses(status="active") == ["active"]
    assert statuses(status="inactive") == ["inactive"]
    wrong = client.get(
        "/fhir/Flag", params={"patient": OURS, "status": "open"}, headers=bearer("chief")
    )
    assert outcome(wrong, 400)["issue"][0]["expression"] == ["status"]


def test_flags_wait_for_the_read_model(client: TestClient, model: ReadModel) -> None:
    """An admin passes the team check before the enrollments are read, but the alerts are
    not known yet either: 503, not an empty Bundle."""
    model.ready = False
    response = client.get("/fhir/Flag", params={"patient": OURS}, headers=bearer("chief"))
    outcome(response, 503)
    assert response.headers["Retry-After"] == "7"


def test_links_use_the_public_base_url_when_one_is_configured(
    tmp_path: Path, model: ReadModel, sink: RecordingAuditSink, store: ListStore
) -> None:
    """Behind a proxy that ends TLS, the request's own URL is not the one clients use."""
    app = make_app(tmp_path, model, sink, fhir_base_url="https://care.example.org/fhir/")
    app.state.fhir_store = store
    client = TestClient(app)
    body = bundle(
        client.get(
            "/fhir/Observation", params={"patient": OURS, "_count": "2"}, headers=bearer("chief")
        )
    )
    assert (
        links(body)["self"] == f"https://care.example.org/fhir/Observation?patient={OURS}&_count=2"
    )
    assert links(body)["next"].startswith(
        f"https://care.example.org/fhir/Observation?patient={OURS}&_count=2&_cursor="
    )
    statement = client.get("/fhir/metadata").json()
    assert statement["implementation"]["url"] == "https://care.example.org/fhir"
