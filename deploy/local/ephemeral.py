"""A throw-away Kafka + InfluxDB on free loopback ports, for benchmarks and checks.

Installs (cached under ``.local``) on first use, starts both servers with their data in
``workdir``, applies the topic spec, and stops both on exit, failures included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deploy.local.influxdb import InfluxServer, ensure_influxd
from deploy.local.influxdb2 import Influx2Server
from deploy.local.kafka import BrokerSecurity, KafkaServer, ensure_kafka_libs
from deploy.local.process import free_port, pick_port
from deploy.local.stack import StackPaths
from deploy.local.topics import DEFAULT_SPEC, apply_topics
from pghd.topics import load_spec

__all__ = [
    "EphemeralStack",
    "ephemeral_stack",
    "influx2_on_free_ports",
    "influx_on_free_ports",
    "kafka_on_free_ports",
]


@dataclass(frozen=True)
class EphemeralStack:
    kafka: KafkaServer
    influx: InfluxServer

    def env(self) -> dict[str, str]:
        """``PGHD_*`` variables pointing services at this stack."""
        return {
            "PGHD_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "PGHD_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            **self.influx.env(),
        }


def kafka_on_free_ports(
    libs: Path, base: Path, *, security: BrokerSecurity | None = None
) -> KafkaServer:
    """A (not yet started) Kafka with its files under ``base``, on free loopback ports
    (plaintext; with ``security``, SASL_SSL as in docker-compose.yml)."""
    port = free_port()
    return KafkaServer(
        libs_dir=libs,
        data_dir=base / "data",
        config_dir=base / "config",
        log_file=base / "kafka.log",
        port=port,
        controller_port=pick_port(None, avoid=[port]),
        die_with_parent=True,
        security=security,
    )


def influx_on_free_ports(binary: Path, base: Path) -> InfluxServer:
    """A (not yet started) InfluxDB with its files under ``base``, on free loopback ports."""
    port = free_port()
    return InfluxServer(
        binary=binary,
        data_dir=base / "data",
        config_dir=base / "config",
        log_file=base / "influxdb.log",
        port=port,
        rpc_port=pick_port(None, avoid=[port]),
        die_with_parent=True,
    )


def influx2_on_free_ports(binary: Path, base: Path) -> Influx2Server:
    """A (not yet started) InfluxDB 2.x with its files under ``base``, on a free port."""
    return Influx2Server(
        binary=binary,
        data_dir=base / "data",
        config_dir=base / "config",
        log_file=base / "influxdb.log",
        port=free_port(),
        die_with_parent=True,
    )


@contextlib.contextmanager
def ephemeral_stack(
    workdir: Path, *, progress: Callable[[str], None] = print
) -> Iterator[EphemeralStack]:
    """Start Kafka and InfluxDB under ``workdir``; stop them when the block ends."""
    root = StackPaths.for_root().root
    kafka = kafka_on_free_ports(ensure_kafka_libs(root, progress=progress), workdir / "kafka")
    influx = influx_on_free_ports(ensure_influxd(root, progress=progress), workdir / "influxdb")
    try:
        progress("==> starting Kafka and InfluxDB on free loopback ports")
        kafka.start()
        influx.start()
        specs = load_spec(DEFAULT_SPEC)
        apply_topics(specs, bootstrap=kafka.bootstrap, security=kafka.client_security)
        yield EphemeralStack(kafka=kafka, influx=influx)
    finally:
        influx.stop()
        kafka.stop()
