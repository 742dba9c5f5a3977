"""The processors' and alerts' Prometheus metrics, scraped over HTTP from running workers.

The workers run on the session's real Kafka and InfluxDB (``running_pipeline``); readings
go in through ingest, bad messages straight onto the topics, and InfluxDB is stopped for a
while. Each counter must move by exactly what was done, and the lag gauge must show the
readings the stalled worker could not commit, then drop back to zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.harness import (
    Pipeline,
    heart_rate_series,
    new_patient,
    reading,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.topics import DEFAULT_SPEC
from pghd import topics
from pghd.topics import load_spec
from tests.clock import ANCHOR
from tests.integration.sync import caught_up

WARMUP = 10
NORMAL = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir: Path = tmp_path_factory.mktemp("metrics")
    env = {
        **stack_env,
        "PGHD_PROCESSORS_METRICS_LAG_INTERVAL_S": "0.5",
        "PGHD_ALERTS_METRICS_LAG_INTERVAL_S": "0.5",
        "PGHD_PROCESSORS_INFLUX_MAX_BACKOFF_S": "2",
    }
    with running_pipeline(stack_env=env, influx=influx, workdir=workdir, warmup=WARMUP) as running:
        yield running


def scrape(pipeline: Pipeline, service: str) -> Samples:
    """Every sample of the service's ``/metrics`` page, keyed by name and labels."""
    port = pipeline.env[f"PGHD_{service.upper()}_WEB_PORT"]
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def group_lag(samples: Samples, group: str, topic: str) -> float:
    return total(samples, "kafka_consumer_lag", group=group, topic=topic)


def produce_raw(pipeline: Pipeline, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=pipeline.kafka_bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def test_processors_and_alerts_count_what_they_did(pipeline: Pipeline) -> None:
    before_p, before_a = scrape(pipeline, "processors"), scrape(pipeline, "alerts")
    patient = new_patient("metrics")
    # A lone spike of a watch's heart rate is a motion artefact: the second in a row counts.
    series = heart_rate_series(
        patient, [*NORMAL, 165, 166, 71], start=ANCHOR + timedelta(minutes=10)
    )
    assert pipeline.post(series).status_code == 202
    pipeline.wait_vitals(patient, len(series))
    processors_group = pipeline.env["PGHD_PROCESSORS_APP_ID"]
    alerts_group = pipeline.env["PGHD_ALERTS_APP_ID"]
    caught_up(pipeline.kafka_bootstrap, processors_group)  # every anomaly is out
    anomalies = pipeline.anomalies(patient, expect=1, settle=0.5)
    assert anomalies, "the extreme readings made no anomaly"

    # The same readings again (same derived event ids): dropped downstream as duplicates.
    assert pipeline.post(series[:3]).status_code == 202
    # Dead letters: an undecodable value and a tombstone for the processors, garbage for alerts.
    key = patient.encode()
    produce_raw(pipeline, topics.MEASUREMENTS, [(key, b"{not json"), (key, None)])
    produce_raw(pipeline, topics.ANOMALIES, [(key, b"garbage")])

    def settled() -> tuple[Samples, Samples] | None:
        p, a = scrape(pipeline, "processors"), scrape(pipeline, "alerts")
        done = (
            delta(p, before_p, "duplicates_dropped_total", where="seen") >= 3
            and delta(p, before_p, "dead_letters_total") >= 2
            and delta(a, before_a, "dead_letters_total") >= 1
            and delta(a, before_a, "notifications_total") >= 1
        )
        return (p, a) if done else None

    wait_for(settled, timeout=60, what="the counters to move", diagnostics=pipeline.diagnostics)
    # Then exact counts, once both workers have handled everything (nothing is still to come).
    caught_up(pipeline.kafka_bootstrap, processors_group)
    caught_up(pipeline.kafka_bootstrap, alerts_group, (topics.ANOMALIES, topics.ALERT_COMMANDS))
    after_p, after_a = scrape(pipeline, "processors"), scrape(pipeline, "alerts")
    assert delta(after_p, before_p, "readings_judged_total", metric="heart_rate") == len(series)
    assert delta(after_p, before_p, "readings_judged_total") == len(series)
    assert delta(after_p, before_p, "duplicates_dropped_total", where="seen") == 3
    assert delta(after_p, before_p, "duplicates_dropped_total", where="batch") == 0
    assert delta(after_p, before_p, "anomalies_emitted_total") == len(anomalies)
    for anomaly in anomalies:
        labels = {"detector": anomaly.detector, "severity": anomaly.severity.value}
        expected = sum(
            1 for a in anomalies if (a.detector, a.severity.value) == tuple(labels.values())
        )
        assert delta(after_p, before_p, "anomalies_emitted_total", **labels) == expected
    assert delta(after_p, before_p, "dead_letters_total", reason="undecodable") == 1
    assert delta(after_p, before_p, "dead_letters_total", reason="tombstone") == 1
    assert delta(after_p, before_p, "dead_letters_total") == 2
    assert delta(after_p, before_p, "influx_write_seconds_count") >= 1
    assert delta(after_p, before_p, "influx_write_failures_total") == 0

    assert delta(after_a, before_a, "anomalies_consumed_total") == len(anomalies) + 1
    assert delta(after_a, before_a, "dead_letters_total", reason="undecodable") == 1
    assert delta(after_a, before_a, "alerts_opened_total") == 1
    first = anomalies[0].severity.value  # an alert opens with its first anomaly's severity
    assert delta(after_a, before_a, "alerts_opened_total", severity=first) == 1
    assert delta(after_a, before_a, "alerts_resolved_total") == 0
    delivered = len(pipeline.sink.messages_about(patient))
    assert delivered >= 1
    assert delta(after_a, before_a, "notifications_total", outcome="success") == delivered
    assert delta(after_a, before_a, "notifications_total", outcome="failure") == 0

    # Lag: one gauge per partition of each input topic, zero once everything is committed.
    partitions_of = {spec.name: spec.partitions for spec in load_spec(DEFAULT_SPEC)}
    for samples, group, topic in (
        (after_p, processors_group, topics.MEASUREMENTS),
        (after_a, alerts_group, topics.ANOMALIES),
        (after_a, alerts_group, topics.ALERT_COMMANDS),
    ):
        partitions = {
            dict(ls)["partition"]
            for (n, ls), _ in samples.items()
            if n == "kafka_consumer_lag" and ("topic", topic) in ls and ("group", group) in ls
        }
        assert len(partitions) == partitions_of[topic], (group, topic, partitions)
    wait_for(
        lambda: group_lag(scrape(pipeline, "alerts"), alerts_group, topics.ANOMALIES) == 0 or None,
        timeout=60,
        what="the alerts group's lag to reach 0",
    )


def test_influx_outage_shows_as_write_failures_and_store_lag(
    pipeline: Pipeline, influx: InfluxServer
) -> None:
    """Judging goes on while InfluxDB is down; the store stage's lag shows the points that
    wait on pghd.points.v1, and falls back to 0 once they are written."""
    group = pipeline.env["PGHD_PROCESSORS_APP_ID"]
    store = f"{group}-store"

    def caught_up() -> bool | None:
        now = scrape(pipeline, "processors")
        judged = group_lag(now, group, topics.MEASUREMENTS) == 0
        return True if judged and group_lag(now, store, topics.POINTS) == 0 else None

    wait_for(caught_up, timeout=60, what="the processors and store groups to catch up")
    before = scrape(pipeline, "processors")
    patient = new_patient("outage")
    influx.stop()
    try:
        when = ANCHOR - timedelta(minutes=5)
        assert pipeline.post([reading(patient, 72, when)]).status_code == 202

        def stalled() -> Samples | None:
            now = scrape(pipeline, "processors")
            failing = delta(now, before, "influx_write_failures_total") >= 1
            judged = delta(now, before, "readings_judged_total") == 1
            waiting = group_lag(now, store, topics.POINTS) >= 1
            return now if failing and judged and waiting else None

        during = wait_for(
            stalled, timeout=60, what="judged, write failures and store lag while InfluxDB is down"
        )
        assert group_lag(during, store, topics.POINTS) == 1
        assert delta(during, before, "store_write_failures_total") >= 1
    finally:
        influx.start()
    pipeline.wait_vitals(patient, 1, timeout=90)

    def recovered() -> Samples | None:
        now = scrape(pipeline, "processors")
        return now if group_lag(now, store, topics.POINTS) == 0 else None

    after = wait_for(recovered, timeout=60, what="the store lag to drop back to 0")
    assert delta(after, before, "influx_write_failures_total") >= 1
    assert delta(after, before, "store_points_written_total") >= 1
