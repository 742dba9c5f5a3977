"""The local stack (Kafka + InfluxDB + app services): up, down, status, client env.

Everything lives under ``<root>/.local``: ``data/{kafka,influxdb}``, ``logs/<name>.log``,
``run/<name>/`` (generated configs) and the state file ``run/stack.json``::

    {
      "version": 1,
      "root": "/path/to/repo",
      "env": {"PGHD_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "PGHD_INFLUX_URL": "...", ...},
      "processes": {
        "kafka": {"name": "kafka", "kind": "infra", "pid": 4242, "start_time": 81234,
                  "argv": ["java", "..."], "log": ".../.local/logs/kafka.log",
                  "ports": {"kafka": 9092, "controller": 9093},
                  "health": "kafka://127.0.0.1:9092"},
        "influxdb": {... "kind": "infra", "health": "http://127.0.0.1:8086/health"},
        "ingest": {... "kind": "service", "health": "http://127.0.0.1:8000/healthz"}
      }
    }

The repository root is the one given, else ``$PGHD_ROOT`` (:data:`ROOT_ENV`: a second stack
in another copy, as the tests run ``pghd run``), else the repository holding this file.

``processes`` is in start order; ``start_time`` (from ``/proc/<pid>/stat``) guards
against recycled pids; ``health`` is ``kafka://host:port``, ``http(s)://...``,
``tcp://host:port`` or null (alive is enough). ``down`` stops services in reverse start
order, then InfluxDB and Kafka, then any process still running from ``.local/run`` or
carrying ``PGHD_LOCAL_STACK=<root>/.local/run`` in its environment (set for services).

Kafka here is plaintext on 127.0.0.1, and stated so: the env carries
``PGHD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT`` (:mod:`pghd.kafka_security`), so a service
started against the local stack never tries the SASL settings of a shell that also talks to
a secured cluster; the stack's own admin calls are plaintext too. The compose and Kubernetes
stacks use SASL_SSL (docs/security.md, "Kafka").
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy.local import process
from deploy.local.influxdb import InfluxServer, ensure_influxd
from deploy.local.kafka import KafkaServer, ensure_kafka_libs, kafka_healthy
from deploy.local.topics import DEFAULT_SPEC, apply_topics
from pghd.kafka_security import ENV_PROTOCOL, KafkaSecurity
from pghd.topics import load_spec

__all__ = [
    "ROOT_ENV",
    "ComponentStatus",
    "ProcessRecord",
    "StackPaths",
    "StackState",
    "down",
    "load_state",
    "start_service",
    "status",
    "stop_service",
    "up",
]

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]
STACK_MARKER = "PGHD_LOCAL_STACK"  # set in each service's environment: finds strays
ROOT_ENV = "PGHD_ROOT"  # the repository root when none is given (default: this repository)


@dataclass(frozen=True, slots=True)
class StackPaths:
    """Where the local stack keeps data, logs, generated configs and its state file."""

    root: Path
    local: Path  # <root>/.local: caches, data, logs, run state (git-ignored)
    run: Path  # generated configs, the state file and its lock
    data: Path
    logs: Path
    state_file: Path
    lock_file: Path

    @classmethod
    def for_root(cls, root: Path | None = None) -> StackPaths:
        """Paths for ``root`` (default: ``$PGHD_ROOT``, else the repository holding this file)."""
        given = root or os.environ.get(ROOT_ENV) or Path(__file__).resolve().parents[2]
        found = Path(given).resolve()
        if not (found / "pyproject.toml").is_file():
            raise FileNotFoundError(f"{found} is not the pghd repository (no pyproject.toml)")
        local = found / ".local"
        return cls(
            root=found,
            local=local,
            run=local / "run",
            data=local / "data",
            logs=local / "logs",
            state_file=local / "run" / "stack.json",
            lock_file=local / "run" / "stack.lock",
        )


@dataclass(slots=True)
class ProcessRecord:
    """One process of the stack as the state file records it."""

    name: str
    kind: str  # "infra" or "service"
    pid: int
    start_time: int | None
    argv: list[str]
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    health: str | None = None

    def alive(self) -> bool:
        """True while the recorded process (same pid, same start time) runs."""
        return process.pid_matches(self.pid, self.start_time)

    def healthy(self) -> bool:
        """True when alive and its health check passes."""
        if not self.alive():
            return False
        if self.health is None:
            return True
        scheme, _, target = self.health.partition("://")
        if scheme == "kafka":
            return kafka_healthy(target, timeout=3.0)
        if scheme == "tcp":
            host, _, port = target.rpartition(":")
            return not process.port_is_free(int(port), host)
        return process.http_ok(self.health)


@dataclass(slots=True)
class StackState:
    """The state file's content."""

    root: str
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise as the documented JSON document."""
        doc = {
            "version": 1,
            "root": self.root,
            "env": self.env,
            "processes": {name: asdict(rec) for name, rec in self.processes.items()},
        }
        return json.dumps(doc, indent=2) + "\n"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One row of ``pghd dev status``."""

    name: str
    kind: str
    pid: int
    port: int | None
    alive: bool
    healthy: bool
    log: str


def load_state(paths: StackPaths) -> StackState:
    """Read the state file (an empty state when there is none)."""
    try:
        doc: dict[str, Any] = json.loads(paths.state_file.read_text())
    except FileNotFoundError:
        return StackState(root=str(paths.root))
    procs = {name: ProcessRecord(**raw) for name, raw in doc.get("processes", {}).items()}
    return StackState(
        root=doc.get("root", str(paths.root)), env=doc.get("env", {}), processes=procs
    )


def _save_state(paths: StackPaths, state: StackState) -> None:
    paths.run.mkdir(parents=True, exist_ok=True)
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, paths.state_file)


def _record(
    name: str, kind: str, *, server: KafkaServer | InfluxServer, ports: dict[str, int], health: str
) -> ProcessRecord:
    assert server.process is not None
    pid = server.process.pid
    return ProcessRecord(
        name=name,
        kind=kind,
        pid=pid,
        start_time=process.process_start_time(pid),
        argv=server.argv,
        log=str(server.log_file),
        ports=ports,
        health=health,
    )


def _running(state: StackState, name: str, progress: Progress) -> bool:
    rec = state.processes.get(name)
    if rec is None or not rec.alive():
        return False
    try:
        process.wait_until(rec.healthy, timeout=30.0, what=name)
    except TimeoutError:
        progress(f"==> {name} (pid {rec.pid}) runs but is not healthy: restarting it")
        process.stop_process(rec.pid, start_time=rec.start_time)
        return False
    ports = " ".join(f"{key}={port}" for key, port in rec.ports.items())
    progress(f"==> {name} already running (pid {rec.pid}, {ports})")
    return True


def _choose_port(what: str, wanted: int, *, progress: Progress, avoid: Sequence[int] = ()) -> int:
    """``wanted`` if free, else a free port (said aloud: clients must use the new one)."""
    port = process.pick_port(wanted, avoid=avoid)
    if wanted and port != wanted:
        progress(f"    {what}: port {wanted} is taken, using {port}")
    return port


def _wanted(given: int | None, old: ProcessRecord | None, key: str, default: int) -> int:
    """The port asked for, else the one used last time, else the default."""
    if given is not None:
        return given
    return old.ports.get(key, default) if old else default


def _start_kafka(
    paths: StackPaths,
    state: StackState,
    *,
    libs: Path,
    ports: tuple[int | None, int | None],
    progress: Progress,
) -> None:
    old = state.processes.get("kafka")
    port = _choose_port("Kafka", _wanted(ports[0], old, "kafka", 9092), progress=progress)
    cport = _wanted(ports[1], old, "controller", 9093)
    server = KafkaServer(
        libs_dir=libs,
        data_dir=paths.data / "kafka",
        config_dir=paths.run / "kafka",
        log_file=paths.logs / "kafka.log",
        port=port,
        controller_port=_choose_port("KRaft controller", cport, progress=progress, avoid=[port]),
    )
    server.start()
    used = {"kafka": server.port, "controller": server.controller_port}
    health = f"kafka://{server.bootstrap}"
    state.processes["kafka"] = _record("kafka", "infra", server=server, ports=used, health=health)
    state.env["PGHD_KAFKA_BOOTSTRAP"] = server.bootstrap


def _start_influx(
    paths: StackPaths, state: StackState, *, binary: Path, port: int | None, progress: Progress
) -> None:
    old = state.processes.get("influxdb")
    rpc = 0 if port == 0 else None  # any free port asked for: the RPC port too
    port = _choose_port("InfluxDB", _wanted(port, old, "http", 8086), progress=progress)
    server = InfluxServer(
        binary=binary,
        data_dir=paths.data / "influxdb",
        config_dir=paths.run / "influxdb",
        log_file=paths.logs / "influxdb.log",
        port=port,
        rpc_port=process.pick_port(_wanted(rpc, old, "rpc", 8088), avoid=[port]),
    )
    server.start()
    ports = {"http": server.port, "rpc": server.rpc_port}
    health = f"{server.url}/health"
    state.processes["influxdb"] = _record(
        "influxdb", "infra", server=server, ports=ports, health=health
    )
    state.env.update(server.env())


def up(
    *,
    root: Path | None = None,
    kafka_port: int | None = None,
    controller_port: int | None = None,
    influx_port: int | None = None,
    progress: Progress = logger.info,
) -> StackState:
    """Start Kafka and InfluxDB (installing them on first run) and apply the topic spec.

    Idempotent: healthy components are left running. Ports: the ones given, else those of
    the last run, else 9092/9093 and 8086; a port that is taken is replaced by a free one
    (0 means any free port). The state file records which.
    """
    paths = StackPaths.for_root(root)
    with process.file_lock(paths.lock_file):
        state = load_state(paths)
        libs = ensure_kafka_libs(paths.root, progress=progress)
        binary = ensure_influxd(paths.root, progress=progress)
        if not _running(state, "kafka", progress):
            progress("==> starting Kafka (KRaft)")
            ports = (kafka_port, controller_port)
            _start_kafka(paths, state, libs=libs, ports=ports, progress=progress)
            _save_state(paths, state)
        if not _running(state, "influxdb", progress):
            progress("==> starting InfluxDB")
            _start_influx(paths, state, binary=binary, port=influx_port, progress=progress)
            _save_state(paths, state)
        state.env[ENV_PROTOCOL] = "PLAINTEXT"  # loopback only; see the module docstring
        progress("==> applying the topic spec")
        bootstrap = state.env["PGHD_KAFKA_BOOTSTRAP"]
        plaintext = KafkaSecurity()
        specs = load_spec(DEFAULT_SPEC)
        for report in apply_topics(specs, bootstrap=bootstrap, security=plaintext):
            progress(f"    {report.name}: {report.action} {report.detail}".rstrip())
        _save_state(paths, state)
        return state


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
    ports: Mapping[str, int] | None = None,
    health: str | None = None,
    ready_timeout: float = 0.0,
) -> ProcessRecord:
    """Start an app service in the background with the stack's env plus ``env``.

    Output goes to ``.local/logs/<name>.log``. A service of that name that is already
    running is left as it is and returned. With ``ready_timeout`` > 0 wait for ``health``.
    """
    paths = StackPaths.for_root(root)
    with process.file_lock(paths.lock_file):
        state = load_state(paths)
        current = state.processes.get(name)
        if current is not None and current.alive():
            return current
        log = paths.logs / f"{name}.log"
        full_env = {**state.env, **(env or {}), STACK_MARKER: str(paths.run)}
        proc = process.start_detached(argv, log_file=log, env=full_env, cwd=paths.root)
        rec = ProcessRecord(
            name=name,
            kind="service",
            pid=proc.pid,
            start_time=process.process_start_time(proc.pid),
            argv=list(argv),
            log=str(log),
            ports=dict(ports or {}),
            health=health,
        )
        state.processes[name] = rec
        _save_state(paths, state)
    if ready_timeout > 0:
        process.wait_until(
            rec.healthy, timeout=ready_timeout, what=name, process=proc, log_file=log
        )
    return rec


def _stop(state: StackState, name: str, progress: Progress) -> None:
    rec = state.processes.pop(name)
    if process.stop_process(rec.pid, start_time=rec.start_time):
        progress(f"==> stopped {name} (pid {rec.pid})")


def stop_service(name: str, *, root: Path | None = None, progress: Progress = logger.info) -> bool:
    """Stop one recorded process; False if there was no record of it."""
    paths = StackPaths.for_root(root)
    with process.file_lock(paths.lock_file):
        state = load_state(paths)
        if name not in state.processes:
            return False
        _stop(state, name, progress)
        _save_state(paths, state)
        return True


def down(*, root: Path | None = None, progress: Progress = logger.info) -> None:
    """Stop services, then InfluxDB, then Kafka, then anything left from ``.local/run``."""
    paths = StackPaths.for_root(root)
    with process.file_lock(paths.lock_file):
        state = load_state(paths)
        services = [n for n, r in state.processes.items() if r.kind == "service"]
        for name in [*reversed(services), "influxdb", "kafka"]:
            if name in state.processes:
                _stop(state, name, progress)
        for name in list(reversed(state.processes)):
            _stop(state, name, progress)
        marker = f"{STACK_MARKER}={paths.run}"
        for pid in process.find_processes(cmdline=str(paths.run) + os.sep, env=marker):
            progress(f"==> stopping leftover pid {pid}")
            process.stop_process(pid)
        paths.state_file.unlink(missing_ok=True)
    progress("==> local stack is down")


def status(*, root: Path | None = None) -> list[ComponentStatus]:
    """The recorded processes with liveness and health."""
    paths = StackPaths.for_root(root)
    state = load_state(paths)
    return [
        ComponentStatus(
            name=rec.name,
            kind=rec.kind,
            pid=rec.pid,
            port=next(iter(rec.ports.values()), None),
            alive=rec.alive(),
            healthy=rec.healthy(),
            log=rec.log,
        )
        for rec in state.processes.values()
    ]
