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
from deploy.local.kafka import KafkaServer, ensure_kafka_libs
from deploy.local.process import free_port, pick_port
from deploy.local.stack import StackPaths
from deploy.local.topics import DEFAULT_SPEC, apply_topics
from pghd.topics import load_spec

__all__ = ["EphemeralStack", "ephemeral_stack"]


@dataclass(frozen=True)
class EphemeralStack:
    kafka: KafkaServer
    influx: InfluxServer

    def env(self) -> dict[str, str]:
        """``PGHD_*`` variables pointing services at this stack."""
        return {"PGHD_KAFKA_BOOTSTRAP": self.kafka.bootstrap, **self.influx.env()}


@contextlib.contextmanager
def ephemeral_stack(
    workdir: Path, *, progress: Callable[[str], None] = print
) -> Iterator[EphemeralStack]:
    """Start Kafka and InfluxDB under ``workdir``; stop them when the block ends."""
    root = StackPaths.for_root().root
    libs = ensure_kafka_libs(root, progress=progress)
    binary = ensure_influxd(root, progress=progress)
    kafka_port = free_port()
    kafka = KafkaServer(
        libs_dir=libs,
        data_dir=workdir / "kafka" / "data",
        config_dir=workdir / "kafka" / "config",
        log_file=workdir / "kafka.log",
        port=kafka_port,
        controller_port=pick_port(None, avoid=[kafka_port]),
        die_with_parent=True,
    )
    influx_port = free_port()
    influx = InfluxServer(
        binary=binary,
        data_dir=workdir / "influxdb" / "data",
        config_dir=workdir / "influxdb" / "config",
        log_file=workdir / "influxdb.log",
        port=influx_port,
        rpc_port=pick_port(None, avoid=[influx_port]),
        die_with_parent=True,
    )
    try:
        progress("==> starting Kafka and InfluxDB on free loopback ports")
        kafka.start()
        influx.start()
        apply_topics(load_spec(DEFAULT_SPEC), bootstrap=kafka.bootstrap)
        yield EphemeralStack(kafka=kafka, influx=influx)
    finally:
        influx.stop()
        kafka.stop()
