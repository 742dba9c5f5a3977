"""``/v1/webhooks/{source}`` over HTTP, with in-memory gateways for readings and dead letters."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.app import create_app
from ingest.deps import get_dlq_gateway, get_gateway
from ingest.settings import IngestSettings
from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import DeadLetter, Measurement
from pghd.service.producer import KafkaUnavailable
from tests.clock import ANCHOR
from tests.unit.ingest.conftest import RecordingGateway, reading
from tests.webhook_payloads import (
    body_of,
    generic_headers,
    junction_event,
    junction_headers,
    junction_sample,
    terra_body,
    terra_headers,
    webhook_config,
)

START = ANCHOR - timedelta(hours=2)


class Links:
    """The registry: vendor accounts linked to patients, consent for all but ``no_consent``."""

    def __init__(self) -> None:
        self.links = {
            ("terra", "terra-u1"): "patient-t1",
            ("junction", "jn-u1"): "patient-j1",
            ("acme-push", "app-user-g1"): "patient-g1",
        }
        self.no_consent: set[tuple[str, Metric]] = set()

    def patient_for(self, *, source: str, account: str) -> str | None:
        return self.links.get((source, account))

    def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
        if (patient_id, metric) in self.no_consent:
            return f"patient {patient_id} has not consented to {metric.value}"
        return None

    def source_refusal(self, *, source: str, patient_id: str) -> str | None:
        linked = any(s == source and p == patient_id for (s, _), p in self.links.items())
        return None if linked else f"{source} is not linked to {patient_id}"


class Env:
    def __init__(self, app: FastAPI, readings: RecordingGateway, dlq: RecordingGateway) -> None:
        self.app, self.readings, self.dlq = app, readings, dlq
        self.client = TestClient(app)
        self.registry: Links = app.state.registry

    def post(self, source: str, body: bytes, headers: dict[str, str]) -> Any:
        return self.client.post(f"/v1/webhooks/{source}", content=body, headers=headers)

    def measurements(self) -> list[Measurement]:
        return [wire.decode(Measurement, v) for _, v in self.readings.records]

    def letters(self) -> list[DeadLetter]:
        return [wire.decode(DeadLetter, v) for _, v in self.dlq.records]


def make_env(**overrides: Any) -> Env:
    options: dict[str, Any] = {"webhooks": webhook_config(), **overrides}
    settings = IngestSettings(kafka_bootstrap="127.0.0.1:1", retry_after_s=7, **options)
    app = create_app(settings)
    readings, dlq = RecordingGateway(), RecordingGateway()
    app.dependency_overrides[get_gateway] = lambda: readings
    app.dependency_overrides[get_dlq_gateway] = lambda: dlq
    app.state.registry = Links()
    return Env(app, readings, dlq)


@pytest.fixture
def env() -> Iterator[Env]:
    yield make_env()


def test_signed_terra_push_is_produced_and_answered_with_counts(env: Env) -> None:
    body = body_of(terra_body("terra-u1", START))
    response = env.post("terra", body, terra_headers(body))
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["event"], result["accepted"], result["dead_lettered"]) == ("body", 9, 0)
    assert (
        result["ignored"] == 3
        and "body.temperature_data.skin_temperature_samples" in result["ignored_kinds"]
    )
    stored = env.measurements()
    assert len(stored) == 9 and {m.patient_id for m in stored} == {"patient-t1"}
    assert {m.source.vendor for m in stored} == {"terra"}
    assert all(key == b"patient-t1" for key, _ in env.readings.records)
    assert env.dlq.records == []


def test_signed_junction_push_is_produced(env: Env) -> None:
    event = junction_event("heartrate", "jn-u1", [junction_sample(START, 64, "bpm")])
    body = body_of(event)
    response = env.post("junction", body, junction_headers(body))
    assert response.status_code == 200, response.text
    (m,) = env.measurements()
    assert (m.patient_id, m.metric, m.value) == ("patient-j1", Metric.HEART_RATE, 64)


def test_generic_push_takes_pghd_reading_json(env: Env) -> None:
    body = body_of([reading(patient_id="patient-g1", value=71), reading(value=5000)])
    response = env.post("acme-push", body, generic_headers(body))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (1, 1)
    (letter,) = env.letters()
    assert letter.reason.startswith("range: /1/value") and letter.stage == "ingest.webhooks"


def test_generic_push_for_a_patient_not_linked_to_the_source_is_refused(env: Env) -> None:
    body = body_of([reading(patient_id="patient-t1", value=71)])  # linked to terra only
    response = env.post("acme-push", body, generic_headers(body))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (0, 1)
    (letter,) = env.letters()
    assert letter.reason.startswith("unlinked-source: /0")
    assert "acme-push is not linked to patient-t1" in letter.reason
    assert env.measurements() == []


def test_generic_push_takes_the_end_of_a_step_count(env: Env) -> None:
    end = START + timedelta(minutes=10)
    steps = reading(
        patient_id="patient-g1",
        metric="steps",
        value=420,
        unit="{steps}",
        effective_time=START.isoformat(),
        effective_end=end.isoformat(),
    )
    body = body_of(steps)
    response = env.post("acme-push", body, generic_headers(body))
    assert response.status_code == 200, response.text
    (m,) = env.measurements()
    assert (m.metric, m.effective_time, m.effective_end) == (Metric.STEPS, START, end)


def test_unknown_account_goes_to_the_dlq_with_its_reason(env: Env) -> None:
    event = junction_event("heartrate", "jn-stranger", [junction_sample(START, 64, "bpm")])
    body = body_of(event)
    response = env.post("junction", body, junction_headers(body))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (0, 1)
    assert response.json()["refused"][0]["reason"] == "unknown-account"
    assert env.readings.records == []
    ((key, value),) = env.dlq.records
    letter = wire.decode(DeadLetter, value)
    assert key == b"jn-stranger" and letter.key == "jn-stranger"
    assert letter.reason.startswith("unknown-account:")
    assert "junction account 'jn-stranger' is not linked" in letter.reason
    payload = orjson.loads(letter.payload)
    assert payload["event"] == "daily.data.heartrate.created"
    assert payload["reading"]["metric"] == "heart_rate", "metadata is kept"
    assert "value" not in payload["reading"] and "64" not in letter.payload, (
        "the values of someone who did not consent are not kept"
    )
    assert "patient_id" not in payload, "an account linked to nobody names nobody"


def test_items_without_consent_are_dead_lettered_and_the_rest_produced(env: Env) -> None:
    env.registry.no_consent.add(("patient-t1", Metric.WEIGHT))
    body = body_of(terra_body("terra-u1", START))
    response = env.post("terra", body, terra_headers(body))
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (8, 1)
    (letter,) = env.letters()
    assert letter.reason.startswith("consent:") and "weight" in letter.reason
    kept = orjson.loads(letter.payload)["reading"]
    assert kept["metric"] == "weight"
    assert not {"value", "components"} & set(kept)


def test_an_invalid_item_keeps_its_values_for_a_replay(env: Env) -> None:
    body = body_of([reading(patient_id="patient-g1", value=5000)])
    env.post("acme-push", body, generic_headers(body))
    (letter,) = env.letters()
    assert letter.reason.startswith("range:")
    assert orjson.loads(letter.payload)["reading"]["value"] == 5000
    assert orjson.loads(letter.payload)["patient_id"] == "patient-g1", "told to the patient"


def test_a_consenting_patients_refused_item_names_them_when_pushed_by_account(
    env: Env,
) -> None:
    """Vendors that push by account name no patient: the letter names the linked one, so
    that they are told their reading could not be stored (feedback, reading_refused)."""
    event = junction_event("heartrate", "jn-u1", [junction_sample(START, 5000, "bpm")])
    body = body_of(event)
    assert env.post("junction", body, junction_headers(body)).status_code == 200
    (letter,) = env.letters()
    assert letter.reason.startswith("range:")
    payload = orjson.loads(letter.payload)
    assert payload["patient_id"] == "patient-j1" and "patient_id" not in payload["reading"]


def test_an_invalid_item_of_a_patient_who_did_not_consent_keeps_no_values(env: Env) -> None:
    env.registry.no_consent.add(("patient-g1", Metric.HEART_RATE))
    body = body_of([reading(patient_id="patient-g1", value=5000)])
    env.post("acme-push", body, generic_headers(body))
    (letter,) = env.letters()
    assert letter.reason.startswith("range:"), "refused as invalid before consent is asked"
    kept = orjson.loads(letter.payload)["reading"]
    assert kept["metric"] == "heart_rate" and "value" not in kept
    assert "5000" not in letter.payload
    assert "patient_id" not in orjson.loads(letter.payload), "not a consenting patient's"


@pytest.mark.parametrize(
    ("headers", "status", "slug", "text"),
    [
        ({}, 401, "bad-signature", "missing terra-signature header"),
        ({"terra-signature": "nonsense"}, 401, "bad-signature", "malformed terra-signature"),
    ],
)
def test_missing_or_malformed_signature(
    env: Env, headers: dict[str, str], status: int, slug: str, text: str
) -> None:
    body = body_of(terra_body("terra-u1", START))
    response = env.post("terra", body, headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:pghd:problem:{slug}"
    assert text in response.json()["detail"]
    assert response.headers["www-authenticate"] == "terra-signature"
    assert env.readings.calls == 0 and env.dlq.calls == 0


def test_wrong_secret_and_stale_timestamp_are_401_and_say_why(env: Env) -> None:
    body = body_of(terra_body("terra-u1", START))
    wrong = env.post("terra", body, terra_headers(body, secret="not-the-secret-000"))
    assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]
    stale = env.post("terra", body, terra_headers(body, at=int(time.time()) - 900))
    assert stale.status_code == 401
    assert stale.json()["type"] == "urn:pghd:problem:stale-signature"
    assert re.search(r"stale .* 90[01] s old, 60[01] s beyond the 300 s", stale.json()["detail"])
    svix_stale = env.post("junction", body, junction_headers(body, at=int(time.time()) + 3600))
    assert svix_stale.status_code == 401 and "in the future" in svix_stale.json()["detail"]
    assert env.readings.calls == 0 and env.dlq.calls == 0


def test_per_source_tolerance_overrides_the_default() -> None:
    config = webhook_config()
    config["terra"]["tolerance_s"] = 1200
    env = make_env(webhooks=config)
    body = body_of(terra_body("terra-u1", START))
    assert (
        env.post("terra", body, terra_headers(body, at=int(time.time()) - 900)).status_code == 200
    )


def test_replayed_signature_is_409_and_stores_nothing_again(env: Env) -> None:
    body = body_of(terra_body("terra-u1", START))
    headers = terra_headers(body)
    assert env.post("terra", body, headers).status_code == 200
    calls = env.readings.calls
    replay = env.post("terra", body, headers)
    assert replay.status_code == 409
    assert replay.json()["type"] == "urn:pghd:problem:replayed-signature"
    assert "replayed signature" in replay.json()["detail"]
    assert env.readings.calls == calls
    # the same content signed afresh (a vendor's retry) is taken; duplicates dedup downstream
    assert env.post("terra", body, terra_headers(body, at=int(time.time()) + 1)).status_code == 200


def test_kafka_down_is_503_and_the_retry_of_the_same_push_is_not_a_replay(env: Env) -> None:
    body = body_of(terra_body("terra-u1", START))
    headers = terra_headers(body)
    env.readings.failure = KafkaUnavailable("not connected to Kafka")
    down = env.post("terra", body, headers)
    assert down.status_code == 503 and down.headers["retry-after"] == "7"
    env.readings.failure = None
    assert env.post("terra", body, headers).status_code == 200


def test_dlq_down_is_503(env: Env) -> None:
    event = junction_event("heartrate", "jn-stranger", [junction_sample(START, 64, "bpm")])
    body = body_of(event)
    env.dlq.failure = KafkaUnavailable("Kafka did not acknowledge within 5 s")
    response = env.post("junction", body, junction_headers(body))
    assert response.status_code == 503 and "dead-lettered" in response.json()["detail"]


def test_unknown_source_is_404_naming_it(env: Env) -> None:
    response = env.post("withings", b"{}", {"Content-Type": "application/json"})
    assert response.status_code == 404
    assert "'withings'" in response.json()["detail"]
    assert env.client.get("/v1/webhooks/withings?verify=x").status_code == 404


def test_signed_but_not_json_or_not_the_vendor_shape(env: Env) -> None:
    assert env.post("terra", b"not json", terra_headers(b"not json")).status_code == 400
    body = body_of({"hello": "world"})
    response = env.post("terra", body, terra_headers(body))
    assert response.status_code == 422 and "terra push" in response.json()["detail"]


def test_rate_limit_applies_to_webhook_sources() -> None:
    env = make_env(rate_limits={"junction": "2/minute"})
    event = junction_event("heartrate", "jn-u1", [junction_sample(START, 64, "bpm")])
    body = body_of(event)
    for i in range(2):
        assert env.post("junction", body, junction_headers(body, msg_id=f"m{i}")).status_code == 200
    limited = env.post("junction", body, junction_headers(body, msg_id="m3"))
    assert limited.status_code == 429 and "retry-after" in limited.headers
    # a rate-limited push was not remembered: its retry is not a replay
    assert env.app.state.replay_guard.reserve(
        "junction:" + junction_headers(body, msg_id="m3")["svix-signature"][3:],
        expires_at=time.time() + 300,
        now=time.time(),
    )


# Handshakes ------------------------------------------------------------------------------


def test_fitbit_verify_handshake(env: Env) -> None:
    assert env.client.get("/v1/webhooks/fitbit?verify=fitbit-code-7").status_code == 204
    wrong = env.client.get("/v1/webhooks/fitbit?verify=wrong")
    assert wrong.status_code == 404 and "does not match" in wrong.json()["detail"]
    assert env.client.get("/v1/webhooks/fitbit").status_code == 404


def test_hub_challenge_handshake(env: Env) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "hub-token-42", "hub.challenge": "c-123"}
    ok = env.client.get("/v1/webhooks/acme-push", params=params)
    assert ok.status_code == 200 and ok.json() == {"hub.challenge": "c-123"}
    bad = env.client.get("/v1/webhooks/acme-push", params={**params, "hub.verify_token": "nope"})
    assert bad.status_code == 403 and "does not match" in bad.json()["detail"]
    mode = env.client.get("/v1/webhooks/acme-push", params={**params, "hub.mode": "unsubscribe"})
    assert mode.status_code == 403


def test_source_without_handshake(env: Env) -> None:
    response = env.client.get("/v1/webhooks/terra?verify=x")
    assert response.status_code == 404 and "no verification handshake" in response.json()["detail"]


def test_webhook_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PGHD_INGEST_WEBHOOKS",
        '{"terra": {"kind": "terra", "secret": "s3cret-terra"},'
        ' "junction": {"kind": "junction", "secret": ["whsec_QUJDREVGR0hJSktMTU5PUA=="]}}',
    )
    settings = IngestSettings()
    assert settings.webhooks["terra"].keys() == [b"s3cret-terra"]
    assert settings.webhooks["junction"].keys() == [b"ABCDEFGHIJKLMNOP"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "junction", "secret": "whsec_not base64!"}, "whsec_"),
        ({"kind": "generic", "secret": "long-enough-1", "handshake": "hub"}, "verify_token"),
        ({"kind": "terra"}, "secret"),
        ({"kind": "nope", "secret": "long-enough-1"}, "kind"),
    ],
)
def test_bad_webhook_settings_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IngestSettings(webhooks={"x": config})
