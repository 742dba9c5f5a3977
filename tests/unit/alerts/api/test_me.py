"""``/v1/me`` with a fake reader of the patient's points: only the token's own patient is
read, their token lives and dies with their enrollment record, InfluxDB trouble is a 503,
and the answers are audited and cached nowhere. The reader itself, on a server that never
answers, gives up in time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.api.patient_tokens import EnrolledPatientTokens
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd.access import hash_token
from pghd.alerting import NotificationOutcome, NotificationRecord
from pghd.catalogue import Metric
from pghd.enrollment import Action, Change, Enrollment, enroll, issue_token, revoke_tokens
from pghd.patient_view.chart import ChartPlan, Resolution
from pghd.patient_view.influx import (
    ChartInputs,
    InfluxPatientView,
    PatientViewUnavailable,
)
from pghd.patient_view.summary import (
    FindingPoint,
    StoredBaseline,
    StoredLatest,
    SummaryInputs,
)
from pghd.problems import ProblemError
from tests.unit.alerts.api.conftest import RecordingProducer, build, make_alert
from tests.unit.audit_sink import RecordingAuditSink

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
ME, OTHER = "patient-me", "patient-other"
MY_TOKEN, OTHER_TOKEN = "pghd_pt_" + "m" * 43, "pghd_pt_" + "o" * 43
NURSE = "nurse-token-0123456789"


class FakeView:
    """The patient's points as a reader would give them; records who was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []
        self.failure: Exception | None = None

    async def summary_inputs(
        self, patient_id: str, *, now: datetime, findings: bool
    ) -> SummaryInputs:
        self.asked.append((patient_id, findings))
        if self.failure is not None:
            raise self.failure
        return SummaryInputs(
            latest=[StoredLatest("heart_rate", "heart_rate", "/min", 85, now)],
            baselines=[
                StoredBaseline("heart_rate", "awake-06", 64, 3, 52, 76, 40, now),
                StoredBaseline("blood_pressure.systolic", "awake", 120, 4, 104, 136, 20, now),
            ],
            findings=[FindingPoint("an-1", "heart_rate", "heart_rate", 85, now)],
        )

    async def chart_inputs(self, patient_id: str, chosen: ChartPlan) -> ChartInputs:
        self.asked.append((patient_id, chosen))
        if self.failure is not None:
            raise self.failure
        at = chosen.end - timedelta(hours=1)
        series = {
            "blood_pressure.systolic": [(at, 130.0)],
            "blood_pressure.diastolic": [(at, 85.0)],
        }
        baselines = [StoredBaseline("blood_pressure.systolic", "awake", 120, 4, 104, 136, 20, at)]
        return series, baselines

    async def close(self) -> None:
        return None


def change(action: Action, minutes: int = 0) -> Change:
    return Change(
        change_id=f"c-{action.value}-{minutes}",
        action=action,
        at=NOW - timedelta(days=1) + timedelta(minutes=minutes),
        by="ops",
    )


def put(model: ReadModel, enrollment: Enrollment | None, patient: str) -> None:
    """Apply a record of the enrollments topic as the follower would."""
    value = None if enrollment is None else enrollment.to_record()
    model.apply_enrollment_record(patient.encode(), value)


def with_token(patient: str, token: str) -> Enrollment:
    enrolled = enroll(None, patient_id=patient, change=change(Action.ENROLL))
    return issue_token(enrolled, sha256=hash_token(token), change=change(Action.ISSUE_TOKEN, 1))


@pytest.fixture
def model() -> ReadModel:
    model = ReadModel(ready=True)
    put(model, with_token(ME, MY_TOKEN), ME)
    put(model, with_token(OTHER, OTHER_TOKEN), OTHER)
    delivered = NotificationRecord(
        channel="ward",
        route="all",
        attempt=1,
        at=NOW - timedelta(hours=2),
        outcome=NotificationOutcome.DELIVERED,
    )
    model.load_alerts(
        [
            make_alert(
                patient_id=ME,
                alert_id="al-mine",
                opened_at=NOW - timedelta(hours=3),
                anomaly_ids=["an-1"],
                notifications=[delivered],
            ),
            make_alert(patient_id=OTHER, problem="spo2", alert_id="al-theirs"),
        ]
    )
    return model


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest.fixture
def audit() -> RecordingAuditSink:
    return RecordingAuditSink()


@pytest.fixture
def client(model: ReadModel, view: FakeView, audit: RecordingAuditSink) -> Iterator[TestClient]:
    settings = CareApiSettings(
        tokens={"nurse": hash_token(NURSE)}, kafka_bootstrap="127.0.0.1:1", retry_after_s=7
    )
    app = build(settings, RecordingProducer(), model, audit)
    app.state.patient_tokens = EnrolledPatientTokens(model, retry_after_s=7)
    app.state.patient_view = view
    app.state.clock = lambda: NOW
    yield TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_summary_is_the_token_holders_own(
    client: TestClient, view: FakeView, audit: RecordingAuditSink
) -> None:
    response = client.get("/v1/me/summary", headers=bearer(MY_TOKEN))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    summary = response.json()
    assert (summary["patient_id"], summary["as_of"]) == (ME, "2026-03-10T09:30:00Z")
    (latest,) = summary["latest"]
    assert (latest["value"], latest["compared"], latest["usual"]["high"]) == (85, "above", 76)
    (finding,) = summary["findings"]
    assert finding["alert_id"] == "al-mine" and finding["care_team_told"]
    assert finding["message"].startswith(
        "Your heart rate has been 9 beats per minute above your usual for the last 3 hours;"
        " your care team has been told."
    )
    assert "well above this patient's usual" not in response.text, "the clinicians' summary"
    assert view.asked == [(ME, True)]  # their findings: they have an open alert
    (event,) = audit.events
    assert (event.agent.name, event.agent.role, event.patients, event.outcome) == (
        f"patient:{ME}",
        "patient",
        [ME],
        "success",
    )


def test_findings_are_read_only_for_a_patient_with_an_open_alert(
    client: TestClient, model: ReadModel, view: FakeView
) -> None:
    mine = model.alerts.get("al-mine")
    assert mine is not None
    model.alerts.remove(mine.fingerprint)
    response = client.get("/v1/me/summary", headers=bearer(MY_TOKEN))
    assert response.status_code == 200 and response.json()["findings"] == []
    assert view.asked == [(ME, False)]


def test_the_chart_is_the_token_holders_own_with_the_usual_range(
    client: TestClient, view: FakeView
) -> None:
    response = client.get(
        "/v1/me/readings",
        params={"metric": "blood_pressure", "start": "2026-02-08T09:30:00Z"},
        headers=bearer(OTHER_TOKEN),
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    drawn = response.json()
    assert (drawn["patient_id"], drawn["resolution"], drawn["aggregate"]) == (OTHER, "3h", "mean")
    systolic, diastolic = drawn["channels"]
    assert systolic["points"] == [{"at": "2026-03-10T08:30:00Z", "value": 130.0}]
    assert systolic["usual"]["low"] == 104 and diastolic["usual"] is None
    ((asked, chosen),) = view.asked
    assert asked == OTHER and chosen.metric is Metric.BLOOD_PRESSURE
    assert (chosen.start, chosen.end) == (NOW - timedelta(days=30), NOW)


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"metric": "heart_rate", "resolution": "raw", "start": "2026-03-01T00:00:00Z"}, "7 days"),
        ({"metric": "heart_rate", "start": "2026-03-10T10:00:00Z"}, "before end"),
        ({"metric": "mood"}, None),
        ({"metric": "heart_rate", "start": "2026-03-01T00:00:00"}, None),  # no time zone
        ({}, None),
    ],
)
def test_a_chart_that_cannot_be_drawn_is_422(
    client: TestClient, view: FakeView, params: dict[str, str], why: str | None
) -> None:
    response = client.get("/v1/me/readings", params=params, headers=bearer(MY_TOKEN))
    assert response.status_code == 422, response.text
    if why is not None:
        assert why in response.json()["detail"]
    assert view.asked == []


def test_care_team_members_and_strangers_get_no_me(client: TestClient, view: FakeView) -> None:
    for path in ("/v1/me/summary", "/v1/me/readings?metric=heart_rate"):
        nurse = client.get(path, headers=bearer(NURSE))
        assert nurse.status_code == 403 and "is no patient" in nurse.json()["detail"]
        assert client.get(path, headers=bearer("pghd_pt_" + "x" * 43)).status_code == 401
        assert client.get(path).status_code == 401
    assert view.asked == []


def test_a_patient_token_reaches_nothing_of_another_patient(client: TestClient) -> None:
    mine = bearer(MY_TOKEN)
    for path in (
        f"/v1/alerts?patient_id={OTHER}",
        "/v1/alerts/al-theirs",
        f"/v1/patients/{OTHER}/care-plan",
        "/v1/silences",
    ):
        response = client.get(path, headers=mine)
        assert response.status_code == 403, (path, response.text)
        assert OTHER not in response.text
    assert OTHER not in client.get("/v1/me/summary", headers=mine).text


def test_a_rotated_revoked_or_erased_token_stops_at_once(
    client: TestClient, model: ReadModel
) -> None:
    ok = client.get("/v1/me/summary", headers=bearer(MY_TOKEN))
    assert ok.status_code == 200
    rotated = issue_token(
        with_token(ME, MY_TOKEN),
        sha256=hash_token("pghd_pt_new"),
        change=change(Action.ISSUE_TOKEN, 2),
    )
    put(model, rotated, ME)
    assert client.get("/v1/me/summary", headers=bearer(MY_TOKEN)).status_code == 401
    assert client.get("/v1/me/summary", headers=bearer("pghd_pt_new")).status_code == 200
    put(model, revoke_tokens(rotated, change=change(Action.REVOKE_TOKENS, 3)), ME)
    assert client.get("/v1/me/summary", headers=bearer("pghd_pt_new")).status_code == 401
    assert client.get("/v1/me/summary", headers=bearer(OTHER_TOKEN)).status_code == 200
    put(model, None, OTHER)  # erased: the tombstone
    assert client.get("/v1/me/summary", headers=bearer(OTHER_TOKEN)).status_code == 401


def test_influxdb_down_or_slow_is_503_with_retry_after(client: TestClient, view: FakeView) -> None:
    view.failure = PatientViewUnavailable("InfluxDB did not answer within 30 s")
    for path in ("/v1/me/summary", "/v1/me/readings?metric=heart_rate"):
        response = client.get(path, headers=bearer(MY_TOKEN))
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
        assert response.json()["type"] == "urn:pghd:problem:readings-unavailable"
    client.app.state.patient_view = None  # type: ignore[attr-defined]
    unconfigured = client.get("/v1/me/summary", headers=bearer(MY_TOKEN))
    assert unconfigured.status_code == 503 and "no InfluxDB token" in unconfigured.text


def test_while_the_enrollments_load_a_patient_token_is_503_not_401(
    client: TestClient, model: ReadModel
) -> None:
    model.ready = False
    unknown = client.get("/v1/me/summary", headers=bearer("pghd_pt_" + "u" * 43))
    assert unknown.status_code == 503 and unknown.headers["Retry-After"] == "7"
    assert client.get("/v1/me/summary", headers=bearer("not-a-patient-token")).status_code == 401
    known = client.get("/v1/me/summary", headers=bearer(MY_TOKEN))
    assert known.status_code == 503, "its findings are not all read yet"


def test_the_openapi_document_lists_the_me_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/me/summary", "/v1/me/readings"):
        assert {"401", "403", "503"} <= set(paths[path]["get"]["responses"])


def test_enrolled_patient_tokens_answer_who_holds_one(model: ReadModel) -> None:
    tokens = EnrolledPatientTokens(model, retry_after_s=3)
    who = tokens.identify(MY_TOKEN)
    assert who is not None and (who.name, who.patient_id) == (f"patient:{ME}", ME)
    assert tokens.identify(None) is None and tokens.identify("pghd_pt_nobody") is None
    model.ready = False
    with pytest.raises(ProblemError) as loading:
        tokens.identify("pghd_pt_nobody")
    assert loading.value.status == 503


# --- the reader's deadline ------------------------------------------------------------------


def _silent_server() -> tuple[socket.socket, str]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


def _closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("where", ["silent", "refused"])
def test_the_reader_gives_up_in_time(where: str) -> None:
    server, url = _silent_server() if where == "silent" else (None, _closed_port())

    async def read() -> None:
        reader = InfluxPatientView(
            url=url, token="t", org="-", bucket="pghd/autogen", timeout_s=0.5
        )
        try:
            with pytest.raises(PatientViewUnavailable):
                await reader.summary_inputs(ME, now=NOW, findings=True)
            chosen = ChartPlan(
                Metric.HEART_RATE, NOW - timedelta(hours=1), NOW, Resolution.RAW, None, "none"
            )
            with pytest.raises(PatientViewUnavailable):
                await reader.chart_inputs(ME, chosen)
        finally:
            await reader.close()

    started = time.monotonic()
    try:
        asyncio.run(read())
    finally:
        if server is not None:
            server.close()
    assert time.monotonic() - started < 5
