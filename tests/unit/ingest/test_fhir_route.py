"""POST /v1/fhir: answers per document kind, OperationOutcomes, all-or-nothing transactions."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.api.fhir_examples import EXAMPLES
from ingest.app import create_app
from ingest.auth import hash_key
from ingest.deps import get_gateway, get_registry
from ingest.settings import IngestSettings
from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import Measurement, TimePrecision
from pghd.service.producer import KafkaUnavailable
from tests.clock import ANCHOR
from tests.unit.ingest.conftest import API_KEY, SOURCE, RecordingGateway
from tests.unit.ingest.fhir_documents import (
    blood_pressure,
    body_temperature_f,
    bundle,
    heart_rate,
    sat_o2,
)
from tests.unit.ingest.fhir_spec_examples import VITAL_SIGNS, example

URL = "/v1/fhir"
FHIR = "application/fhir+json"


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def app(gateway: RecordingGateway) -> FastAPI:
    settings = IngestSettings(
        api_keys={SOURCE: hash_key(API_KEY)},
        kafka_bootstrap="127.0.0.1:1",
        max_batch=4,
        max_body_bytes=64 * 1024,
        retry_after_s=7,
        consent="off",
    )
    app = create_app(settings)
    app.dependency_overrides[get_gateway] = lambda: gateway
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    yield TestClient(app, headers={"X-API-Key": API_KEY, "Content-Type": FHIR})


def post(client: TestClient, document: Any, **kw: Any) -> Any:
    return client.post(URL, content=orjson.dumps(document), **kw)


def produced(gateway: RecordingGateway) -> list[Measurement]:
    return [wire.decode(Measurement, value) for _, value in gateway.records]


def diagnostics(outcome: dict[str, Any]) -> list[tuple[str, str]]:
    assert outcome["resourceType"] == "OperationOutcome"
    return [
        (i["expression"][0] if "expression" in i else "", i["diagnostics"])
        for i in outcome["issue"]
    ]


def test_single_observation_in_fahrenheit_is_stored_in_celsius(
    client: TestClient, gateway: RecordingGateway
) -> None:
    response = post(client, body_temperature_f(98.6))

    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == FHIR
    [measurement] = produced(gateway)
    assert (measurement.metric, measurement.unit) == (Metric.BODY_TEMPERATURE, "Cel")
    assert measurement.value == pytest.approx(37.0)
    assert measurement.patient_id == "example"
    [issue] = response.json()["issue"]
    assert issue["severity"] == "information"
    assert measurement.event_id in issue["diagnostics"]


def test_application_json_is_taken_too(client: TestClient, gateway: RecordingGateway) -> None:
    response = post(client, heart_rate(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert len(gateway.records) == 1


@pytest.mark.parametrize("kind", ["batch", "collection"])
def test_batch_stores_good_entries_and_answers_one_entry_each(
    client: TestClient, gateway: RecordingGateway, kind: str
) -> None:
    document = bundle(kind, heart_rate(), heart_rate(status="preliminary"), blood_pressure())
    response = post(client, document)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["resourceType"], answer["type"]) == ("Bundle", "batch-response")
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "201 Created"]
    assert diagnostics(answer["entry"][1]["response"]["outcome"]) == [
        (
            "Bundle.entry[1].resource.status",
            "status is 'preliminary': only final, amended, corrected observations are readings",
        )
    ]
    stored = produced(gateway)
    assert [m.metric for m in stored] == [Metric.HEART_RATE, Metric.BLOOD_PRESSURE]
    assert stored[1].components == {"systolic": 107, "diastolic": 60}


def test_the_specifications_vital_signs_examples_are_stored_singly_and_in_a_batch(
    client: TestClient, gateway: RecordingGateway
) -> None:
    """The R4 examples as published (fhir_spec_examples), only subject and date changed:
    three of them give a date alone (1999-07-02, 2012-09-17), SpO2 a time with its offset."""
    day = (ANCHOR - timedelta(days=1)).date()
    documents = [example(name, patient="p-spec", day=day) for name in VITAL_SIGNS]
    for document in documents:
        response = post(client, document)
        assert response.status_code == 201, response.text
    response = post(client, bundle("batch", *documents))
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created"] * 4

    stored = produced(gateway)
    metrics = [Metric.HEART_RATE, Metric.BODY_TEMPERATURE, Metric.BLOOD_PRESSURE, Metric.SPO2]
    assert [m.metric for m in stored] == metrics * 2
    day_precise = [TimePrecision.DAY] * 3 + [None]
    assert [m.effective_precision for m in stored] == day_precise * 2
    assert {m.effective_time.date() for m in stored} == {day}
    same = [m.model_dump(exclude={"received_at"}) for m in stored]
    assert same[:4] == same[4:]  # the same events (ids from the examples' id/identifier)


def test_transaction_with_a_bad_entry_stores_nothing_and_lists_every_issue(
    client: TestClient, gateway: RecordingGateway
) -> None:
    no_unit = sat_o2()
    del no_unit["valueQuantity"]["code"], no_unit["valueQuantity"]["unit"]
    response = post(client, bundle("transaction", heart_rate(), no_unit, heart_rate(value=999)))

    assert response.status_code == 422
    assert response.headers["content-type"] == FHIR
    found = diagnostics(response.json())
    assert [expression for expression, _ in found] == [
        "Bundle.entry[1].resource.valueQuantity.code",
        "Bundle.entry[2].resource.valueQuantity.value",
    ]
    assert "possible range" in found[1][1]
    assert gateway.calls == 0 and gateway.records == []


def test_good_transaction_is_stored_whole(client: TestClient, gateway: RecordingGateway) -> None:
    response = post(client, bundle("transaction", heart_rate(), sat_o2(), blood_pressure()))
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created"] * 3
    assert gateway.calls == 1 and len(gateway.records) == 3


def test_single_bad_observation_is_422_outcome(
    client: TestClient, gateway: RecordingGateway
) -> None:
    doc = heart_rate()
    del doc["subject"]
    response = post(client, doc)
    assert response.status_code == 422
    [issue] = response.json()["issue"]
    assert (issue["severity"], issue["code"], issue["expression"]) == (
        "error",
        "required",
        ["Observation.subject"],
    )
    assert gateway.calls == 0


def test_refused_consent_is_403_entry(app: FastAPI, client: TestClient) -> None:
    class NoConsentFor:
        def patient_for(self, *, source: str, account: str) -> str | None:
            return None

        def refusal(self, *, patient_id: str, metric: Metric) -> str | None:
            return "no consent" if patient_id == "nope" else None

        def source_refusal(self, *, source: str, patient_id: str) -> str | None:
            return None

    app.dependency_overrides[get_registry] = NoConsentFor
    response = post(client, bundle("batch", heart_rate(), heart_rate(patient="nope")))
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "403 Forbidden"]
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "forbidden"


def test_unknown_key_is_401_outcome(client: TestClient, gateway: RecordingGateway) -> None:
    response = post(client, heart_rate(), headers={"X-API-Key": "wrong"})
    assert response.status_code == 401
    assert response.headers["content-type"] == FHIR
    assert response.json()["issue"][0]["code"] == "login"
    assert gateway.calls == 0


def test_kafka_down_is_503_outcome_with_retry_after(
    client: TestClient, gateway: RecordingGateway
) -> None:
    gateway.failure = KafkaUnavailable("Kafka did not acknowledge within 5 s")
    response = post(client, bundle("batch", heart_rate(), sat_o2()))
    assert response.status_code == 503
    assert response.headers["content-type"] == FHIR
    assert response.headers["Retry-After"] == "7"
    [issue] = response.json()["issue"]
    assert (issue["severity"], issue["code"]) == ("fatal", "transient")


def test_more_entries_than_max_batch_is_413(client: TestClient, gateway: RecordingGateway) -> None:
    response = post(client, bundle("batch", *[copy.deepcopy(heart_rate()) for _ in range(5)]))
    assert response.status_code == 413
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry"]
    assert gateway.calls == 0


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b'{"resourceType": "Patient"}', {}, 422),
    ],
)
def test_bad_bodies_are_outcomes(
    client: TestClient, content: bytes, headers: dict[str, str], status: int
) -> None:
    response = client.post(URL, content=content, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == FHIR
    assert response.json()["resourceType"] == "OperationOutcome"


def test_openapi_documents_fhir_bodies_with_examples(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/v1/fhir"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {FHIR, "application/json"}
    assert set(content[FHIR]["examples"]) == {"observation", "batch", "transaction"}
    assert {"200", "201", "422", "503"} <= set(operation["responses"])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_documented_examples_are_stored(
    client: TestClient, gateway: RecordingGateway, name: str
) -> None:
    response = post(client, EXAMPLES[name]["value"])
    assert response.status_code in (200, 201), response.text
    entries = response.json().get("entry", [])
    assert all(e["response"]["status"] == "201 Created" for e in entries)
    assert len(gateway.records) == max(1, len(entries))
