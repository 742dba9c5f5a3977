"""A real InfluxDB 1.8 server built from the Go module proxy, no Docker.

``ensure_influxd(root)`` builds ``influxd`` once as pure Go (``CGO_ENABLED=0``) into
``<root>/.local/influxdb/<version>/bin`` with the module and build caches under
``<root>/.local/go``. ``InfluxServer`` writes a TOML config, starts ``influxd`` and waits
for ``/health``. InfluxDB 1.8 serves the 2.x endpoints influxdb-client uses
(``/api/v2/write``, ``/api/v2/query`` with Flux, ``/health``): the bucket is
``<database>/<retention policy>``, the token ``user:password`` (any value, auth is off),
the org is ignored (``-``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.local import process

__all__ = [
    "INFLUXDB_VERSION",
    "InfluxServer",
    "ensure_influxd",
    "influx_healthy",
    "run_influxql",
]

logger = logging.getLogger(__name__)

INFLUXDB_VERSION = "1.8.10"
INFLUXD_MODULE = "github.com/influxdata/influxdb/cmd/influxd"
DEFAULT_DATABASE = "pghd"
DEFAULT_TOKEN = "pghd:pghd"
DEFAULT_ORG = "-"
_GO_HINT = "Install Go >= 1.21 from https://go.dev/dl (the Go toolchain) and put `go` on PATH."


def ensure_influxd(root: Path, *, progress: Callable[[str], None] = logger.info) -> Path:
    """Return the path of ``influxd``, building it from the Go module proxy on first use."""
    home = root / ".local" / "influxdb" / INFLUXDB_VERSION
    binary = home / "bin" / "influxd"
    with process.file_lock(home.parent / f"{INFLUXDB_VERSION}.lock"):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        go = process.require_tool("go", _GO_HINT)
        progress(
            f"==> building InfluxDB {INFLUXDB_VERSION} from the Go module proxy "
            "(first run only, ~1-2 min)"
        )
        gopath = root / ".local" / "go"
        env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOBIN": str(binary.parent),
            "GOPATH": str(gopath),
            "GOMODCACHE": str(gopath / "pkg" / "mod"),
            "GOCACHE": str(gopath / "cache"),
            "GOFLAGS": "-mod=mod -modcacherw",
        }
        result = subprocess.run(
            [go, "install", f"{INFLUXD_MODULE}@v{INFLUXDB_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not binary.is_file():
            raise RuntimeError(
                f"building influxd failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
            )
        progress(f"    built {binary}")
        return binary


def influx_healthy(url: str) -> bool:
    """True when ``<url>/health`` answers 2xx."""
    return process.http_ok(f"{url}/health")


class InfluxServer:
    """One ``influxd`` on loopback ports; also the connection settings clients need."""

    version = INFLUXDB_VERSION

    def __init__(
        self,
        *,
        binary: Path,
        data_dir: Path,
        config_dir: Path,
        log_file: Path,
        port: int,
        rpc_port: int,
        host: str = process.LOOPBACK,
        database: str = DEFAULT_DATABASE,
        die_with_parent: bool = False,
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.config_dir = config_dir
        self.log_file = log_file
        self.port = port
        self.rpc_port = rpc_port
        self.host = host
        self.database = database
        # SIGTERM influxd when the thread that started it exits (test fixtures).
        self.die_with_parent = die_with_parent
        self.token = DEFAULT_TOKEN
        self.org = DEFAULT_ORG
        self.process: subprocess.Popen[bytes] | None = None
        self.argv: list[str] = []

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    @property
    def bucket(self) -> str:
        """The 2.x-style bucket name of the default database: ``<db>/autogen``."""
        return f"{self.database}/autogen"

    @property
    def config_file(self) -> Path:
        """The TOML config (its path also marks the process)."""
        return self.config_dir / "influxdb.conf"

    @property
    def pid(self) -> int | None:
        """Pid of the running server started by this object, if any."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def env(self) -> dict[str, str]:
        """``PGHD_INFLUX_*`` variables for services and tools."""
        return {
            "PGHD_INFLUX_URL": self.url,
            "PGHD_INFLUX_TOKEN": self.token,
            "PGHD_INFLUX_ORG": self.org,
            "PGHD_INFLUX_BUCKET": self.bucket,
        }

    def config(self) -> str:
        """The ``influxd`` TOML configuration."""
        data = self.data_dir
        return (
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{data / "meta"}"\n'
            f'[data]\n  dir = "{data / "data"}"\n  wal-dir = "{data / "wal"}"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  bind-address = "{self.host}:{self.port}"\n'
            "  flux-enabled = true\n  log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )

    def start(self, *, timeout: float = 60.0) -> None:
        """Start ``influxd``, wait for ``/health`` and create the default database."""
        if self.pid is not None:
            return
        for port in (self.port, self.rpc_port):
            if not process.port_is_free(port, self.host):
                raise RuntimeError(f"cannot start InfluxDB: {self.host}:{port} is already in use")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        self.argv = [str(self.binary), "-config", str(self.config_file)]
        self.process = process.start_detached(
            self.argv, log_file=self.log_file, die_with_parent=self.die_with_parent
        )
        try:
            process.wait_for_http(
                f"{self.url}/health", timeout=timeout, process=self.process, log_file=self.log_file
            )
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        logger.info("InfluxDB %s ready (pid %s)", self.url, self.process.pid)

    def stop(self, *, timeout: float = 20.0) -> None:
        """Stop ``influxd`` (SIGTERM, SIGKILL after ``timeout``) and reap it."""
        if self.process is None:
            return
        process.stop_process(self.process.pid, timeout=timeout)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self.process = None

    def is_running(self) -> bool:
        """True while the server process started by this object runs."""
        return self.pid is not None

    def influxql(self, statement: str) -> dict[str, Any]:
        """Run one InfluxQL statement through ``POST /query``; raise on an error result."""
        return run_influxql(self.url, statement)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (idempotent); return its bucket name ``<name>/autogen``."""
        self.influxql(f'CREATE DATABASE "{name}"')
        return f"{name}/autogen"

    def set_retention(self, seconds: int, *, bucket: str | None = None) -> None:
        """Keep ``seconds`` of data in ``bucket`` (``<db>/<rp>``, default the default one)."""
        database, _, policy = (bucket or self.bucket).partition("/")
        self.influxql(
            f'ALTER RETENTION POLICY "{policy or "autogen"}" ON "{database}" DURATION {seconds}s'
        )

    def query(self, flux: str) -> list[dict[str, Any]]:
        """Run a Flux query through influxdb-client; return one dict per record."""
        from influxdb_client.client.influxdb_client import InfluxDBClient  # heavy: lazy

        with InfluxDBClient(url=self.url, token=self.token, org=self.org) as client:
            tables = client.query_api().query(flux, org=self.org)
            return [dict(record.values) for table in tables for record in table.records]


def run_influxql(url: str, statement: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """POST one InfluxQL statement to ``<url>/query``; raise RuntimeError on an error."""
    body = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"{url}/query", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
    errors = [r["error"] for r in result.get("results", []) if "error" in r]
    if errors:
        raise RuntimeError(f"InfluxQL {statement!r} failed: {'; '.join(errors)}")
    return result
