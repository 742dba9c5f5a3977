"""``pghd influx grafana-token``: a read-only InfluxDB 2.x token for Grafana's data source.

Grafana's users can send any Flux through its data source, so the data source's token
decides what Grafana can do to InfluxDB. This makes (or keeps) one authorization that may
only *read* the buckets the dashboards read (``pghd``), nothing else: no write, no other
bucket, no tasks, no users. It talks to InfluxDB's HTTP API with an operator token:

1. ``GET /api/v2/orgs?org=``, ``GET /api/v2/buckets?orgID=&name=`` for the ids;
2. ``GET /api/v2/authorizations?orgID=``: an active authorization described
   :data:`DESCRIPTION` whose token is the current one (``--out`` file) and whose permissions
   are exactly the wanted ones is kept; otherwise
3. ``POST /api/v2/authorizations`` creates a new one (InfluxDB chooses the token), and the
   older ones with the same description are deleted (``DELETE /api/v2/authorizations/{id}``).

docker-compose.yml runs it once before Grafana starts (service ``grafana-token``), writing
the token to a volume Grafana mounts read-only; the data source reads it there
(``$__file{...}`` in ``deploy/grafana/provisioning/datasources/influxdb.yaml``). Elsewhere
run it by hand and give Grafana the printed token (docs/security.md, "Grafana").
InfluxDB 1.8 has no such authorizations (see docs/security.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

__all__ = [
    "DASHBOARD_BUCKETS",
    "DESCRIPTION",
    "InfluxRefused",
    "ensure_read_token",
    "grafana_token",
    "read_permissions",
]

#: The description that marks the authorization this command manages.
DESCRIPTION = "pghd grafana: read-only (dashboards)"
#: The buckets the dashboards read (deploy/grafana/dashboards/queries.py: v.defaultBucket).
DASHBOARD_BUCKETS = ("pghd",)


class InfluxRefused(RuntimeError):
    """InfluxDB answered an error (or nothing was found)."""


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise InfluxRefused(
            f"InfluxDB {response.request.method} {response.request.url.path}:"
            f" HTTP {response.status_code}: {response.text[:300]}"
        )
    return response.json() if response.content else {}


def _org_id(client: httpx.Client, org: str) -> str:
    orgs = _json(client.get("/api/v2/orgs", params={"org": org})).get("orgs") or []
    if not orgs:
        raise InfluxRefused(f"no InfluxDB organization {org!r}")
    return str(orgs[0]["id"])


def _bucket_id(client: httpx.Client, org_id: str, name: str) -> str:
    response = client.get("/api/v2/buckets", params={"orgID": org_id, "name": name})
    found = [] if response.status_code == 404 else _json(response).get("buckets") or []
    if not found:
        raise InfluxRefused(f"no InfluxDB bucket {name!r}")
    return str(found[0]["id"])


def read_permissions(org_id: str, bucket_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Read access to these buckets and nothing else (InfluxDB's permission objects)."""
    return [
        {"action": "read", "resource": {"type": "buckets", "id": bucket, "orgID": org_id}}
        for bucket in sorted(set(bucket_ids))
    ]


def _grants(authorization: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (p["action"], p["resource"]["type"], str(p["resource"].get("id")))
        for p in authorization.get("permissions", [])
    }


def ensure_read_token(
    client: httpx.Client, *, org: str, buckets: Sequence[str], current: str | None = None
) -> tuple[str, bool]:
    """The read-only token of ``buckets`` and whether it was made now (see the module doc).

    ``client`` has InfluxDB's base URL and an operator token (``Authorization: Token ...``).
    """
    org_id = _org_id(client, org)
    wanted = read_permissions(org_id, [_bucket_id(client, org_id, name) for name in buckets])
    listed = _json(client.get("/api/v2/authorizations", params={"orgID": org_id}))
    ours = [a for a in listed.get("authorizations", []) if a.get("description") == DESCRIPTION]
    for authorization in ours:
        if (
            current
            and authorization.get("token") == current
            and authorization.get("status") == "active"
            and _grants(authorization) == _grants({"permissions": wanted})
        ):
            return current, False
    body = {"orgID": org_id, "description": DESCRIPTION, "permissions": wanted}
    made = _json(client.post("/api/v2/authorizations", json=body))
    for stale in ours:
        _json(client.delete(f"/api/v2/authorizations/{stale['id']}"))
    return str(made["token"]), True


def _write(path: Path, token: str) -> None:
    """Replace ``path`` atomically; readable by Grafana's own user (another uid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(name, 0o644)
    os.replace(name, path)


def grafana_token(
    bucket: Annotated[
        list[str] | None,
        typer.Option("--bucket", help="A bucket Grafana may read (repeat; default: pghd)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Keep the token in this file (reused while still valid); default: print it.",
        ),
    ] = None,
    influx_url: Annotated[str, typer.Option(envvar="PGHD_INFLUX_URL")] = "http://127.0.0.1:8086",
    influx_token: Annotated[
        str,
        typer.Option(
            envvar="PGHD_INFLUX_TOKEN",
            help="An operator token (may create authorizations).",
            show_default=False,
        ),
    ] = "",
    influx_org: Annotated[str, typer.Option(envvar="PGHD_INFLUX_ORG")] = "pghd",
) -> None:
    """Make or keep the read-only InfluxDB 2.x token of Grafana's data source."""
    current = out.read_text().strip() if out is not None and out.is_file() else None
    headers = {"Authorization": f"Token {influx_token}"}
    try:
        with httpx.Client(base_url=influx_url, headers=headers, timeout=20.0) as client:
            token, made = ensure_read_token(
                client, org=influx_org, buckets=bucket or DASHBOARD_BUCKETS, current=current
            )
    except (InfluxRefused, httpx.TransportError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if out is None:
        typer.echo(token)
        return
    if made:
        _write(out, token)
    typer.echo(f"{'made' if made else 'kept'} the read-only Grafana token in {out}", err=True)
