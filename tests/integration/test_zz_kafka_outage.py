"""A Kafka outage: ingest refuses with 503 + Retry-After, and loses nothing it accepted.

Named ``zz`` so it runs after the other integration modules: it stops the session's broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from deploy.local.harness import Pipeline, new_patient, reading, running_pipeline
from deploy.local.influxdb import InfluxServer
from deploy.local.kafka import KafkaServer
from tests.clock import ANCHOR
from tests.integration.sync import settled_vitals


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("outage")
    with running_pipeline(stack_env=stack_env, influx=influx, workdir=workdir) as running:
        yield running


def test_kafka_down_answers_503_and_every_accepted_reading_lands(
    pipeline: Pipeline, kafka_server: KafkaServer
) -> None:
    patient = new_patient("outage")
    start = ANCHOR - timedelta(hours=2)
    accepted: list[float] = []

    def post(value: float) -> int:
        response = pipeline.post(reading(patient, value, start + timedelta(minutes=value)))
        if response.status_code == 202:
            accepted.append(value)
        return response.status_code

    assert post(60) == 202
    assert post(61) == 202

    kafka_server.stop()
    statuses = []
    began = time.monotonic()
    for value in (62, 63, 64):
        response = pipeline.post(reading(patient, value, start + timedelta(minutes=value)))
        statuses.append(response.status_code)
        if response.status_code == 202:
            accepted.append(value)
        else:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            assert response.headers["content-type"].startswith("application/problem+json")
    assert statuses == [503, 503, 503]
    assert time.monotonic() - began < 30, "503 must come quickly, not after long timeouts"
    kafka_server.start()
    # Clients retry after Retry-After; once Kafka is back, ingest accepts again by itself.
    deadline = time.monotonic() + 120
    value = 65.0
    while time.monotonic() < deadline and len(accepted) < 5:
        if post(value) == 202:
            value += 1
        else:
            time.sleep(1)
    assert len(accepted) == 5, f"ingest did not recover after Kafka came back: {accepted}"

    pipeline.wait_vitals(patient, len(accepted), timeout=180)
    rows = settled_vitals(pipeline, patient)  # refused ones would have landed by now too
    assert sorted(r["value"] for r in rows) == sorted(accepted)
