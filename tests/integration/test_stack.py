"""The local stack against real servers: topics as the spec says, InfluxDB write/query,
Kafka restart on the same port, and ``pghd dev`` up/status/down leaving nothing behind."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from deploy.local import stack
from deploy.local.influxdb import InfluxServer
from deploy.local.influxdb2 import Influx2Server
from deploy.local.kafka import KafkaServer, kafka_healthy
from deploy.local.process import find_processes, pid_alive, wait_until
from deploy.local.topics import DEFAULT_SPEC, apply_topics
from pghd.topics import ALERTS, MEASUREMENTS, TopicSpec, load_spec
from tests.clock import ANCHOR


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[Any]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-stack")
    yield client
    client.close()


def _describe(admin: Any, name: str) -> tuple[int, dict[str, str]]:
    [topic] = admin.describe_topics([name])
    resource = ConfigResource(ConfigResourceType.TOPIC, name)
    configs = admin.describe_configs([resource], config_filter="all")["topic"][name]
    return len(topic["partitions"]), {k: str(v["value"]) for k, v in configs.items()}


def test_topics_match_the_spec(admin: Any) -> None:
    specs = load_spec(DEFAULT_SPEC)
    assert {s.name for s in specs} <= set(admin.list_topics())
    for spec in specs:
        partitions, configs = _describe(admin, spec.name)
        assert partitions == spec.partitions, spec.name
        for key, value in spec.config.items():
            assert configs[key] == value, (spec.name, key)
    assert _describe(admin, ALERTS)[1]["cleanup.policy"] == "compact"


def test_apply_again_changes_nothing(kafka_bootstrap: str) -> None:
    reports = apply_topics(load_spec(DEFAULT_SPEC), bootstrap=kafka_bootstrap)
    assert {r.action for r in reports} == {"unchanged"}


def test_apply_grows_partitions_sets_configs_and_never_shrinks(
    admin: Any, kafka_bootstrap: str
) -> None:
    name = f"test.grow.{uuid.uuid4().hex[:8]}"
    [created] = apply_topics(
        [TopicSpec(name, 2, {"retention.ms": "3600000"})], bootstrap=kafka_bootstrap
    )
    assert created.action == "created"
    partitions, configs = _describe(admin, name)
    assert (partitions, configs["retention.ms"]) == (2, "3600000")

    [grown] = apply_topics(
        [TopicSpec(name, 4, {"retention.ms": "7200000", "cleanup.policy": "compact"})],
        bootstrap=kafka_bootstrap,
    )
    assert grown.action == "updated"
    partitions, configs = _describe(admin, name)
    assert partitions == 4
    assert configs["retention.ms"] == "7200000"
    assert configs["cleanup.policy"] == "compact"

    [kept] = apply_topics(
        [TopicSpec(name, 1, {"retention.ms": "7200000"})], bootstrap=kafka_bootstrap
    )
    assert kept.action == "unchanged"
    assert "never decreased" in kept.detail
    assert _describe(admin, name)[0] == 4


def test_a_point_written_is_queryable_with_flux(influx: InfluxServer) -> None:
    patient = f"p-{uuid.uuid4().hex[:8]}"
    point = {
        "measurement": "vitals",
        "tags": {"patient_id": patient, "metric": "heart_rate", "source": "test"},
        "fields": {"value": 72.5},
        "time": ANCHOR,
    }
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=influx.bucket, record=point)
    start, stop = (
        (ANCHOR + timedelta(minutes=m)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for m in (-1, 1)
    )
    rows = influx.query(
        f'from(bucket: "{influx.bucket}") |> range(start: {start}, stop: {stop})'
        f' |> filter(fn: (r) => r._measurement == "vitals" and r.patient_id == "{patient}")'
    )
    assert [(r["metric"], r["_field"], r["_value"]) for r in rows] == [
        ("heart_rate", "value", 72.5)
    ]


def test_create_database_gives_a_usable_bucket(influx: InfluxServer) -> None:
    bucket = influx.create_database("scratch")
    assert bucket == "scratch/autogen"
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record="m v=1i")
    rows = influx.query(f'from(bucket: "{bucket}") |> range(start: -1h)')
    assert [r["_value"] for r in rows] == [1]


def test_stack_env_names_both_servers(stack_env: dict[str, str], influx: InfluxServer) -> None:
    assert stack_env["PGHD_KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")
    assert stack_env["PGHD_INFLUX_URL"] == influx.url
    assert stack_env["PGHD_INFLUX_BUCKET"] == "pghd/autogen"
    assert {"PGHD_INFLUX_TOKEN", "PGHD_INFLUX_ORG"} <= set(stack_env)


def test_kafka_restarts_on_the_same_port_with_its_topics_and_data(
    kafka_server: KafkaServer,
) -> None:
    bootstrap = kafka_server.bootstrap
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = producer.send(MEASUREMENTS, key=b"patient-1", value=b"reading").get(timeout=30)
    producer.close()

    kafka_server.stop()
    assert not kafka_healthy(bootstrap, timeout=2.0)
    kafka_server.start()
    assert kafka_server.bootstrap == bootstrap

    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        assert _describe(admin, MEASUREMENTS)[0] == 8
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=10_000)
    partition = TopicPartition(MEASUREMENTS, sent.partition)
    consumer.assign([partition])
    consumer.seek(partition, sent.offset)
    record = next(iter(consumer))
    consumer.close()
    assert (record.key, record.value) == (b"patient-1", b"reading")


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """A repository root of its own that shares the installed Kafka jars and influxd."""
    root = tmp_path / "repo"
    (root / ".local").mkdir(parents=True)
    shutil.copy(stack.StackPaths.for_root().root / "pyproject.toml", root)
    for cached in ("kafka", "influxdb"):  # reuse the installs instead of fetching again
        (root / ".local" / cached).symlink_to(stack.StackPaths.for_root().local / cached)
    return root


def test_down_stops_services_even_when_the_state_file_is_lost(scratch_root: Path) -> None:
    # The grandchild leaves the service's process group: only its environment marks it.
    argv = ["bash", "-c", "setsid sleep 600 & wait"]
    service = stack.start_service("stray", argv, root=scratch_root)
    again = stack.start_service("stray", ["sleep", "1"], root=scratch_root)
    assert again.pid == service.pid  # already running: left as it is
    marker = f"PGHD_LOCAL_STACK={stack.StackPaths.for_root(scratch_root).run}"
    wait_until(lambda: len(find_processes(env=marker)) == 2, timeout=5, what="both up")
    stack.StackPaths.for_root(scratch_root).state_file.unlink()
    stack.down(root=scratch_root)
    assert not pid_alive(service.pid)
    assert find_processes(env=marker) == []


def test_dev_up_status_env_down_leave_nothing_behind(scratch_root: Path) -> None:
    root = scratch_root
    busy = _busy_port()  # a taken preferred port must be replaced by a free one
    cli = [sys.executable, "-m", "pghd.cli", "dev"]
    try:
        state = stack.up(root=root, kafka_port=busy.getsockname()[1], influx_port=0)
        assert state.env["PGHD_KAFKA_BOOTSTRAP"] != f"127.0.0.1:{busy.getsockname()[1]}"
        again = stack.up(root=root)
        assert again.processes["kafka"].pid == state.processes["kafka"].pid
        service = stack.start_service("sleeper", ["sleep", "600"], root=root)

        shown = subprocess.run(
            [*cli, "status", "--root", str(root)], capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0, shown.stderr
        assert [line.split()[0] for line in shown.stdout.splitlines()[1:]] == [
            "kafka",
            "influxdb",
            "sleeper",
        ]
        exports = subprocess.run(
            [*cli, "env", "--root", str(root)], capture_output=True, text=True, check=True
        ).stdout
        assert f"export PGHD_KAFKA_BOOTSTRAP={state.env['PGHD_KAFKA_BOOTSTRAP']}" in exports
        # The local stack is plaintext on loopback, and says so (docs/security.md, "Kafka").
        assert "export PGHD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in exports
        pids = [rec.pid for rec in state.processes.values()] + [service.pid]
    finally:
        busy.close()
        stack.down(root=root)
    assert not any(pid_alive(pid) for pid in pids)
    assert find_processes(cmdline=str(root)) == []
    assert stack.status(root=root) == []


def test_influxdb2_is_set_up_like_the_image_and_keeps_data_across_a_restart(
    influx2: Influx2Server,
) -> None:
    """The 2.7 server the tests run: org, bucket and token as compose's DOCKER_INFLUXDB_INIT_*
    make them; a bucket made by create_database takes writes; set_retention changes its
    rule; a clean stop and start on the same data keeps the points and skips the setup."""
    assert influx2.env()["PGHD_INFLUX_BUCKET"] == "pghd"
    bucket = influx2.create_database("scratch2")
    assert bucket == "scratch2" and influx2.create_database("scratch2") == "scratch2"
    with InfluxDBClient(url=influx2.url, token=influx2.token, org=influx2.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record="m v=1i")
    influx2.set_retention(90 * 86400, bucket=bucket)
    [found] = influx2.api("GET", f"/api/v2/buckets?org=pghd&name={bucket}")["buckets"]
    assert found["retentionRules"][0]["everySeconds"] == 90 * 86400
    influx2.stop()
    influx2.start()
    rows = influx2.query(f'from(bucket: "{bucket}") |> range(start: -1h)')
    assert [r["_value"] for r in rows] == [1]
    # A token-less request is refused: the API is not open.
    with pytest.raises(RuntimeError, match="HTTP 401"):
        influx2.api("GET", "/api/v2/buckets", auth=False)
