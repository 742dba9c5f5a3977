"""``pghd run``: the main job. Stack up, services up, a simulated cohort through the webhook.

Starts Kafka and InfluxDB (``pghd dev up``), the ingest, processors and alerts services and a
local notification inbox, posts a simulated cohort to ``POST /v1/measurements``, waits until
the processors have caught up, then prints what was stored and raised and where to look.
Everything keeps running until ``pghd dev down`` (``make stop``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from pghd.kafka_security import KafkaSecurity

__all__ = ["run"]

INGEST_PORT = 8000
INBOX_PORT = 8025
PROCESSORS_WEB_PORT = 6066
ALERTS_WEB_PORT = 6067


def _api_key(run_dir: Path, name: str = "demo-api-key") -> str:
    """A local secret (the demo source's API key, the admin token): made once, kept in
    ``.local/run/<name>``."""
    path = run_dir / name
    if not path.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _consumer_lag(bootstrap: str, group: str, topic: str, security: KafkaSecurity) -> int | None:
    """Messages of ``topic`` the consumer ``group`` has not committed yet (None: unknown)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    auth = security.kafka_python()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pghd-run", **auth)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="pghd-run", **auth)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = consumer.end_offsets(parts)
        if not committed and any(ends.values()):
            return None
        return sum(
            int(end) - (int(committed[tp].offset) if tp in committed else 0)
            for tp, end in ends.items()
        )
    finally:
        admin.close()
        consumer.close()


def _wait_caught_up(
    bootstrap: str, group: str, topic: str, timeout: float, security: KafkaSecurity
) -> int | None:
    deadline = time.monotonic() + timeout
    lag: int | None = None
    while time.monotonic() < deadline:
        lag = _consumer_lag(bootstrap, group, topic, security)
        if lag == 0:
            return 0
        typer.echo(f"    processors still have {lag if lag is not None else '?'} readings to go")
        time.sleep(3)
    return lag


def run(
    patients: Annotated[int, typer.Option(min=1, help="patients in the simulated cohort")] = 20,
    days: Annotated[float, typer.Option(min=0.1, help="days of data per patient")] = 3.0,
    speed: Annotated[float, typer.Option(min=0.0, help="simulated s per real s; 0 = flat out")] = 0,
    seed: Annotated[int, typer.Option(help="random seed of the cohort")] = 1,
) -> None:
    """Bring the local platform up and run a simulated cohort through it; print a summary."""
    from deploy.local import stack
    from pghd import topics
    from pghd.commands.summary import summary

    paths = stack.StackPaths.for_root()
    state = stack.up(progress=typer.echo)
    env = dict(state.env)
    key = _api_key(paths.run)
    admin_token = _api_key(paths.run, "admin-token")
    python = sys.executable
    inbox_file = paths.logs / "notifications.jsonl"
    inbox = stack.start_service(
        "inbox",
        [python, "-m", "deploy.local.inbox", str(INBOX_PORT), str(inbox_file)],
        ports={"http": INBOX_PORT},
        health=f"http://127.0.0.1:{INBOX_PORT}/",
        ready_timeout=20,
    )
    service_env = {
        "PGHD_INGEST_API_KEYS": json.dumps({"demo": hashlib.sha256(key.encode()).hexdigest()}),
        "PGHD_INGEST_ADMIN_TOKENS": json.dumps(
            {"local-admin": hashlib.sha256(admin_token.encode()).hexdigest()}
        ),
        "PGHD_INGEST_PORT": str(INGEST_PORT),
        "PGHD_PROCESSORS_WEB_PORT": str(PROCESSORS_WEB_PORT),
        "PGHD_PROCESSORS_DATA_DIR": str(paths.data / "processors"),
        "PGHD_ALERTS_WEB_PORT": str(ALERTS_WEB_PORT),
        "PGHD_ALERTS_DATA_DIR": str(paths.data / "alerts"),
        "PGHD_ALERTS_NOTIFY_URLS": json.dumps([f"json://127.0.0.1:{inbox.ports['http']}/pghd"]),
        # the local inbox is this machine's, on loopback: cleared to show who and what
        "PGHD_ALERTS_NOTIFY_CLEARED": "true",
    }
    typer.echo("==> starting ingest, processors and alerts")
    for name, port, health in (
        ("ingest", INGEST_PORT, f"http://127.0.0.1:{INGEST_PORT}/readyz"),
        ("processors", PROCESSORS_WEB_PORT, f"http://127.0.0.1:{PROCESSORS_WEB_PORT}/"),
        ("alerts", ALERTS_WEB_PORT, f"http://127.0.0.1:{ALERTS_WEB_PORT}/"),
    ):
        stack.start_service(
            name,
            [python, "-m", f"{name}.main"],
            env=service_env,
            ports={"http": port},
            health=health,
            ready_timeout=90,
        )
    labels = paths.run / "episodes.json"
    typer.echo(f"==> enrolling and posting a simulated cohort: {patients} patients x {days:g} d")
    subprocess.run(
        [
            python, "-m", "pghd.cli", "simulate", "--patients", str(patients),
            "--days", str(days), "--speed", str(speed), "--seed", str(seed),
            "--url", f"http://127.0.0.1:{INGEST_PORT}", "--labels-out", str(labels),
        ],
        env={**os.environ, "PGHD_API_KEY": key, "PGHD_ADMIN_TOKEN": admin_token},
        check=True,
    )  # fmt: skip
    typer.echo("==> waiting for the processors to catch up")
    lag = _wait_caught_up(
        env["PGHD_KAFKA_BOOTSTRAP"],
        "pghd-processors",
        topics.MEASUREMENTS,
        600,
        KafkaSecurity.from_env(env),  # the local stack's: plaintext on loopback
    )
    if lag != 0:
        typer.echo(f"    still {lag} readings behind after 10 minutes; the summary is partial")
    time.sleep(3)  # the alerts service notifies the last anomalies
    typer.echo("")
    typer.echo(
        "(counts cover everything stored in this stack, earlier runs included; readings a run"
        " repeats are dropped as duplicates; `make clean` starts afresh)"
    )
    summary(
        influx_url=env["PGHD_INFLUX_URL"],
        influx_token=env["PGHD_INFLUX_TOKEN"],
        influx_org=env["PGHD_INFLUX_ORG"],
        influx_bucket=env["PGHD_INFLUX_BUCKET"],
        since="-400d",
    )
    notified = len(inbox_file.read_text().splitlines()) if inbox_file.exists() else 0
    typer.echo(f"notifications delivered to the local inbox: {notified} ({inbox_file})")
    episodes = json.loads(labels.read_text())["episodes"] if labels.exists() else []
    _episodes_seen(env, episodes)
    _where_to_look(env)


def _episodes_seen(env: dict[str, str], episodes: list[dict[str, str]]) -> None:
    """For each injected episode: did its patient get an anomaly during it (or 12 h after)?"""
    from influxdb_client.client.influxdb_client import InfluxDBClient

    typer.echo(f"episodes injected by the simulator: {len(episodes)} (.local/run/episodes.json)")
    bucket = env["PGHD_INFLUX_BUCKET"]
    with InfluxDBClient(
        url=env["PGHD_INFLUX_URL"], token=env["PGHD_INFLUX_TOKEN"], org=env["PGHD_INFLUX_ORG"]
    ) as client:
        for episode in episodes:
            flux = (
                f'from(bucket: "{bucket}")'
                f" |> range(start: {episode['start']}, stop: {episode['end']})"
                f' |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score"'
                f' and r.patient_id == "{episode["patient_id"]}") |> group() |> count()'
            )
            tables = client.query_api().query(flux, org=env["PGHD_INFLUX_ORG"])
            hits = sum(int(r.values.get("_value", 0)) for t in tables for r in t.records)
            seen = f"{hits} anomalies during it" if hits else "NOT flagged"
            typer.echo(f"  {episode['kind']:<14} {episode['patient_id']:<10} {seen}")


def _where_to_look(env: dict[str, str]) -> None:
    bucket = env["PGHD_INFLUX_BUCKET"]
    typer.echo("")
    typer.echo("Where to look:")
    typer.echo(f"  ingest API        http://127.0.0.1:{INGEST_PORT}/docs  (metrics: /metrics)")
    typer.echo(f"  processors        http://127.0.0.1:{PROCESSORS_WEB_PORT}/  (Faust web)")
    typer.echo(f"  alerts            http://127.0.0.1:{ALERTS_WEB_PORT}/")
    typer.echo(
        f"  Kafka             {env['PGHD_KAFKA_BOOTSTRAP']}  (plaintext, loopback only)"
        "  topics: pghd topics list"
    )
    typer.echo(f"  InfluxDB          {env['PGHD_INFLUX_URL']}  bucket {bucket}, e.g.:")
    typer.echo(
        f'    curl -s {env["PGHD_INFLUX_URL"]}/api/v2/query -H "Content-Type: application/vnd.flux"'
        f' --data \'from(bucket:"{bucket}") |> range(start:-30d)'
        ' |> filter(fn:(r) => r._measurement == "anomalies" and r._field == "score")'
        ' |> group(columns:["detector"]) |> count()\''
    )
    typer.echo(
        "  patients          PGHD_ADMIN_TOKEN=$(cat .local/run/admin-token) pghd patients list"
    )
    typer.echo("  logs              .local/logs/  (ingest.log, processors.log, alerts.log, ...)")
    typer.echo("  stop everything   make stop")
