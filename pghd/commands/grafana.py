"""``pghd grafana``: dashboards as code.

``pghd grafana generate`` writes the dashboards of :mod:`deploy.grafana.dashboards` as JSON
into the directory Grafana's file provider reads (``deploy/grafana/provisioning/dashboards/
json``, mounted into the compose Grafana); ``--check`` only reports whether the files there
are up to date (exit 1 if not), for CI.

``pghd grafana provision --url --token`` pushes the same folder, data sources
(``provisioning/datasources/*.yaml``) and dashboards to a running Grafana through its HTTP
API (grafana-client), for a Grafana that does not read the provisioning files (a managed or
shared one). Re-running it updates what exists instead of adding copies.

``pghd grafana render --out docs/img`` runs the dashboards' Flux queries against an
InfluxDB and draws their data with matplotlib (the pictures in docs/care-teams.md).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

__all__ = [
    "ProvisionReport",
    "app",
    "datasource_bodies",
    "generate",
    "interpolate",
    "provision",
    "push",
    "render",
]

logger = logging.getLogger(__name__)

PROVISIONING = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "provisioning"
_ENV_REFERENCE = re.compile(r"\$\{?(\w+)\}?")

app = typer.Typer(help="Grafana dashboards as code.", no_args_is_help=True)


@app.command()
def generate(
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            file_okay=False,
            help="Directory of the JSON files (default: the provisioning directory).",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the files are stale.")
    ] = False,
) -> None:
    """Write the dashboards' JSON (deterministic: unchanged files are not rewritten)."""
    from deploy.grafana import dashboards  # heavy (foundation SDK): lazy

    target = out_dir if out_dir is not None else dashboards.OUTPUT_DIR
    if check:
        expected = dashboards.rendered_files()
        present = {p.name for p in target.glob("*.json")} if target.is_dir() else set()
        stale = sorted(
            name
            for name, text in expected.items()
            if not (target / name).is_file() or (target / name).read_text() != text
        )
        extra = sorted(present - expected.keys())
        for name in stale:
            typer.echo(f"stale: {target / name}", err=True)
        for name in extra:
            typer.echo(f"not generated: {target / name}", err=True)
        if stale or extra:
            typer.echo("run `pghd grafana generate`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(expected)} dashboards up to date in {target}")
        return
    paths = dashboards.generate(target)
    for path in paths:
        typer.echo(str(path))
    typer.echo(f"{len(paths)} dashboards generated in {target}")


@dataclass
class ProvisionReport:
    """What one provisioning run did: ``"created"`` or ``"updated"`` per object."""

    folder: str = ""
    datasources: dict[str, str] = field(default_factory=dict)
    dashboards: dict[str, str] = field(default_factory=dict)


def datasource_bodies(
    directory: Path = PROVISIONING / "datasources",
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The API bodies of the provisioned data sources, ``$VAR`` references expanded from ``env``.

    ``overrides`` maps a data source uid to fields replacing the file's (e.g. its ``url``).
    """
    values = dict(os.environ) if env is None else env
    bodies = []
    for path in sorted(directory.glob("*.yaml")):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            body = {k: v for k, v in source.items() if k not in {"orgId", "version", "editable"}}
            secure = {
                key: _ENV_REFERENCE.sub(lambda m: values.get(m.group(1), ""), str(value))
                for key, value in body.get("secureJsonData", {}).items()
            }
            if secure:
                body["secureJsonData"] = secure
            body.update((overrides or {}).get(body["uid"], {}))
            bodies.append(body)
    return bodies


def push(
    api: Any,
    *,
    folder_uid: str,
    folder_title: str,
    datasources: list[dict[str, Any]],
    dashboards: dict[str, dict[str, Any]],
) -> ProvisionReport:
    """Create or update the folder, the data sources and the dashboards (in that order)."""
    from grafana_client.client import GrafanaClientError

    report = ProvisionReport()
    try:
        existing = api.folder.get_folder(folder_uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(folder_title, uid=folder_uid)
        report.folder = "created"
    else:
        if existing.get("title") != folder_title:
            api.folder.update_folder(folder_uid, title=folder_title, overwrite=True)
        report.folder = "updated"
    for body in datasources:
        uid = body["uid"]
        try:
            current = api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.datasource.create_datasource(body)
            report.datasources[uid] = "created"
        else:
            api.datasource.update_datasource_by_uid(uid, {**body, "id": current.get("id")})
            report.datasources[uid] = "updated"
    for name, board in dashboards.items():
        answer = api.dashboard.update_dashboard(
            {
                "dashboard": {**board, "id": None},
                "folderUid": folder_uid,
                "overwrite": True,
                "message": "pghd grafana provision",
            }
        )
        report.dashboards[name] = "updated" if int(answer.get("version", 1)) > 1 else "created"
    return report


@app.command()
def provision(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example.org")],
    token: Annotated[
        str,
        typer.Option(envvar="GRAFANA_TOKEN", help="Service account token (Editor or Admin)."),
    ],
    folder_uid: Annotated[str, typer.Option(help="Uid of the dashboards' folder.")] = "pghd",
    folder_title: Annotated[str, typer.Option(help="Title of that folder.")] = "pghd",
    influx_url: Annotated[
        str | None, typer.Option(help="InfluxDB URL as Grafana reaches it (default: the file's).")
    ] = None,
    influx_token: Annotated[
        str | None,
        typer.Option(envvar="INFLUXDB_TOKEN", help="InfluxDB token of the data source."),
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Prometheus URL as Grafana reaches it.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = 10.0,
) -> None:
    """Push the folder, data sources and dashboards to a running Grafana (idempotent)."""
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    from deploy.grafana import dashboards
    from deploy.grafana.dashboards.common import INFLUX_UID, PROMETHEUS_UID

    overrides: dict[str, dict[str, Any]] = {}
    if influx_url:
        overrides[INFLUX_UID] = {"url": influx_url}
    if prometheus_url:
        overrides[PROMETHEUS_UID] = {"url": prometheus_url}
    env = {**os.environ, **({"INFLUXDB_TOKEN": influx_token} if influx_token else {})}
    bodies = datasource_bodies(overrides=overrides, env=env)
    boards = {
        name: dashboards.dashboard_json(make()) for name, make in dashboards.DASHBOARDS.items()
    }
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        report = push(
            api,
            folder_uid=folder_uid,
            folder_title=folder_title,
            datasources=bodies,
            dashboards=boards,
        )
    except GrafanaException as exc:
        typer.echo(f"Grafana answered {exc.status_code}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"folder {folder_uid}: {report.folder}")
    for uid, what in report.datasources.items():
        typer.echo(f"data source {uid}: {what}")
    for name, what in report.dashboards.items():
        typer.echo(f"dashboard {name}: {what}")


_SEVERITY_COLOURS = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}


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
    """Do Grafana's interpolation of a dashboard query by hand (variables and Flux macros)."""
    values = {"${bucket}": bucket, "${patient}": patient, "${channel}": channel}
    for name, value in values.items():
        flux = flux.replace(name, value)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return (
        flux.replace("v.timeRangeStart", start.astimezone(UTC).strftime(stamp))
        .replace("v.timeRangeStop", stop.astimezone(UTC).strftime(stamp))
        .replace("v.windowPeriod", window)
    )


@app.command()
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

        path = _render_cohort(rows, out=out)
        typer.echo(str(path))
        chosen = patient or _most_anomalous(api, bucket=bucket, org=influx_org, hours=hours)
        if chosen is None:
            typer.echo("no anomalies in the range: pass --patient", err=True)
            raise typer.Exit(1)
        path = _render_patient(rows, patient=chosen, out=out)
        typer.echo(f"{path} (patient {chosen})")


def _most_anomalous(api: Any, *, bucket: str, org: str, hours: float) -> str | None:
    flux = (
        f'from(bucket: "{bucket}") |> range(start: -{int(hours * 60)}m)'
        ' |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score")'
        ' |> group(columns: ["patient_id"]) |> count() |> group()'
        ' |> sort(columns: ["_value"], desc: true) |> limit(n: 1)'
    )
    found = [r.values["patient_id"] for t in api.query(flux, org=org) for r in t.records]
    return str(found[0]) if found else None


Rows = Callable[..., list[dict[str, Any]]]


def _render_cohort(rows: Rows, *, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9), gridspec_kw={"height_ratios": [1, 1.3]})
    (sev_ax, time_ax), (fresh_ax, table_ax) = axes
    counts = {r["severity"]: int(r["patients"]) for r in rows("cohort_patients_by_severity")}
    names = [s for s in _SEVERITY_COLOURS if s in counts] or list(_SEVERITY_COLOURS)
    sev_ax.bar(
        names, [counts.get(n, 0) for n in names], color=[_SEVERITY_COLOURS[n] for n in names]
    )
    sev_ax.set_title("Patients with anomalies in the last 24 h, by severity")
    sev_ax.set_ylabel("patients")
    series: dict[str, list[tuple[datetime, int]]] = {}
    for r in rows("cohort_anomalies_over_time"):
        series.setdefault(r["severity"], []).append((r["_time"], int(r["anomalies"])))
    for severity, points in sorted(series.items()):
        points.sort()
        time_ax.plot(
            *zip(*points, strict=True),
            label=severity,
            marker=".",
            lw=1,
            color=_SEVERITY_COLOURS.get(severity),
        )
    time_ax.set_title("Anomalies per hour, by severity")
    time_ax.legend()
    time_ax.tick_params(axis="x", labelrotation=30)
    fresh = rows("cohort_freshness")
    ages = [float(r["age_seconds"]) for r in fresh]
    colours = [_freshness_colour(age) for age in ages]
    fresh_ax.barh([r["patient_id"] for r in fresh], [a / 60 for a in ages], color=colours)
    fresh_ax.invert_yaxis()
    fresh_ax.set_title("Data freshness: time since each patient's last reading (< 1 h green)")
    fresh_ax.set_xlabel("minutes")
    latest = rows("cohort_latest_vitals")
    columns = [
        "heart_rate",
        "spo2",
        "body_temperature",
        "blood_pressure.systolic",
        "respiratory_rate",
        "blood_glucose",
    ]
    cells = [[r["patient_id"]] + [_fmt(r.get(c)) for c in columns] for r in latest]
    table_ax.axis("off")
    table_ax.set_title("Latest value per vital")
    if cells:
        headers = ["patient", "HR /min", "SpO2 %", "temp °C", "SBP mmHg", "RR /min", "glucose"]
        table = table_ax.table(cellText=cells, colLabels=headers, loc="upper center")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.2)
    fig.suptitle("Cohort overview (data of the board's panels)")
    fig.tight_layout()
    path = out / "cohort-overview.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _render_patient(rows: Rows, *, patient: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    channels = [str(r["_value"]) for r in rows("patient_channels", patient=patient)]
    flagged = {c for c in channels if rows("patient_anomaly_points", patient=patient, channel=c)}
    usual = [c for c in ("heart_rate", "spo2") if c in channels and c not in flagged]
    shown = (sorted(flagged) + usual)[:4] or channels[:4]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(14, 2.6 * len(shown)), sharex=True, squeeze=False
    )
    for ax, channel in zip(axes[:, 0], shown, strict=True):
        variables = {"patient": patient, "channel": channel}
        band = rows("patient_baseline_band", **variables)
        if band:
            ax.fill_between(
                [r["_time"] for r in band],
                [r["low"] for r in band],
                [r["high"] for r in band],
                color="tab:green",
                alpha=0.2,
                step="post",
                label="baseline band",
            )
        readings = rows("patient_readings", **variables)
        ax.plot(
            [r["_time"] for r in readings],
            [r["reading"] for r in readings],
            color="tab:blue",
            lw=1,
            label="reading (mean per window)",
        )
        for r in rows("patient_anomaly_points", **variables):
            ax.scatter(
                r["_time"], r["anomaly"], color=_SEVERITY_COLOURS.get(r["severity"]), s=18, zorder=3
            )
        ax.set_ylabel(channel, fontsize=8)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[0, 0].set_title(
        f"Patient detail: {patient} (dots: anomalies, orange warning, red critical)"
    )
    fig.tight_layout()
    path = out / "patient-detail.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _freshness_colour(age_s: float) -> str:
    """The board's thresholds: green under 1 h, orange under 6 h, red beyond."""
    return "tab:green" if age_s < 3600 else "tab:orange" if age_s < 6 * 3600 else "tab:red"


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f}"
