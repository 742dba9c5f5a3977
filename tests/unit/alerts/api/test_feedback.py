"""``/v1/me/feedback``: a patient's own token registers their app, consent per kind, the URL
rule, the secret answered once and written to the subscriptions topic, the tombstone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.api.deps import get_publisher
from alerts.api.read_model import ReadModel
from alerts.api.settings import CareApiSettings
from pghd import wire
from pghd.access import Principal
from pghd.feedback.subscription import new_secret, read_record, subscribe
from pghd.feedback.wording import Kind
from pghd.service.producer import KafkaUnavailable
from pghd.topics import FEEDBACK_SUBSCRIPTIONS
from tests.unit.audit_sink import RecordingAuditSink

from .conftest import AUTH, RecordingProducer, build
from .test_care_plans import RecordingPublisher

PATH = "/v1/me/feedback"
PATIENT, OTHER = "patient-001", "patient-002"
MINE = {"Authorization": "Bearer patient-001-own-token"}
THEIRS = {"Authorization": "Bearer patient-002-own-token"}
URL = "https://app.example.org/pghd/feedback"


class PatientTokens:
    """Stands in for the enrollments' patient tokens: each patient holds their own."""

    def identify(self, token: str | None) -> Principal | None:
        for patient in (PATIENT, OTHER):
            if token == f"{patient}-own-token":
                return Principal.for_patient(patient)
        return None


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def audit() -> RecordingAuditSink:
    return RecordingAuditSink()


def _client(
    settings: CareApiSettings,
    model: ReadModel,
    publisher: RecordingPublisher,
    audit: RecordingAuditSink,
) -> TestClient:
    app = build(settings, RecordingProducer(), model, audit)
    app.dependency_overrides[get_publisher] = lambda: publisher
    app.state.patient_tokens = PatientTokens()
    return TestClient(app)


@pytest.fixture
def api(
    settings: CareApiSettings,
    model: ReadModel,
    publisher: RecordingPublisher,
    audit: RecordingAuditSink,
) -> Iterator[TestClient]:
    yield _client(settings, model, publisher, audit)


def _register(api: TestClient, **body: Any) -> Any:
    return api.put(PATH, json={"url": URL, "kinds": ["finding_opened"], **body}, headers=MINE)


def test_registering_answers_the_secret_once_and_writes_it_to_the_topic(
    api: TestClient, publisher: RecordingPublisher, model: ReadModel
) -> None:
    answer = _register(api, kinds=["finding_opened", "finding_resolved"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    secret = body["secret"]
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert body["url"] == URL and body["patient_id"] == PATIENT
    assert set(body["kinds"]) == {"finding_opened", "finding_resolved"}

    ((topic, key, value),) = publisher.records
    assert (topic, key) == (FEEDBACK_SUBSCRIPTIONS, PATIENT.encode())
    _, stored = read_record(key, value)
    assert stored is not None and stored.secret == secret  # the sender needs it to sign

    shown = api.get(PATH, headers=MINE)
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    assert "secret" not in shown.json() and secret not in shown.text
    assert secret not in repr(model.feedback[PATIENT])

    again = _register(api, kinds=["finding_opened", "finding_resolved"])
    assert again.json()["secret"] != secret, "each registration makes a new secret"


def test_consent_is_kept_from_when_it_was_given_and_withdrawn_by_leaving_a_kind_out(
    api: TestClient,
) -> None:
    first = _register(api, kinds=["finding_opened"]).json()
    second = _register(api, kinds=["finding_opened", "reading_refused"]).json()
    assert second["kinds"]["finding_opened"] == first["kinds"]["finding_opened"]
    assert second["kinds"]["reading_refused"] >= first["kinds"]["finding_opened"]
    assert second["created_at"] == first["created_at"]
    third = _register(api, kinds=["reading_refused"]).json()
    assert list(third["kinds"]) == ["reading_refused"]


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("http://app.example.org/hook", "feedback-url-refused"),
        ("http://127.0.0.1:9000/hook", "feedback-url-refused"),  # loopback not allowed here
        ("https://10.0.0.8/hook", "feedback-url-refused"),
        ("https://user:pw@app.example.org/hook", "feedback-url-refused"),
    ],
)
def test_a_url_that_is_not_https_to_the_internet_is_refused(
    api: TestClient, publisher: RecordingPublisher, url: str, slug: str
) -> None:
    refused = _register(api, url=url)
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == f"urn:pghd:problem:{slug}"
    assert publisher.records == []


def test_the_loopback_is_a_setting_for_local_stacks(
    settings: CareApiSettings,
    model: ReadModel,
    publisher: RecordingPublisher,
    audit: RecordingAuditSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = settings.model_copy(update={"feedback_allow_loopback_http": True})
    api = _client(local, model, publisher, audit)
    assert _register(api, url="http://127.0.0.1:9000/hook").status_code == 200
    assert _register(api, url="http://app.example.org/hook").status_code == 422
    assert not CareApiSettings().feedback_allow_loopback_http
    monkeypatch.setenv("PGHD_FEEDBACK_ALLOW_LOOPBACK_HTTP", "true")  # the stack-wide name
    assert CareApiSettings().feedback_allow_loopback_http


def test_unknown_kinds_are_refused_and_every_kind_is_taken(
    api: TestClient, publisher: RecordingPublisher
) -> None:
    assert _register(api, kinds=["horoscope"]).status_code == 422
    assert _register(api, kinds=[]).status_code == 422
    assert publisher.records == []
    weekly = _register(api, kinds=["finding_opened", Kind.WEEKLY_SUMMARY.value])
    assert weekly.status_code == 200, weekly.text
    assert set(weekly.json()["kinds"]) == {"finding_opened", "weekly_summary"}


def test_only_a_patients_own_token_reaches_it(api: TestClient) -> None:
    assert api.get(PATH).status_code == 401
    for method in ("GET", "PUT", "DELETE"):
        refused = api.request(
            method, PATH, json={"url": URL, "kinds": ["finding_opened"]}, headers=AUTH
        )
        assert refused.status_code == 403, (method, refused.text)
        assert refused.json()["type"] == "urn:pghd:problem:forbidden-role"
    assert api.put(PATH, headers=AUTH).status_code == 403, "refused before its body is read"


def test_a_patient_sees_and_withdraws_only_their_own(
    api: TestClient, publisher: RecordingPublisher
) -> None:
    assert _register(api).status_code == 200
    assert api.get(PATH, headers=THEIRS).status_code == 404, "another patient's is not theirs"
    assert api.delete(PATH, headers=THEIRS).status_code == 404
    assert api.get(PATH, headers=MINE).status_code == 200
    gone = api.delete(PATH, headers=MINE)
    assert gone.status_code == 204
    assert publisher.records[-1] == (FEEDBACK_SUBSCRIPTIONS, PATIENT.encode(), None)
    assert api.get(PATH, headers=MINE).status_code == 404
    assert api.delete(PATH, headers=MINE).status_code == 404


def test_every_request_is_audited_with_the_patient(
    api: TestClient, audit: RecordingAuditSink
) -> None:
    _register(api)
    api.get(PATH, headers=MINE)
    api.get(PATH, headers=AUTH)  # a care-team member's: denied, audited too
    assert [e.patients for e in audit.events[:2]] == [[PATIENT], [PATIENT]]
    assert [e.outcome for e in audit.events] == ["success", "success", "denied"]


def test_kafka_away_is_503_and_nothing_is_registered(
    api: TestClient, publisher: RecordingPublisher, model: ReadModel
) -> None:
    publisher.failure = KafkaUnavailable("broker down")
    refused = _register(api)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "7"
    assert PATIENT not in model.feedback


def test_not_ready_is_503(api: TestClient, model: ReadModel) -> None:
    model.ready = False
    assert _register(api).status_code == 503
    assert api.get(PATH, headers=MINE).status_code == 503


def test_the_read_model_keeps_registrations_without_secrets_and_forgets_the_erased(
    model: ReadModel,
) -> None:
    made = subscribe(
        PATIENT, url=URL, kinds=[Kind.FINDING_OPENED], now=datetime.now(UTC), secret=new_secret()
    )
    model.apply_record(FEEDBACK_SUBSCRIPTIONS, PATIENT.encode(), wire.encode(made))
    assert model.feedback[PATIENT] == made.registration()
    model.apply_record(FEEDBACK_SUBSCRIPTIONS, PATIENT.encode(), None)
    assert PATIENT not in model.feedback
    model.apply_record(FEEDBACK_SUBSCRIPTIONS, PATIENT.encode(), wire.encode(made))
    model.forget_patient(PATIENT)  # the enrollment tombstone of an erasure
    assert PATIENT not in model.feedback
    with pytest.raises(ValueError):
        model.apply_record(FEEDBACK_SUBSCRIPTIONS, OTHER.encode(), wire.encode(made))
