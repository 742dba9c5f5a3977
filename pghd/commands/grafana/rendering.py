"""``pghd grafana render``: the care-team boards' panel data, drawn from their own Flux queries.

Grafana cannot run on the development machines, so this does by hand what the InfluxDB data
source does (:func:`interpolate`: variables and Flux macros), runs each panel's query and
hands the rows to :mod:`.plots`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from pghd.commands.grafana.plots import render_cohort, render_patient

__all__ = ["flux_string", "interpolate", "render"]

logger = logging.getLogger(__name__)

_FLUX_STRING_SPECIAL = re.compile(r'(["\\]|\$\{)')


def flux_string(value: str) -> str:
    """``value`` as a Flux string literal (quotes, backslashes and ``${`` escaped)."""
    return '"' + _FLUX_STRING_SPECIAL.sub(lambda m: "\\" + m.group(0), value) + '"'


def interpolate(
    flux: str,
    *,
    bucket: str,
    start: datetime,
    stop: datetime,
    window: str,
    patient: str = "",
    channel: str = "",
) -> str:
    """Do Grafana's interpolation of a dashboard query by hand: the variables in the format
    the query names (``regex``), then the data source's Flux macros."""
    from deploy.grafana.dashboards.queries import regex_escape  # the package is heavy: lazy

    values = {"${patient:regex}": regex_escape(patient), "${channel:regex}": regex_escape(channel)}
    for name, value in values.items():
        flux = flux.replace(name, value)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return (
        flux.replace("v.defaultBucket", flux_string(bucket))
        .replace("v.timeRangeStart", start.astimezone(UTC).strftime(stamp))
        .replace("v.timeRangeStop", stop.astimezone(UTC).strftime(stamp))
        .replace("v.windowPeriod", window)
    )


def render(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory of the PNG files.")] = Path(
        "docs/img"
    ),
    influx_url: Annotated[str, typer.Option(envvar="PGHD_INFLUX_URL")] = "http://127.0.0.1:8086",
    influx_token: Annotated[str, typer.Option(envvar="PGHD_INFLUX_TOKEN")] = "",
    influx_org: Annotated[str, typer.Option(envvar="PGHD_INFLUX_ORG")] = "-",
    bucket: Annotated[str, typer.Option(envvar="PGHD_INFLUX_BUCKET")] = "pghd/autogen",
    hours: Annotated[float, typer.Option(min=1, help="Time range: the last N hours.")] = 72,
    window: Annotated[str, typer.Option(help="v.windowPeriod (Flux duration).")] = "1h",
    patient: Annotated[
        str | None, typer.Option(help="Patient of the detail board (default: most anomalies).")
    ] = None,
) -> None:
    """Draw the data of the care-team boards' panels from the dashboards' own Flux queries."""
    import matplotlib

    matplotlib.use("Agg")
    from influxdb_client.client.influxdb_client import InfluxDBClient

    from deploy.grafana.dashboards import FLUX

    stop = datetime.now(UTC)
    start = stop - timedelta(hours=hours)
    out.mkdir(parents=True, exist_ok=True)
    with InfluxDBClient(url=influx_url, token=influx_token, org=influx_org, timeout=60_000) as c:
        api = c.query_api()

        def rows(name: str, **variables: str) -> list[dict[str, Any]]:
            text = interpolate(
                FLUX[name], bucket=bucket, start=start, stop=stop, window=window, **variables
            )
            return [dict(r.values) for t in api.query(text, org=influx_org) for r in t.records]

        path = render_cohort(rows, out=out)
        typer.echo(str(path))
        chosen = patient or _most_anomalous(api, bucket=bucket, org=influx_org, hours=hours)
        if chosen is None:
            typer.echo("no anomalies in the range: pass --patient", err=True)
            raise typer.Exit(1)
        if not rows("patient_channels", patient=chosen):
            typer.echo(f"patient {chosen} has no readings in the last 30 days", err=True)
            raise typer.Exit(1)
        path = render_patient(rows, patient=chosen, out=out)
        typer.echo(f"{path} (patient {chosen})")


def _most_anomalous(api: Any, *, bucket: str, org: str, hours: float) -> str | None:
    flux = (
        f"from(bucket: {flux_string(bucket)}) |> range(start: -{int(hours * 60)}m)"
        ' |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score")'
        ' |> group(columns: ["patient_id"]) |> count() |> group()'
        ' |> sort(columns: ["_value"], desc: true) |> limit(n: 1)'
    )
    found = [r.values["patient_id"] for t in api.query(flux, org=org) for r in t.records]
    return str(found[0]) if found else None
