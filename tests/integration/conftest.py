"""Session fixtures for integration tests: a real Kafka and a real InfluxDB.

Both run on free loopback ports with their data in a pytest tmp dir. Kafka's jars and
the ``influxd`` binary are installed into the project's ``.local`` cache on first use
(both at once, ~1 min). The servers are stopped at session end, on failure too: fixture
finalizers, an ``atexit`` hook, and ``PR_SET_PDEATHSIG`` so that even a killed pytest
leaves nothing running. A test may stop Kafka (``kafka_server.stop()``); if it does not
start it again, it is restarted after that test, on the same port and data.

Fixtures: ``kafka_server`` (``KafkaServer``: ``bootstrap``, ``port``, ``stop()``,
``start()``), ``kafka_bootstrap`` ("127.0.0.1:port", topics of ``deploy/topics.json``
applied), ``influx`` (``InfluxServer``: ``url``, ``token``, ``org``, ``bucket``,
``query(flux)``, ``create_database(name)``, ``set_retention(seconds)``, ``env()``),
``influx2`` (the same interface on InfluxDB 2.7, the version docker-compose and k8s ship;
built once with ``scripts/build-influxd2.sh``, ~10 min), ``stack_env`` (``PGHD_*``
variables for subprocesses).
Every test under ``tests/integration`` is marked ``integration``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from deploy.local.ephemeral import (
    influx2_on_free_ports,
    influx_on_free_ports,
    kafka_on_free_ports,
)
from deploy.local.influxdb import InfluxServer, ensure_influxd
from deploy.local.influxdb2 import Influx2Server, ensure_influxd2
from deploy.local.kafka import KafkaServer, ensure_kafka_libs
from deploy.local.stack import StackPaths
from deploy.local.topics import DEFAULT_SPEC, apply_topics
from pghd.topics import load_spec

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ROOT = StackPaths.for_root().root
START_ATTEMPTS = 3

# Servers started by this session: stopped at exit, restarted after a test that stopped them.
_STARTED: list[KafkaServer | InfluxServer] = []


def _stop_all() -> None:
    for server in reversed(_STARTED):
        with contextlib.suppress(Exception):
            server.stop()
    _STARTED.clear()


atexit.register(_stop_all)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``integration``; start installing the servers
    they need (the 2.7 build takes ~10 min the first time) if any was selected."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
    if any(HERE in item.path.parents for item in items):
        _start_installs(_show(config))


@pytest.fixture(autouse=True)
def _restart_stopped_servers() -> Iterator[None]:
    """Bring back a server a test stopped and left stopped (same port, same data)."""
    yield
    for server in _STARTED:
        if not server.is_running():
            logger.warning("restarting %s stopped by the test", type(server).__name__)
            server.start()


def _show(config: pytest.Config) -> Callable[[str], None]:
    """Print a progress line on the terminal (and log it)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def show(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)
        logger.info(line)

    return show


@pytest.fixture(scope="session")
def _progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    return _show(pytestconfig)


_INSTALLS: dict[str, Future[Path]] = {}


def _start_installs(progress: Callable[[str], None]) -> dict[str, Future[Path]]:
    """Install Kafka's jars and build both influxd concurrently (cached under .local),
    once per session, from collection on: tests that do not need InfluxDB 2.7 run meanwhile."""
    if not _INSTALLS:
        pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="install")
        _INSTALLS["kafka"] = pool.submit(ensure_kafka_libs, ROOT, progress=progress)
        _INSTALLS["influxd"] = pool.submit(ensure_influxd, ROOT, progress=progress)
        _INSTALLS["influxd2"] = pool.submit(ensure_influxd2, ROOT, progress=progress)
        pool.shutdown(wait=False)
    return _INSTALLS


@pytest.fixture(scope="session")
def _installs(_progress: Callable[[str], None]) -> dict[str, Future[Path]]:
    return _start_installs(_progress)


def _start_on_free_ports(make: Callable[[], KafkaServer | InfluxServer]) -> None:
    """Start a server; if a freshly picked port was taken meanwhile, retry on new ports."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = make()
        try:
            server.start()
        except RuntimeError as exc:
            if "already in use" not in str(exc) or attempt == START_ATTEMPTS:
                raise
            continue
        _STARTED.append(server)
        return


@pytest.fixture(scope="session")
def kafka_server(
    _installs: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaServer]:
    """A real single-node KRaft Kafka with the topic spec applied (replication factor 1)."""
    libs = _installs["kafka"].result()
    base = tmp_path_factory.mktemp("kafka")
    with _running(lambda: kafka_on_free_ports(libs, base)) as server:
        apply_topics(load_spec(DEFAULT_SPEC), bootstrap=server.bootstrap)
        yield server


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: KafkaServer) -> str:
    """``127.0.0.1:<port>`` of the session's Kafka."""
    return kafka_server.bootstrap


Server = TypeVar("Server", KafkaServer, InfluxServer, Influx2Server)


@contextlib.contextmanager
def _running(make_one: Callable[[], Server]) -> Iterator[Server]:
    """Start a server on free ports (new ports if they were taken meanwhile); stop every one
    made when the block ends."""
    made: list[Server] = []

    def make() -> Server:
        made.append(make_one())
        return made[-1]

    try:
        _start_on_free_ports(make)
        yield made[-1]
    finally:
        for server in made:
            server.stop()
            with contextlib.suppress(ValueError):
                _STARTED.remove(server)


@pytest.fixture(scope="session")
def influx(
    _installs: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InfluxServer]:
    """A real InfluxDB 1.8 with database ``pghd`` (bucket ``pghd/autogen``)."""
    binary = _installs["influxd"].result()
    base = tmp_path_factory.mktemp("influxdb")
    with _running(lambda: influx_on_free_ports(binary, base)) as server:
        yield server


@pytest.fixture(scope="session")
def influx2(
    _installs: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Influx2Server]:
    """A real InfluxDB 2.7 (org ``pghd``, bucket ``pghd``), the version compose ships."""
    binary = _installs["influxd2"].result()
    base = tmp_path_factory.mktemp("influxdb2")
    with _running(lambda: influx2_on_free_ports(binary, base)) as server:
        yield server


@pytest.fixture(scope="session")
def stack_env(kafka_bootstrap: str, influx: InfluxServer) -> dict[str, str]:
    """``PGHD_*`` variables pointing services started by a test at the session's stack."""
    return {"PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap, **influx.env()}
