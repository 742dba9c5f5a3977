"""POST /v1/measurements: auth, conversion, per-item errors, limits, Kafka failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from pghd import wire
from pghd.contracts import Measurement
from pghd.service.producer import KafkaUnavailable
from tests.clock import ANCHOR
from tests.unit.ingest.conftest import MAX_BATCH, MAX_BODY, SOURCE, RecordingGateway, reading

URL = "/v1/measurements"
PROBLEM = "application/problem+json"


def produced(gateway: RecordingGateway) -> list[Measurement]:
    return [wire.decode(Measurement, value) for _, value in gateway.records]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_missing_or_unknown_key_is_401_problem(
    client: TestClient, gateway: RecordingGateway, headers: dict[str, str]
) -> None:
    client.headers.pop("X-API-Key")
    response = client.post(URL, json=reading(), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 401
    assert gateway.calls == 0


def test_no_configured_keys_refuses_everything(gateway: RecordingGateway) -> None:
    from ingest.app import create_app
    from ingest.deps import get_gateway
    from ingest.settings import IngestSettings

    app = create_app(IngestSettings(api_keys={}))
    app.dependency_overrides[get_gateway] = lambda: gateway
    response = TestClient(app).post(URL, json=reading(), headers={"X-API-Key": ""})
    assert response.status_code == 401
    assert gateway.calls == 0


def test_single_fahrenheit_reading_is_produced_in_celsius(
    client: TestClient, gateway: RecordingGateway
) -> None:
    body = reading(metric="body_temperature", value=100.4, unit="[degF]", device_id="watch-42")
    response = client.post(URL, json=body)

    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["rejected"] == 0
    [item] = result["items"]
    assert item["index"] == 0 and item["status"] == "accepted"
    key, value = gateway.records[0]
    assert key == b"patient-001"
    payload = orjson.loads(value)
    assert payload["unit"] == "Cel"
    assert payload["value"] == pytest.approx(38.0)
    assert payload["event_id"] == item["event_id"]
    assert payload["source"] == {"vendor": SOURCE, "device_id": "watch-42"}
    assert payload["schema_version"] == 1
    assert response.headers["X-Request-ID"]


def test_glucose_mmol_is_produced_in_mg_dl(client: TestClient, gateway: RecordingGateway) -> None:
    response = client.post(
        URL, json=[reading(metric="blood_glucose", value=5.4, unit="mmol/L", event_id="g-1")]
    )
    assert response.status_code == 202, response.text
    [measurement] = produced(gateway)
    assert measurement.unit == "mg/dL"
    assert measurement.value == pytest.approx(5.4 * 18.016, abs=1e-3)
    assert measurement.event_id == "g-1"


def test_mixed_batch_produces_good_items_and_reports_bad_ones(
    client: TestClient, gateway: RecordingGateway
) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    batch = [
        reading(event_id="ok-0"),
        reading(value=900),  # outside the possible heart-rate range
        reading(unit="furlongs"),
        reading(metric="blood_pressure", value=None, systolic=120, diastolic=80, unit="mmHg"),
        reading(value="fast", effective_time=future, extra=1),
    ]
    response = client.post(URL, json=batch)

    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 3)
    statuses = [(i["index"], i["status"]) for i in result["items"]]
    assert statuses == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "accepted"),
        (4, "rejected"),
    ]
    errors = {i["index"]: i["errors"] for i in result["items"] if i["status"] == "rejected"}
    assert errors[1][0]["pointer"] == "/1/value"
    assert errors[1][0]["field"] == "value"
    assert "possible range" in errors[1][0]["detail"]
    assert errors[2][0]["pointer"] == "/2/unit"
    assert {e["pointer"] for e in errors[4]} == {"/4/value", "/4/extra"}

    measurements = produced(gateway)
    assert len(measurements) == 2
    assert measurements[0].event_id == "ok-0"
    assert measurements[1].components == {"systolic": 120.0, "diastolic": 80.0}
    assert measurements[1].event_id == result["items"][3]["event_id"]


def test_future_reading_names_effective_time(client: TestClient, gateway: RecordingGateway) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = client.post(URL, json=[reading(), reading(effective_time=future)])
    assert response.status_code == 202
    [err] = response.json()["items"][1]["errors"]
    assert err["pointer"] == "/1/effective_time"


def test_steps_over_an_interval_land_with_its_end(
    client: TestClient, gateway: RecordingGateway
) -> None:
    start = ANCHOR - timedelta(hours=2)
    end = start + timedelta(minutes=15)
    body = reading(
        metric="steps",
        value=1312,
        unit="{steps}",
        effective_time=start.isoformat(),
        effective_end=end.isoformat(),
    )
    response = client.post(URL, json=body)
    assert response.status_code == 202, response.text
    [measurement] = produced(gateway)
    assert (measurement.effective_time, measurement.effective_end) == (start, end)
    on_the_wire = orjson.loads(gateway.records[0][1])["effective_end"]
    assert datetime.fromisoformat(on_the_wire) == end


def test_an_end_on_an_instant_metric_is_422_at_effective_end(
    client: TestClient, gateway: RecordingGateway
) -> None:
    end = (ANCHOR - timedelta(minutes=30)).isoformat()
    response = client.post(URL, json=reading(effective_end=end))  # heart_rate
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert (error["pointer"], error["field"]) == ("/effective_end", "effective_end")
    assert "heart_rate is measured at an instant" in error["detail"]
    assert gateway.calls == 0


def test_all_bad_is_422_problem_with_item_errors(
    client: TestClient, gateway: RecordingGateway
) -> None:
    response = client.post(URL, json=[reading(unit="furlongs"), 42])

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert set(problem) >= {"type", "title", "status", "detail", "errors"}
    assert problem["status"] == 422
    pointers = [e["pointer"] for e in problem["errors"]]
    assert pointers == ["/0/unit", "/1"]
    assert problem["errors"][1]["field"] is None
    assert gateway.calls == 0


def test_single_bad_object_points_into_the_object(
    client: TestClient, gateway: RecordingGateway
) -> None:
    response = client.post(URL, json=reading(metric="blood_pressure", unit="mmHg"))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["pointer"] == ""
    assert "systolic" in error["detail"]


def test_batch_over_the_limit_is_413(client: TestClient, gateway: RecordingGateway) -> None:
    response = client.post(URL, json=[reading()] * (MAX_BATCH + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert f"limit is {MAX_BATCH}" in response.json()["detail"]
    assert gateway.calls == 0


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null"])
def test_empty_batch_or_non_object_is_422(client: TestClient, body: bytes) -> None:
    response = client.post(URL, content=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_body_too_large_is_413(client: TestClient, gateway: RecordingGateway) -> None:
    response = client.post(URL, content=b" " * (MAX_BODY + 1))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_body_too_large_without_content_length_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 512 + 2):
            yield b" " * 512

    response = client.post(URL, content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1,"])
def test_malformed_json_is_400_problem(
    client: TestClient, gateway: RecordingGateway, body: bytes
) -> None:
    response = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("malformed-json")
    assert gateway.calls == 0


def test_kafka_unavailable_is_503_with_retry_after(
    client: TestClient, gateway: RecordingGateway
) -> None:
    gateway.failure = KafkaUnavailable("Kafka did not acknowledge within 5 s")
    response = client.post(URL, json=[reading(), reading(unit="furlongs")])

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["Retry-After"] == "7"
    body = response.json()
    assert "accepted" not in body and "items" not in body
    assert gateway.calls == 1 and gateway.records == []


def test_accepted_and_rejected_readings_are_counted(
    client: TestClient, gateway: RecordingGateway
) -> None:
    client.post(
        URL, json=[reading(), reading(metric="spo2", value=97, unit="%"), reading(unit="x")]
    )
    text = client.get("/metrics").text
    assert 'readings_accepted_total{metric="heart_rate"} 1.0' in text
    assert 'readings_accepted_total{metric="spo2"} 1.0' in text
    assert 'readings_rejected_total{reason="unit"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/v1/measurements",status="202"} 1.0' in text
    assert 'kafka_produce_seconds_count{outcome="ok"} 1.0' in text
