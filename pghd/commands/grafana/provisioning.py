"""``pghd grafana provision``: folder, data sources and dashboards pushed to a running Grafana."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

__all__ = ["PROVISIONING", "ProvisionReport", "datasource_bodies", "provision", "push"]

logger = logging.getLogger(__name__)

PROVISIONING = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "provisioning"
_ENV_REFERENCE = re.compile(r"\$\{?(\w+)\}?")
#: Grafana's file expansion in provisioning files: the file's content, trimmed.
_FILE_REFERENCE = re.compile(r"\$__file\{([^}]*)\}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _expand(value: str, env: dict[str, str]) -> str:
    """``$__file{path}`` and ``$VAR``/``${VAR}`` as Grafana expands them in provisioning."""
    parts = _FILE_REFERENCE.split(value)  # literal text and file paths, alternating
    return "".join(
        _read(part) if n % 2 else _ENV_REFERENCE.sub(lambda m: env.get(m.group(1), ""), part)
        for n, part in enumerate(parts)
    )


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
                key: _expand(str(value), values)
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
        typer.Option(
            envvar="GRAFANA_INFLUXDB_TOKEN",
            help="The data source's read-only InfluxDB token (`pghd influx grafana-token`);"
            " default: the file the provisioning file names.",
        ),
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
    bodies = datasource_bodies(overrides=overrides)
    for body in bodies:
        if body["uid"] == INFLUX_UID:
            if influx_token:
                body["secureJsonData"] = {**body.get("secureJsonData", {}), "token": influx_token}
            if not body.get("secureJsonData", {}).get("token"):
                typer.echo(
                    "no InfluxDB token for the data source: pass --influx-token (a read-only"
                    " one: `pghd influx grafana-token`)",
                    err=True,
                )
                raise typer.Exit(1)
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
