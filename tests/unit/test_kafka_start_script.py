"""deploy/kafka/start-broker.sh, Compose's Kafka entry point, run with stand-ins for Kafka's
scripts (no Docker here): it formats the storage once, with the broker's and the admin's
SCRAM users, writes the admin's client settings for the health check readable by its owner
only, and hands over to the broker with the checked configuration.

(``deploy/kafka/make-certs.sh`` and the configuration itself run on a real broker in
tests/integration/test_kafka_security.py.)
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from deploy.local.kafka import read_properties

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka" / "start-broker.sh"

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "{calls}"
if [ "$1" = random-uuid ]; then echo the-cluster-id; fi
if [ "$1" = format ]; then touch "{data}/meta.properties"; fi
"""


@pytest.fixture
def kafka_home(tmp_path: Path) -> Path:
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True)
    data = tmp_path / "data"
    data.mkdir()
    calls = tmp_path / "calls"
    for name in ("kafka-storage.sh", "kafka-server-start.sh"):
        stub = home / "bin" / name
        stub.write_text(STUB.format(calls=calls, data=data))
        stub.chmod(0o755)
    (tmp_path / "server.properties").write_text(f"node.id=1\nlog.dirs={data}\n")
    return home


def _start(tmp_path: Path, home: Path) -> list[str]:
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_HOME": str(home),
        "PGHD_KAFKA_CONFIG": str(tmp_path / "server.properties"),
        "PGHD_KAFKA_ADMIN_CLIENT_CONFIG": str(tmp_path / "admin-client.properties"),
        "PGHD_KAFKA_CA_FILE": "/etc/pghd/kafka-ca/ca.crt",
        "PGHD_KAFKA_BROKER_PASSWORD": "broker-pw",
        "PGHD_KAFKA_ADMIN_PASSWORD": "admin-pw",
        "PGHD_KAFKA_SSL_PASSWORD": "stores-pw",
    }
    subprocess.run(["sh", str(SCRIPT)], env=env, check=True, capture_output=True, text=True)
    return (tmp_path / "calls").read_text().splitlines()


def test_the_first_start_formats_with_the_scram_users_then_runs_the_broker(
    tmp_path: Path, kafka_home: Path
) -> None:
    config = tmp_path / "server.properties"
    calls = _start(tmp_path, kafka_home)
    assert calls == [
        "kafka-storage.sh random-uuid",
        f"kafka-storage.sh format --config {config} --cluster-id the-cluster-id"
        " --add-scram SCRAM-SHA-512=[name=broker,password=broker-pw]"
        " --add-scram SCRAM-SHA-512=[name=admin,password=admin-pw]",
        f"kafka-server-start.sh {config}",
    ]
    client = tmp_path / "admin-client.properties"
    assert stat.S_IMODE(client.stat().st_mode) == 0o600
    settings = read_properties(client)
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert 'username="admin" password="admin-pw"' in settings["sasl.jaas.config"]
    assert settings["ssl.truststore.location"] == "/etc/pghd/kafka-ca/ca.crt"


def test_a_restart_keeps_the_storage(tmp_path: Path, kafka_home: Path) -> None:
    _start(tmp_path, kafka_home)
    (tmp_path / "calls").unlink()
    assert _start(tmp_path, kafka_home) == [f"kafka-server-start.sh {tmp_path}/server.properties"]


def test_a_missing_password_stops_the_start(tmp_path: Path, kafka_home: Path) -> None:
    env = {"PATH": os.environ["PATH"], "KAFKA_HOME": str(kafka_home)}
    result = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PGHD_KAFKA_BROKER_PASSWORD" in result.stderr
    assert not (tmp_path / "calls").exists()
