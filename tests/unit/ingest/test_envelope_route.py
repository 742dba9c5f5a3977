"""The default shape on the topic: one record per patient per request (pghd.envelope)."""

from __future__ import annotations

import orjson
from fastapi.testclient import TestClient

from pghd.envelope import ENVELOPE_VERSION, decode_readings
from tests.unit.ingest.conftest import RecordingGateway, reading


def test_a_request_for_two_patients_is_two_records_holding_their_readings_in_order(
    client: TestClient, gateway: RecordingGateway
) -> None:
    gateway.envelope = "v2"
    body = [
        reading(patient_id=patient, value=60 + i, event_id=f"{patient}-{i}")
        for i, patient in enumerate(["p-a", "p-b", "p-a", "p-a", "p-b"])
    ]
    response = client.post("/v1/measurements", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 5
    assert [key for key, _ in gateway.records] == [b"p-a", b"p-b"]
    by_key = {key: decode_readings(value) for key, value in gateway.records}
    assert [m.event_id for m in by_key[b"p-a"]] == ["p-a-0", "p-a-2", "p-a-3"]
    assert [m.event_id for m in by_key[b"p-b"]] == ["p-b-1", "p-b-4"]
    record = orjson.loads(gateway.records[0][1])
    assert record["schema_version"] == ENVELOPE_VERSION and record["patient_id"] == "p-a"


def test_refused_items_stay_out_of_the_envelope(
    client: TestClient, gateway: RecordingGateway
) -> None:
    gateway.envelope = "v2"
    body = [reading(value=61, event_id="ok"), reading(value=-5, event_id="bad")]
    response = client.post("/v1/measurements", json=body)
    assert response.status_code == 202, response.text
    ((_, value),) = gateway.records
    assert [m.event_id for m in decode_readings(value)] == ["ok"]
