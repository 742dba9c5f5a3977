"""The three pghd services as real processes against a running Kafka and InfluxDB.

Used by the end-to-end tests and by ``make bench``: ingest (uvicorn), processors (a Faust
worker) and alerts (a Faust worker notifying a local HTTP receiver through Apprise's
``json://`` URL). Nothing here is faked: readings go over HTTP, through Kafka, into InfluxDB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen
from typing import Any, TypeVar

import httpx
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from deploy.local.influxdb import InfluxServer
from deploy.local.process import free_port, log_tail, start_detached, stop_process, wait_until
from pghd import topics, wire
from pghd.catalogue import Metric
from pghd.contracts import ID_PATTERN, Anomaly

API_KEY = "integration-test-key"
ADMIN_TOKEN = "integration-admin-token"  # the patients API (enrollment and consent)
SOURCE = "acme"
T = TypeVar("T")
_PATIENT = re.compile(ID_PATTERN)
_METRICS = {m.value for m in Metric}


class NotificationSink:
    """A real HTTP server on loopback that records the JSON bodies posted to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with sink._lock:
                    sink.received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def messages_about(self, text: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.received if text in json.dumps(m)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Pipeline:
    """Handles to the running services and helpers to drive and observe them."""

    ingest_url: str
    kafka_bootstrap: str
    influx: InfluxServer
    sink: NotificationSink
    logs: dict[str, Path]
    processes: dict[str, Popen[bytes]] = field(default_factory=dict)
    consented: dict[str, set[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # the services' environment

    def admin(self, method: str, path: str, body: object = None) -> httpx.Response:
        """One call to ingest's patients API with the harness's admin token (503s retried)."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        deadline = time.monotonic() + 60
        while True:
            response = httpx.request(
                method, self.ingest_url + path, json=body, headers=headers, timeout=30
            )
            if response.status_code != 503 or time.monotonic() > deadline:
                return response
            time.sleep(0.5)

    def enroll(self, patient_id: str, metrics: Iterable[str] = ("heart_rate",)) -> None:
        """Enroll ``patient_id`` with consent to ``metrics`` through the patients API, linked
        to the harness's source (account: the patient id), which may then write for them."""
        wanted = set(metrics) - self.consented.get(patient_id, set())
        if patient_id not in self.consented:
            link = {"source": SOURCE, "account": patient_id}
            body = {"patient_id": patient_id, "consents": sorted(wanted), "links": [link]}
            response = self.admin("POST", "/v1/patients", body)
            assert response.status_code in (201, 409), response.text
            if response.status_code == 201:
                wanted = set()
            else:
                linked = self.admin("POST", f"/v1/patients/{patient_id}/links", link)
                assert linked.status_code == 200, linked.text
            self.consented[patient_id] = set()
        for metric in sorted(wanted):
            response = self.admin("PUT", f"/v1/patients/{patient_id}/consents/{metric}")
            assert response.status_code == 200, response.text
        self.consented[patient_id] |= set(metrics)

    def enroll_for(self, body: object) -> None:
        """Enroll the patients of the readings in ``body`` with consent to their metrics."""
        needs: dict[str, set[str]] = {}
        for item in body if isinstance(body, list) else [body]:
            if not isinstance(item, dict):
                continue
            pid, metric = item.get("patient_id"), item.get("metric")
            if isinstance(pid, str) and _PATIENT.match(pid) and metric in _METRICS:
                needs.setdefault(pid, set()).add(str(metric))
        for pid, metrics in needs.items():
            if not metrics <= self.consented.get(pid, set()):
                self.enroll(pid, metrics)

    def post(
        self,
        body: object,
        *,
        api_key: str = API_KEY,
        timeout: float = 30.0,
        enroll: bool = True,
    ) -> httpx.Response:
        """POST readings; with ``enroll``, enroll their patients with consent first."""
        if enroll:
            self.enroll_for(body)
        return httpx.post(
            f"{self.ingest_url}/v1/measurements",
            content=json.dumps(body),
            headers={"X-API-Key": api_key, "Content-Type": "application/json"},
            timeout=timeout,
        )

    @property
    def bucket(self) -> str:
        """The bucket the services write to (``extra_env`` may name another database's)."""
        return self.env.get("PGHD_INFLUX_BUCKET") or self.influx.bucket

    def vitals(self, patient_id: str) -> list[dict[str, Any]]:
        return self.influx.query(
            f'from(bucket: "{self.bucket}") |> range(start: -30d)'
            f' |> filter(fn: (r) => r._measurement == "vitals" and r.patient_id == "{patient_id}")'
            ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
            ' |> group() |> sort(columns: ["_time"])'
        )

    def wait_vitals(
        self, patient_id: str, count: int, *, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll InfluxDB until ``count`` vitals rows of the patient are stored."""
        return wait_for(
            lambda: rows if len(rows := self.vitals(patient_id)) >= count else None,
            timeout=timeout,
            what=f"{count} vitals of {patient_id} in InfluxDB",
            diagnostics=self.diagnostics,
        )

    def anomalies(
        self, patient_id: str, *, settle: float = 3.0, timeout: float = 60.0, expect: int = 1
    ) -> list[Anomaly]:
        """Anomalies of ``patient_id`` on the anomalies topic: wait for ``expect``, then
        keep reading for ``settle`` seconds so that extra (duplicate) ones are seen too."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.kafka_bootstrap,
            enable_auto_commit=False,
            consumer_timeout_ms=500,
            auto_offset_reset="earliest",
        )
        try:
            parts = [
                TopicPartition(topics.ANOMALIES, p)
                for p in consumer.partitions_for_topic(topics.ANOMALIES) or []
            ]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            found: list[Anomaly] = []
            deadline = time.monotonic() + timeout
            settle_until: float | None = None
            while time.monotonic() < (settle_until or deadline):
                for message in consumer:
                    if message.key == patient_id.encode():
                        found.append(wire.decode(Anomaly, message.value))
                if settle_until is None and len(found) >= expect:
                    settle_until = time.monotonic() + settle
            return found
        finally:
            consumer.close()

    def diagnostics(self) -> str:
        return "\n".join(log_tail(path, 40) for path in self.logs.values())


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] | None = None,
    every: float = 0.5,
) -> T:
    """Call ``probe`` until it returns something other than None, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            extra = diagnostics() if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{extra}")
        time.sleep(every)


def reading(
    patient_id: str,
    value: float,
    when: datetime,
    *,
    metric: str = "heart_rate",
    unit: str = "/min",
    **extra: object,
) -> dict[str, object]:
    """One reading as a device posts it."""
    return {
        "patient_id": patient_id,
        "metric": metric,
        "value": value,
        "unit": unit,
        "effective_time": when.isoformat(),
        "device_id": "watch-1",
        **extra,
    }


def heart_rate_series(
    patient_id: str,
    values: Sequence[float],
    *,
    start: datetime | None = None,
    step: timedelta = timedelta(minutes=5),
) -> list[dict[str, object]]:
    if start is None:
        # Within one six-hour UTC bin (awake heart-rate baselines are kept per bin, see
        # processors.baseline): from the start of the previous bin, whatever the clock says.
        now = datetime.now(UTC)
        start = now.replace(hour=now.hour // 6 * 6, minute=10, second=0, microsecond=0)
        start -= timedelta(hours=6)
    return [reading(patient_id, v, start + i * step, context="rest") for i, v in enumerate(values)]


def new_patient(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def service_env(
    stack_env: Mapping[str, str],
    *,
    data_dir: Path,
    sink_url: str,
    ingest_port: int,
    app_suffix: str,
    warmup: int,
) -> dict[str, str]:
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    admin_hash = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    return {
        **stack_env,
        "PGHD_INGEST_PORT": str(ingest_port),
        "PGHD_INGEST_API_KEYS": json.dumps({SOURCE: key_hash}),
        "PGHD_INGEST_ADMIN_TOKENS": json.dumps({"harness": admin_hash}),
        "PGHD_INGEST_PRODUCE_TIMEOUT_S": "5",
        # Benchmarks measure capacity, not the per-source rate limit (tested on its own).
        "PGHD_INGEST_RATE_LIMIT": "off",
        "PGHD_PROCESSORS_APP_ID": f"pghd-processors-{app_suffix}",
        "PGHD_PROCESSORS_DATA_DIR": str(data_dir / "processors"),
        "PGHD_PROCESSORS_WEB_PORT": str(free_port()),
        "PGHD_PROCESSORS_WARMUP": str(warmup),
        "PGHD_ALERTS_APP_ID": f"pghd-alerts-{app_suffix}",
        "PGHD_ALERTS_DATA_DIR": str(data_dir / "alerts"),
        "PGHD_ALERTS_WEB_PORT": str(free_port()),
        "PGHD_ALERTS_NOTIFY_URLS": json.dumps([sink_url]),
        "PGHD_ALERTS_NOTIFY_CLEARED": "true",  # a loopback sink: cleared for patient data
    }


@contextlib.contextmanager
def running_pipeline(
    *,
    stack_env: Mapping[str, str],
    influx: InfluxServer,
    workdir: Path,
    warmup: int = 10,
    services: Sequence[str] = ("ingest", "processors", "alerts"),
    app_suffix: str | None = None,
    probe_timeout: float = 120.0,
    from_now: bool | None = None,
    extra_env: Mapping[str, str] | None = None,
    env_of: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Pipeline]:
    """Start the services, wait until a probe reading has gone all the way into InfluxDB.

    ``from_now`` (default: when no ``app_suffix`` names the groups) starts the new consumer
    groups of processors and alerts at the current end of their input topics, so a pipeline
    judges only what is posted after it started, not every earlier test's readings (the
    session's Kafka is shared); a group that already committed offsets is left alone.
    ``extra_env`` adds to (or overrides) the services' environment; ``env_of[name]`` adds to
    that of the service ``name`` alone (e.g. its own Kafka user).
    """
    sink = NotificationSink()
    ingest_port = free_port()
    env = service_env(
        stack_env,
        data_dir=workdir,
        sink_url=sink.url,
        ingest_port=ingest_port,
        app_suffix=app_suffix or uuid.uuid4().hex[:8],
        warmup=warmup,
    )
    env.update(influx.env())  # the server given wins over the stack's default one
    env.update(extra_env or {})
    if from_now if from_now is not None else app_suffix is None:
        bootstrap = stack_env["PGHD_KAFKA_BOOTSTRAP"]
        if "processors" in services:
            start_group_at_end(bootstrap, env["PGHD_PROCESSORS_APP_ID"], [topics.MEASUREMENTS])
            store_group = f"{env['PGHD_PROCESSORS_APP_ID']}-store"
            start_group_at_end(bootstrap, store_group, [topics.POINTS])
        if "alerts" in services:
            start_group_at_end(
                bootstrap, env["PGHD_ALERTS_APP_ID"], [topics.ANOMALIES, topics.ALERT_COMMANDS]
            )
    pipeline = Pipeline(
        ingest_url=f"http://127.0.0.1:{ingest_port}",
        kafka_bootstrap=stack_env["PGHD_KAFKA_BOOTSTRAP"],
        influx=influx,
        sink=sink,
        logs={name: workdir / f"{name}.log" for name in services},
        env=env,
    )
    try:
        for name in services:
            pipeline.processes[name] = start_detached(
                [sys.executable, "-m", f"{name}.main"],
                log_file=pipeline.logs[name],
                env={**env, **(env_of or {}).get(name, {})},
                die_with_parent=True,
            )
        wait_for(
            lambda: _ready(pipeline),
            timeout=60,
            what="ingest /readyz",
            diagnostics=pipeline.diagnostics,
        )
        if "processors" in services:
            probe = new_patient("probe")
            response = pipeline.post(reading(probe, 70, datetime.now(UTC) - timedelta(minutes=1)))
            assert response.status_code == 202, response.text
            pipeline.wait_vitals(probe, 1, timeout=probe_timeout)
        yield pipeline
    finally:
        for proc in reversed(list(pipeline.processes.values())):
            stop_process(proc.pid, timeout=20)
        sink.close()


@contextlib.contextmanager
def running_care_api(
    *, kafka_bootstrap: str, log: Path, env: Mapping[str, str], timeout: float = 60.0
) -> Iterator[str]:
    """The care-team API as its own process (``python -m alerts.api.main``) on a free port,
    with ``env`` added (its tokens or users file, routing file...); yields its base URL once
    ``/readyz`` answers 200, stops it at the end."""
    port = free_port()
    process = start_detached(
        [sys.executable, "-m", "alerts.api.main"],
        log_file=log,
        env={"PGHD_KAFKA_BOOTSTRAP": kafka_bootstrap, "PGHD_CARE_API_PORT": str(port), **env},
        die_with_parent=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,
            timeout=timeout,
            what="care API /readyz",
            process=process,
            log_file=log,
        )
        yield url
    finally:
        stop_process(process.pid, timeout=20)


def start_group_at_end(bootstrap: str, group: str, topic_names: Sequence[str]) -> None:
    """Commit ``group``'s offsets at the end of ``topic_names``, unless it committed any."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(name, p)
            for name in topic_names
            for p in sorted(consumer.partitions_for_topic(name) or [])
        ]
        if any(consumer.committed(tp) is not None for tp in parts):
            return
        ends = consumer.end_offsets(parts)
    finally:
        consumer.close()
    commit_offsets(bootstrap, group, ends)


def commit_offsets(bootstrap: str, group: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` (which must have no running members)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
    finally:
        consumer.close()


def _ready(pipeline: Pipeline) -> bool | None:
    for name, proc in pipeline.processes.items():
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}\n{pipeline.diagnostics()}")
    with contextlib.suppress(httpx.HTTPError):
        if httpx.get(f"{pipeline.ingest_url}/readyz", timeout=2).status_code == 200:
            return True
    return None
