"""Signed vendor webhooks on real servers: HTTP -> ingest -> Kafka -> processors -> InfluxDB.

Patients are enrolled, linked to their Terra and Junction accounts and given consent through
ingest's own patients API; the pushes are signed as the vendors sign them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from deploy.local.harness import Pipeline, new_patient, running_pipeline
from deploy.local.influxdb import InfluxServer
from pghd import topics, wire
from pghd.contracts import DeadLetter
from pghd.envelope import decode_readings
from tests.clock import ANCHOR
from tests.integration.sync import settled_vitals
from tests.webhook_payloads import (
    body_of,
    junction_event,
    junction_headers,
    junction_sample,
    terra_body,
    terra_headers,
    webhook_config,
)

TERRA_METRICS = [
    "heart_rate",
    "hrv_sdnn",
    "spo2",
    "body_temperature",
    "blood_pressure",
    "blood_glucose",
    "weight",
    "resting_heart_rate",
]


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("webhooks")
    env = {**stack_env, "PGHD_INGEST_WEBHOOKS": json.dumps(webhook_config())}
    with running_pipeline(
        stack_env=env, influx=influx, workdir=workdir, services=("ingest", "processors")
    ) as running:
        yield running


def enroll(pipeline: Pipeline, patient: str, metrics: list[str], **links: str) -> None:
    """Enroll ``patient`` with consent to ``metrics`` and link ``source=account`` pairs."""
    body = {
        "patient_id": patient,
        "consents": metrics,
        "links": [{"source": source, "account": account} for source, account in links.items()],
    }
    response = pipeline.admin("POST", "/v1/patients", body)
    assert response.status_code == 201, response.text


def push(pipeline: Pipeline, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{pipeline.ingest_url}/v1/webhooks/{source}", content=body, headers=headers, timeout=30
    )


def records(bootstrap: str, topic: str, key: str) -> list[bytes]:
    """Every record of ``topic`` keyed ``key``, read from the beginning to the current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found: list[bytes] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(p) < ends[p] for p in parts):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                found += [r.value for r in batch if r.key == key.encode()]
        return found
    finally:
        consumer.close()


def channels(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {str(r["channel"]): float(r["value"]) for r in rows}


def test_signed_terra_push_lands_in_influxdb(pipeline: Pipeline) -> None:
    patient, account = new_patient("terra"), f"terra-{uuid.uuid4()}"
    enroll(pipeline, patient, TERRA_METRICS, terra=account)
    start = ANCHOR - timedelta(hours=3)
    body = body_of(terra_body(account, start))

    response = push(pipeline, "terra", body, terra_headers(body))

    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (9, 0)
    rows = pipeline.wait_vitals(patient, 10)
    assert channels(rows) == {
        "heart_rate": 75,  # two samples; the later one wins in this dict
        "hrv_sdnn": 48.5,
        "spo2": 97,
        "body_temperature": 36.8,
        "blood_pressure.systolic": 128,
        "blood_pressure.diastolic": 84,
        "blood_glucose": 104,
        "weight": 81.2,
        "resting_heart_rate": 58,
    }
    assert sorted(r["value"] for r in rows if r["channel"] == "heart_rate") == [72, 75]
    assert {r["source"] for r in rows} == {"terra"}


def test_signed_junction_pushes_land_in_influxdb(pipeline: Pipeline) -> None:
    patient, account = new_patient("junction"), str(uuid.uuid4())
    enroll(pipeline, patient, ["heart_rate", "blood_glucose"], junction=account)
    when = ANCHOR - timedelta(hours=1)
    heart = body_of(junction_event("heartrate", account, [junction_sample(when, 64, "bpm")]))
    glucose = body_of(
        junction_event(
            "glucose",
            account,
            [junction_sample(when, 5.5, "mmol/L")],
            provider="dexcom",
            source_type="automatic",
        )
    )

    for i, body in enumerate((heart, glucose)):
        response = push(pipeline, "junction", body, junction_headers(body, msg_id=f"msg_{i}"))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1

    rows = pipeline.wait_vitals(patient, 2)
    assert channels(rows) == {"heart_rate": 64, "blood_glucose": pytest.approx(99.088)}
    assert {r["source"] for r in rows} == {"junction"}


def test_refused_pushes_store_nothing(pipeline: Pipeline) -> None:
    patient, account = new_patient("refused"), f"terra-{uuid.uuid4()}"
    enroll(pipeline, patient, TERRA_METRICS, terra=account)
    start = ANCHOR - timedelta(hours=5)
    body = body_of(terra_body(account, start))

    bad = push(pipeline, "terra", body, terra_headers(body, secret="not-the-terra-secret"))
    assert bad.status_code == 401, bad.text
    assert "does not match" in bad.json()["detail"]

    stale = push(pipeline, "terra", body, terra_headers(body, at=int(time.time()) - 3600))
    assert stale.status_code == 401, stale.text
    assert (
        bad.headers["content-type"] == stale.headers["content-type"] == "application/problem+json"
    )
    assert re.search(r"^stale signature: .* 360[0-2] s old", stale.json()["detail"])

    unknown = push(pipeline, "withings", body, terra_headers(body))
    assert unknown.status_code == 404, unknown.text
    assert "'withings'" in unknown.json()["detail"]

    assert records(pipeline.kafka_bootstrap, topics.MEASUREMENTS, patient) == []

    # One good push, then its exact replay: the replay is refused and produces nothing.
    headers = terra_headers(body)
    assert push(pipeline, "terra", body, headers).status_code == 200
    replay = push(pipeline, "terra", body, headers)
    assert replay.status_code == 409, replay.text
    assert "replayed signature" in replay.json()["detail"]
    produced = [
        m
        for value in records(pipeline.kafka_bootstrap, topics.MEASUREMENTS, patient)
        for m in decode_readings(value)
    ]
    assert len(produced) == 9, "the replay must not reach Kafka"
    assert len({m.event_id for m in produced}) == 9

    rows = settled_vitals(pipeline, patient)  # a sentinel stored after everything posted
    assert len(rows) == 10


def test_unknown_vendor_account_goes_to_the_dlq_with_its_reason(pipeline: Pipeline) -> None:
    stranger = f"jn-stranger-{uuid.uuid4()}"
    when = ANCHOR - timedelta(minutes=30)
    body = body_of(junction_event("heartrate", stranger, [junction_sample(when, 70, "bpm")]))

    response = push(pipeline, "junction", body, junction_headers(body, msg_id="msg_dlq"))

    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (0, 1)
    (value,) = records(pipeline.kafka_bootstrap, topics.DLQ, stranger)
    letter = wire.decode(DeadLetter, value)
    assert letter.stage == "ingest.webhooks"
    assert letter.key == stranger
    assert letter.reason.startswith("unknown-account:")
    assert f"junction account '{stranger}' is not linked to an enrolled patient" in letter.reason
    payload = json.loads(letter.payload)
    assert (payload["source"], payload["account"]) == ("junction", stranger)
    assert payload["reading"]["metric"] == "heart_rate"
    assert "value" not in payload["reading"], "no values of someone nobody may store"
