"""Grafana's InfluxDB token on a real InfluxDB 2.7: it reads the dashboards' bucket, nothing more.

The token is made exactly as docker-compose.yml's ``grafana-token`` service makes it
(``pghd influx grafana-token --out FILE`` with the operator token), then used as Grafana's
data source would use it: a Flux query of bucket ``pghd`` succeeds; a write (to ``pghd`` or
anywhere), and a read of another bucket, are refused.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from typer.testing import CliRunner

from deploy.local.influxdb2 import Influx2Server
from pghd.cli import app
from pghd.commands.influx_token import DESCRIPTION

OTHER_BUCKET = "pghd_grafana_other"
LINE = "vitals,patient_id=tok-p1,channel=heart_rate value=61"


def _make(influx2: Influx2Server, out: Path) -> str:
    result = CliRunner().invoke(
        app, ["influx", "grafana-token", "--out", str(out)], env=influx2.env()
    )
    assert result.exit_code == 0, result.output
    return out.read_text().strip()


def _ours(influx2: Influx2Server) -> list[dict[str, object]]:
    listed = influx2.api("GET", "/api/v2/authorizations")["authorizations"]
    return [a for a in listed if a.get("description") == DESCRIPTION]


def _write(influx2: Influx2Server, token: str, bucket: str) -> httpx.Response:
    return httpx.post(
        f"{influx2.url}/api/v2/write",
        params={"org": influx2.org, "bucket": bucket, "precision": "s"},
        headers={"Authorization": f"Token {token}"},
        content=LINE,
        timeout=10,
    )


def _query(influx2: Influx2Server, token: str, bucket: str) -> list[dict[str, object]]:
    flux = f'from(bucket: "{bucket}") |> range(start: -1h)'
    flux += ' |> filter(fn: (r) => r.patient_id == "tok-p1")'
    with InfluxDBClient(url=influx2.url, token=token, org=influx2.org) as client:
        tables = client.query_api().query(flux, org=influx2.org)
        return [dict(r.values) for t in tables for r in t.records]


@pytest.fixture(scope="module")
def written(influx2: Influx2Server) -> Influx2Server:
    influx2.create_database(OTHER_BUCKET)
    with InfluxDBClient(url=influx2.url, token=influx2.token, org=influx2.org) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        for bucket in (influx2.bucket, OTHER_BUCKET):
            api.write(bucket=bucket, org=influx2.org, record=LINE)
    return influx2


def test_the_grafana_token_reads_the_dashboards_bucket_and_cannot_write(
    written: Influx2Server, tmp_path: Path
) -> None:
    token = _make(written, tmp_path / "influxdb-token")
    assert token and token != written.token
    # What the dashboards do: read bucket "pghd".
    rows = _query(written, token, written.bucket)
    assert [r["_value"] for r in rows] == [61.0]
    # Writes are refused, to the dashboards' bucket and to any other.
    for bucket in (written.bucket, OTHER_BUCKET):
        response = _write(written, token, bucket)
        assert response.status_code in (401, 403, 404), (bucket, response.text)
    assert _write(written, written.token, written.bucket).status_code == 204  # the control
    # Another bucket is invisible to it.
    with pytest.raises(ApiException) as refused:
        _query(written, token, OTHER_BUCKET)
    assert refused.value.status in (401, 403, 404)
    # It can manage nothing either: no authorizations, no buckets.
    headers = {"Authorization": f"Token {token}"}
    body = {"orgID": written._org_id(), "name": "pghd_grafana_made", "retentionRules": []}
    made = httpx.post(f"{written.url}/api/v2/buckets", json=body, headers=headers, timeout=10)
    assert made.status_code in (401, 403, 404), made.text
    (authorization,) = _ours(written)
    permissions = authorization["permissions"]
    assert isinstance(permissions, list)
    assert [(p["action"], p["resource"]["type"]) for p in permissions] == [("read", "buckets")]


def test_a_second_run_keeps_a_valid_token_and_replaces_a_lost_one(
    written: Influx2Server, tmp_path: Path
) -> None:
    out = tmp_path / "influxdb-token"
    first = _make(written, out)
    assert _make(written, out) == first  # kept: Grafana's restart changes nothing
    assert len(_ours(written)) == 1
    out.write_text("a-token-influxdb-never-made\n")  # the file and InfluxDB disagree
    second = _make(written, out)
    assert second != first
    (authorization,) = _ours(written)  # the old one was deleted, not left behind
    assert authorization["token"] == second
    assert _write(written, first, written.bucket).status_code == 401
