"""A real InfluxDB 2.7 server (the version docker-compose and k8s ship), no Docker.

``ensure_influxd2(root)`` builds ``influxd`` 2.x once with ``scripts/build-influxd2.sh``
(Go module proxy + crates.io for its Rust libflux; ~10 min and 2.9 GiB of caches the first
time) into ``<root>/.local/influxdb2/<version>/bin``. ``Influx2Server`` starts it on
loopback ports with its bolt, sqlite and engine files under ``data_dir``, completes the
first-start setup (``POST /api/v2/setup``: org ``pghd``, bucket ``pghd``, an operator
token) as the image's ``DOCKER_INFLUXDB_INIT_*`` variables do, and stops it with SIGINT
(its clean shutdown; SIGTERM ends it without closing the engine).

It has the interface of :class:`deploy.local.influxdb.InfluxServer`, so tests and
harnesses run the same code against either version; ``create_database(name)`` makes a
bucket ``name``, :meth:`set_retention` changes a bucket's retention rule.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy.local import process
from deploy.local.influxdb import InfluxServer

__all__ = ["INFLUXDB2_VERSION", "Influx2Server", "ensure_influxd2"]

logger = logging.getLogger(__name__)

INFLUXDB2_VERSION = "2.7.12"
ORG = "pghd"
BUCKET = "pghd"
TOKEN = "pghd-local-operator-token"
_SETUP_USER = ("pghd", "pghd-local-password")
_BUILD_SCRIPT = Path("scripts") / "build-influxd2.sh"


def ensure_influxd2(root: Path, *, progress: Callable[[str], None] = logger.info) -> Path:
    """Return the path of ``influxd`` 2.x, building it on first use (see the module doc)."""
    cache = root / ".local" / "influxdb2"
    binary = cache / INFLUXDB2_VERSION / "bin" / "influxd"
    if binary.is_file():
        return binary
    progress(
        f"==> building InfluxDB {INFLUXDB2_VERSION} from the Go module proxy and crates.io "
        "(first run only, ~10 min; log: .local/influxdb2/build.log)"
    )
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "build.log"
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(root / _BUILD_SCRIPT), str(cache), INFLUXDB2_VERSION],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=False,
        )
    if result.returncode != 0 or not binary.is_file():
        raise RuntimeError(
            f"building influxd {INFLUXDB2_VERSION} failed (exit {result.returncode}):\n"
            + process.log_tail(log, 40)
        )
    progress(f"    built {binary}")
    return binary


class Influx2Server(InfluxServer):
    """One ``influxd`` 2.x on a loopback port, set up with org, bucket and token."""

    version = INFLUXDB2_VERSION

    def __init__(
        self,
        *,
        binary: Path,
        data_dir: Path,
        config_dir: Path,
        log_file: Path,
        port: int,
        host: str = process.LOOPBACK,
        die_with_parent: bool = False,
    ) -> None:
        super().__init__(
            binary=binary,
            data_dir=data_dir,
            config_dir=config_dir,
            log_file=log_file,
            port=port,
            rpc_port=port,  # 2.x has no RPC (backup) port
            host=host,
            database=BUCKET,
            die_with_parent=die_with_parent,
        )
        self.token = TOKEN
        self.org = ORG

    @property
    def bucket(self) -> str:
        return BUCKET

    @property
    def config_file(self) -> Path:
        """2.x is configured by flags; this file records them (and marks the process)."""
        return self.config_dir / "influxd2.args"

    def start(self, *, timeout: float = 90.0) -> None:
        """Start ``influxd``, wait for ``/health``, run the first-start setup if not done."""
        if self.pid is not None:
            return
        if not process.port_is_free(self.port, self.host):
            raise RuntimeError(f"cannot start InfluxDB: {self.host}:{self.port} is already in use")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.argv = [
            str(self.binary),
            f"--bolt-path={self.data_dir / 'influxd.bolt'}",
            f"--sqlite-path={self.data_dir / 'influxd.sqlite'}",
            f"--engine-path={self.data_dir / 'engine'}",
            f"--http-bind-address={self.host}:{self.port}",
            "--reporting-disabled",
            "--log-level=warn",
        ]
        self.config_file.write_text("\n".join(self.argv) + "\n")
        self.process = process.start_detached(
            self.argv,
            log_file=self.log_file,
            die_with_parent=self.die_with_parent,
            # Without this it reads ~/.influxdbv2/configs and the INFLUXD_* of the caller.
            env={"INFLUXD_CONFIG_PATH": str(self.config_dir)},
        )
        try:
            process.wait_for_http(
                f"{self.url}/health", timeout=timeout, process=self.process, log_file=self.log_file
            )
            self._setup()
        except BaseException:
            self.stop()
            raise
        logger.info("InfluxDB %s %s ready (pid %s)", self.version, self.url, self.process.pid)

    def _setup(self) -> None:
        if not self.api("GET", "/api/v2/setup").get("allowed", False):
            return  # restarted on its data: set up already
        user, password = _SETUP_USER
        self.api(
            "POST",
            "/api/v2/setup",
            {
                "username": user,
                "password": password,
                "org": ORG,
                "bucket": BUCKET,
                "token": TOKEN,
                "retentionPeriodSeconds": 0,
            },
            auth=False,
        )

    def stop(self, *, timeout: float = 20.0) -> None:
        """SIGINT (clean shutdown), SIGKILL after ``timeout``; reap it."""
        if self.process is None:
            return
        process.stop_process(self.process.pid, timeout=timeout, sig=signal.SIGINT)
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        self.process = None

    def api(
        self, method: str, path: str, body: object = None, *, auth: bool = True
    ) -> dict[str, Any]:
        """One JSON request to the HTTP API; raise RuntimeError with InfluxDB's message."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Token {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise RuntimeError(f"InfluxDB {method} {path}: HTTP {exc.code}: {detail}") from exc
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    def _org_id(self) -> str:
        orgs = self.api("GET", f"/api/v2/orgs?org={ORG}")["orgs"]
        return str(orgs[0]["id"])

    def _bucket_id(self, name: str) -> str | None:
        try:
            found = self.api("GET", f"/api/v2/buckets?org={ORG}&name={name}").get("buckets")
        except RuntimeError as exc:
            if ": HTTP 404: " in str(exc):  # 2.7 answers a name filter that matches nothing so
                return None
            raise
        return str(found[0]["id"]) if found else None

    def influxql(self, statement: str) -> dict[str, Any]:
        raise NotImplementedError(
            "InfluxDB 2.x has no InfluxQL management statements: use create_database()"
            " and set_retention()"
        )

    def create_database(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return it."""
        if self._bucket_id(name) is None:
            self.api(
                "POST",
                "/api/v2/buckets",
                {"orgID": self._org_id(), "name": name, "retentionRules": []},
            )
        return name

    def set_retention(self, seconds: int, *, bucket: str | None = None) -> None:
        """Keep ``seconds`` of data in ``bucket`` (default: the default bucket)."""
        name = bucket or self.bucket
        bucket_id = self._bucket_id(name)
        if bucket_id is None:
            raise RuntimeError(f"no bucket {name!r}")
        rule = {"type": "expire", "everySeconds": seconds}
        self.api("PATCH", f"/api/v2/buckets/{bucket_id}", {"retentionRules": [rule]})
