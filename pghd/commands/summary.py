"""``pghd summary``: what the platform stored and raised, read back from InfluxDB."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from influxdb_client.client.influxdb_client import InfluxDBClient

__all__ = ["AnomalyCount", "StoreSummary", "read_summary", "summary"]


@dataclass(frozen=True, slots=True)
class AnomalyCount:
    channel: str
    detector: str
    severity: str
    count: int


@dataclass(frozen=True, slots=True)
class StoreSummary:
    vitals: int
    patients: int
    anomalies: list[AnomalyCount]


def _flux_count(bucket: str, measurement: str, field: str, since: str, group: str) -> str:
    return (
        f'from(bucket: "{bucket}") |> range(start: {since})'
        f' |> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{field}")'
        f" |> group(columns: [{group}]) |> count()"
    )


def read_summary(client: InfluxDBClient, *, bucket: str, org: str, since: str) -> StoreSummary:
    """Count stored vitals, patients and anomalies by kind since ``since`` (a Flux duration)."""
    query = client.query_api()
    vitals = sum(
        int(record.values.get("_value", 0))
        for table in query.query(_flux_count(bucket, "vitals", "value", since, ""), org=org)
        for record in table.records
    )
    patients = sum(
        1
        for table in query.query(
            _flux_count(bucket, "vitals", "value", since, '"patient_id"'), org=org
        )
        for _ in table.records
    )
    anomalies = [
        AnomalyCount(
            channel=str(record.values.get("channel")),
            detector=str(record.values.get("detector")),
            severity=str(record.values.get("severity")),
            count=int(record.values.get("_value", 0)),
        )
        for table in query.query(
            _flux_count(bucket, "anomalies", "score", since, '"channel", "detector", "severity"'),
            org=org,
        )
        for record in table.records
    ]
    anomalies.sort(key=lambda a: (-a.count, a.channel, a.detector))
    return StoreSummary(vitals=vitals, patients=patients, anomalies=anomalies)


def summary(
    influx_url: str = typer.Option(..., envvar="PGHD_INFLUX_URL", help="InfluxDB URL"),
    influx_token: str = typer.Option(..., envvar="PGHD_INFLUX_TOKEN", help="InfluxDB token"),
    influx_org: str = typer.Option("-", envvar="PGHD_INFLUX_ORG"),
    influx_bucket: str = typer.Option("pghd/autogen", envvar="PGHD_INFLUX_BUCKET"),
    since: str = typer.Option("-400d", help="Flux range start, e.g. -1d"),
) -> None:
    """Print readings stored and anomalies raised by kind (channel, detector, severity)."""
    with InfluxDBClient(url=influx_url, token=influx_token, org=influx_org, timeout=30_000) as c:
        result = read_summary(c, bucket=influx_bucket, org=influx_org, since=since)
    typer.echo(f"readings stored in InfluxDB: {result.vitals} from {result.patients} patients")
    total = sum(a.count for a in result.anomalies)
    typer.echo(f"anomalies raised: {total}")
    if result.anomalies:
        typer.echo(f"  {'channel':<26} {'detector':<20} {'severity':<9} {'count':>6}")
        for a in result.anomalies:
            typer.echo(f"  {a.channel:<26} {a.detector:<20} {a.severity:<9} {a.count:>6}")
