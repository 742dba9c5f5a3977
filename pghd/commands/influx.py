"""``pghd influx``: retention and downsampling of the stored vitals.

Raw readings (measurement ``vitals``) are kept for a limited period; hourly and daily
aggregates (``vitals_1h``, ``vitals_1d``: fields ``mean``, ``min``, ``max``, ``count``, one
series per patient, metric, channel and unit, every source merged) are kept much longer in
a second bucket. In production (InfluxDB 2.x) the Flux tasks of ``deploy/influxdb/tasks``
compute them as data arrives; ``pghd influx downsample --since 7d`` runs the same
aggregation on demand (a backfill, or locally on InfluxDB 1.8, which has no tasks). It only
uses ``/api/v2/query`` and ``/api/v2/write``, so it works on both versions. Rewriting a
window is harmless: InfluxDB keeps one value per series, field and time.

``pghd influx retention`` sets the retention policies of a local InfluxDB 1.8 (raw readings
in ``<db>/autogen``, aggregates in ``<db>/downsampled``); on 2.x the buckets' retention is
set when they are created (docker-compose.yml, ``deploy/influxdb/init``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from pghd.commands.influx_token import grafana_token

__all__ = [
    "AGGREGATES",
    "GROUP_COLUMNS",
    "WINDOWS",
    "Aggregate",
    "aggregate_query",
    "app",
    "collect",
    "downsample",
    "parse_since",
    "retention",
    "window_bounds",
]

app = typer.Typer(
    help="Retention and downsampling of the stored vitals; Grafana's read-only token.",
    no_args_is_help=True,
)

#: Aggregate functions computed per window; each becomes a field of the same name.
AGGREGATES = ("mean", "min", "max", "count")
#: Window length (Flux duration) -> measurement of its aggregates.
WINDOWS = {"1h": "vitals_1h", "1d": "vitals_1d"}
#: Tags of an aggregate series (``source`` is merged: fewer series, one value per channel).
GROUP_COLUMNS = ("patient_id", "metric", "channel", "unit")
_WINDOW_LENGTH = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def aggregate_query(*, bucket: str, start: datetime, stop: datetime, every: str, fn: str) -> str:
    """The Flux query of one aggregate of the vitals (the tasks run the same pipeline)."""
    columns = ", ".join(f'"{c}"' for c in GROUP_COLUMNS)
    return (
        f'from(bucket: "{bucket}")\n'
        f"  |> range(start: {_rfc3339(start)}, stop: {_rfc3339(stop)})\n"
        '  |> filter(fn: (r) => r._measurement == "vitals" and r._field == "value")\n'
        f"  |> group(columns: [{columns}])\n"
        f'  |> aggregateWindow(every: {every}, fn: {fn}, createEmpty: false, timeSrc: "_start")'
    )


def parse_since(since: str, *, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` (``90m``, ``6h``, ``7d``, ``2w``) or a time."""
    match = _DURATION.match(since.strip())
    if match:
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{since!r} is neither a duration (90m, 6h, 7d, 2w) nor an ISO 8601 time",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window_bounds(*, since: datetime, now: datetime, every: str) -> tuple[datetime, datetime]:
    """Whole windows only: ``since`` rounded down, ``now`` rounded down (the open one left)."""
    length = _WINDOW_LENGTH[every]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + ((since - epoch) // length) * length
    stop = epoch + ((now - epoch) // length) * length
    return start, stop


@dataclass
class Aggregate:
    """One window of one series: its tags, start time and the aggregates as fields."""

    measurement: str
    tags: dict[str, str]
    time: datetime
    fields: dict[str, float | int] = field(default_factory=dict)

    def point(self) -> dict[str, Any]:
        """influxdb-client's dictionary form of the point."""
        return {
            "measurement": self.measurement,
            "tags": self.tags,
            "fields": self.fields,
            "time": self.time,
        }


def collect(
    measurement: str, results: Iterable[tuple[str, Iterable[dict[str, Any]]]]
) -> list[Aggregate]:
    """Merge the records of each aggregate query (``(fn, records)``) into one point per window."""
    merged: dict[tuple[tuple[str, str], ...], Aggregate] = {}
    for fn, records in results:
        for record in records:
            tags = {c: str(record[c]) for c in GROUP_COLUMNS if record.get(c) is not None}
            at: datetime = record["_time"]
            key = (*sorted(tags.items()), ("_time", at.isoformat()))
            entry = merged.setdefault(key, Aggregate(measurement, tags, at))
            value = record["_value"]
            entry.fields[fn] = int(value) if fn == "count" else float(value)
    return sorted(merged.values(), key=lambda a: (a.time, sorted(a.tags.items())))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command()
def downsample(
    since: Annotated[
        str, typer.Option(help="Aggregate windows from this far back (7d, 6h) or this time.")
    ] = "2d",
    influx_url: Annotated[str, typer.Option(envvar="PGHD_INFLUX_URL")] = "http://127.0.0.1:8086",
    influx_token: Annotated[
        str, typer.Option(envvar="PGHD_INFLUX_TOKEN", help="InfluxDB token (1.8: user:password)")
    ] = "",
    influx_org: Annotated[str, typer.Option(envvar="PGHD_INFLUX_ORG")] = "-",
    influx_bucket: Annotated[
        str, typer.Option(envvar="PGHD_INFLUX_BUCKET", help="Bucket of the raw readings.")
    ] = "pghd/autogen",
    to_bucket: Annotated[
        str,
        typer.Option(
            envvar="PGHD_INFLUX_DOWNSAMPLED_BUCKET",
            help='Bucket of the aggregates ("pghd_downsampled" on 2.x, "pghd/downsampled" on 1.8).',
        ),
    ] = "pghd/downsampled",
    window: Annotated[
        list[str] | None, typer.Option("--window", help="1h and/or 1d (default both).")
    ] = None,
) -> None:
    """Write hourly and daily mean/min/max/count of the vitals (complete windows only)."""
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    windows = window or list(WINDOWS)
    for every in windows:
        if every not in WINDOWS:
            raise typer.BadParameter(
                f"{every!r}: use one of {sorted(WINDOWS)}", param_hint="--window"
            )
    now = datetime.now(UTC)
    begin = parse_since(since, now=now)
    with InfluxDBClient(url=influx_url, token=influx_token, org=influx_org, timeout=60_000) as c:
        query, write = c.query_api(), c.write_api(write_options=SYNCHRONOUS)
        for every in windows:
            start, stop = window_bounds(since=begin, now=now, every=every)
            if stop <= start:
                typer.echo(f"{every}: no complete window since {_rfc3339(begin)}")
                continue
            results = []
            for fn in AGGREGATES:
                flux = aggregate_query(
                    bucket=influx_bucket, start=start, stop=stop, every=every, fn=fn
                )
                tables = query.query(flux, org=influx_org)
                results.append((fn, [dict(r.values) for t in tables for r in t.records]))
            points = collect(WINDOWS[every], results)
            for first in range(0, len(points), 5000):
                chunk = [p.point() for p in points[first : first + 5000]]
                write.write(bucket=to_bucket, org=influx_org, record=chunk)
            typer.echo(
                f"{WINDOWS[every]}: {len(points)} aggregates of {_rfc3339(start)} .. "
                f"{_rfc3339(stop)} written to {to_bucket}"
            )


@app.command()
def retention(
    raw: Annotated[
        str, typer.Option(help="How long raw readings are kept (InfluxQL duration).")
    ] = "90d",
    downsampled: Annotated[
        str, typer.Option(help="How long the hourly/daily aggregates are kept.")
    ] = "1825d",
    database: Annotated[str, typer.Option(help="InfluxDB 1.8 database.")] = "pghd",
    influx_url: Annotated[str, typer.Option(envvar="PGHD_INFLUX_URL")] = "http://127.0.0.1:8086",
) -> None:
    """InfluxDB 1.8 only: raw readings in ``<db>/autogen``, aggregates in ``<db>/downsampled``."""
    import urllib.parse
    import urllib.request

    on = f'ON "{database}"'
    statements = [
        f'CREATE DATABASE "{database}"',
        f'ALTER RETENTION POLICY "autogen" {on} DURATION {raw} SHARD DURATION 1d',
        f'CREATE RETENTION POLICY "downsampled" {on} DURATION {downsampled} REPLICATION 1',
        f'ALTER RETENTION POLICY "downsampled" {on} DURATION {downsampled}',
    ]
    for statement in statements:
        body = urllib.parse.urlencode({"q": statement}).encode()
        request = urllib.request.Request(f"{influx_url}/query", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        if '"error"' in text:
            raise typer.BadParameter(f"{statement}: {text}")
    typer.echo(f"{database}/autogen keeps {raw}; {database}/downsampled keeps {downsampled}")


app.command("grafana-token")(grafana_token)
