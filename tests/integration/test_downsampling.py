"""``pghd influx retention`` and ``pghd influx downsample`` against a real InfluxDB 1.8; the
Flux tasks compose and k8s install, run by a real InfluxDB 2.7.

Readings of two patients are written over three whole past hours (two sources for one
channel, so the aggregates merge sources) and one reading in the current, still open hour;
the command must write one ``vitals_1h`` point per patient, channel and hour with the mean,
min, max and count of exactly those readings, skip the open hour, and give the same answer
when run again. The Flux tasks of ``deploy/influxdb/tasks`` are checked to run the same
pipeline as the command.

The command runs in-process with its clock pinned to :data:`NOW` (12:30 UTC of the day before
the session), so "the current hour" is the same however long the run takes and whatever the
hour: a run crossing the top of an hour must not close the open hour under the test.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from typer.testing import CliRunner

import pghd.commands.influx
from deploy.local.harness import wait_for
from deploy.local.influxdb import InfluxServer
from deploy.local.influxdb2 import Influx2Server
from pghd.cli import app
from pghd.commands.influx import AGGREGATES, GROUP_COLUMNS, aggregate_query
from tests.clock import ANCHOR

DATABASE = "pghd_downsampling"
TASKS = Path(__file__).resolve().parents[2] / "deploy" / "influxdb" / "tasks"
Reading = tuple[str, str, str, datetime, float]
NOW = ANCHOR + timedelta(minutes=30)
"""The commands' clock: 12:30 UTC the day before the session (InfluxDB keeps it: 30 d)."""


class _PinnedClock(datetime):
    """``datetime`` whose ``now()`` is :data:`NOW`."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _PinnedClock:  # type: ignore[override]
        pinned = NOW if tz is None else NOW.astimezone(tz)
        return cls.fromtimestamp(pinned.timestamp(), tz=pinned.tzinfo)


@pytest.fixture
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The ``pghd influx`` commands run with their clock at :data:`NOW`."""
    monkeypatch.setattr(pghd.commands.influx, "datetime", _PinnedClock)
    return NOW


def _readings(hour0: datetime) -> list[Reading]:
    readings: list[Reading] = []
    for h in range(3):
        for m in range(0, 60, 15):  # heart rate from a watch and a ring, alternating
            source = "watch" if m % 30 == 0 else "ring"
            readings.append(
                ("ds-p1", "heart_rate", source, hour0 + timedelta(hours=h, minutes=m), 60.0 + h + m)
            )
        readings.append(("ds-p1", "spo2", "watch", hour0 + timedelta(hours=h, minutes=5), 95.0 + h))
        readings.append(("ds-p2", "heart_rate", "watch", hour0 + timedelta(hours=h), 80.0 - h))
    return readings


def _points(readings: list[Reading]) -> list[dict[str, Any]]:
    return [
        {
            "measurement": "vitals",
            "tags": {
                "patient_id": patient,
                "metric": channel,
                "channel": channel,
                "source": source,
                "unit": "/min" if channel == "heart_rate" else "%",
            },
            "fields": {"value": value, "event_id": f"ev-{n}"},
            "time": at,
        }
        for n, (patient, channel, source, at, value) in enumerate(readings)
    ]


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hourly(influx: InfluxServer) -> dict[tuple[str, str, datetime], dict[str, float]]:
    rows = influx.query(
        f'from(bucket: "{DATABASE}/downsampled")'
        f" |> range(start: {_rfc3339(NOW - timedelta(days=1))}, stop: {_rfc3339(NOW)})"
        ' |> filter(fn: (r) => r._measurement == "vitals_1h")'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    return {
        (r["patient_id"], r["channel"], r["_time"]): {a: r[a] for a in AGGREGATES} for r in rows
    }


@pytest.fixture(scope="module")
def seeded(influx: InfluxServer) -> tuple[datetime, list[Reading]]:
    result = CliRunner().invoke(
        app,
        [
            *("influx", "retention", "--database", DATABASE, "--raw", "30d"),
            *("--downsampled", "730d", "--influx-url", influx.url),
        ],
    )
    assert result.exit_code == 0, result.output
    now = NOW
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    hour0 = this_hour - timedelta(hours=4)
    readings = _readings(hour0)
    open_hour = ("ds-p1", "heart_rate", "watch", this_hour + (now - this_hour) / 2, 200.0)
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=f"{DATABASE}/autogen", org=influx.org, record=_points([*readings, open_hour])
        )
    return hour0, readings


def _run(influx: InfluxServer) -> str:
    result = CliRunner().invoke(
        app,
        [
            *("influx", "downsample", "--since", "6h", "--window", "1h"),
            *("--influx-url", influx.url, "--influx-token", influx.token),
            *("--influx-org", influx.org, "--influx-bucket", f"{DATABASE}/autogen"),
            *("--to-bucket", f"{DATABASE}/downsampled"),
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_retention_policies_are_set(influx: InfluxServer, seeded: object) -> None:
    result = influx.influxql(f'SHOW RETENTION POLICIES ON "{DATABASE}"')
    (series,) = result["results"][0]["series"]
    policies = {row[0]: row[1] for row in series["values"]}
    assert policies["autogen"] == "720h0m0s"
    assert policies["downsampled"] == "17520h0m0s"


def test_hourly_aggregates_match_the_readings(
    influx: InfluxServer, seeded: tuple[datetime, list[Reading]], pinned_clock: datetime
) -> None:
    hour0, readings = seeded
    output = _run(influx)
    assert "vitals_1h: 9 aggregates" in output, output
    expected: dict[tuple[str, str, datetime], list[float]] = {}
    for patient, channel, _source, at, value in readings:
        start = at.replace(minute=0, second=0, microsecond=0)
        expected.setdefault((patient, channel, start), []).append(value)
    got = _hourly(influx)
    assert set(got) == set(expected)
    for key, values in expected.items():
        row = got[key]
        assert row["mean"] == pytest.approx(fmean(values)), key
        assert row["min"] == min(values) and row["max"] == max(values), key
        assert row["count"] == len(values), key
    # ds-p1's heart rate: 4 readings an hour from two sources, merged into one series.
    assert got[("ds-p1", "heart_rate", hour0)] == {
        "mean": pytest.approx(82.5),
        "min": 60.0,
        "max": 105.0,
        "count": 4,
    }


def test_a_second_run_rewrites_the_same_points(
    influx: InfluxServer, seeded: tuple[datetime, list[Reading]], pinned_clock: datetime
) -> None:
    _run(influx)
    before = _hourly(influx)
    _run(influx)
    assert _hourly(influx) == before
    assert len(before) == 9


def test_the_flux_tasks_run_the_commands_pipeline() -> None:
    files = sorted(TASKS.glob("*.flux"))
    assert [f.name for f in files] == ["vitals-daily.flux", "vitals-hourly.flux"]
    reference = aggregate_query(
        bucket="pghd",
        start=datetime(2026, 1, 1, tzinfo=UTC),
        stop=datetime(2026, 1, 2, tzinfo=UTC),
        every="1h",
        fn="fn",
    ).splitlines()
    for path, every in zip(files, ["1d", "1h"], strict=True):
        text = path.read_text()
        assert re.search(rf"option task = \{{name: \"pghd-vitals-\w+\", every: {every}", text)
        for line in (reference[2], reference[3]):  # the filter and the grouping
            assert line.strip() in text, (path.name, line)
        assert reference[4].strip().replace("every: 1h", f"every: {every}") in text, path.name
        for fn in AGGREGATES:
            assert f'downsample(fn: {fn}, field: "{fn}")' in text, (path.name, fn)
        assert 'to(bucket: "pghd_downsampled", org: "pghd")' in text
        assert all(f'"{c}"' in text for c in GROUP_COLUMNS)


def _run_task(influx2: Influx2Server, flux: str, *, scheduled_for: datetime) -> None:
    """Create the task on InfluxDB 2.7 as the init script does, run it once as the
    scheduler would at ``scheduled_for`` (its ``now()``), and wait for it to succeed."""
    org_id = influx2.api("GET", f"/api/v2/orgs?org={influx2.org}")["orgs"][0]["id"]
    task = influx2.api("POST", "/api/v2/tasks", {"orgID": org_id, "flux": flux})
    try:
        run = influx2.api(
            "POST", f"/api/v2/tasks/{task['id']}/runs", {"scheduledFor": _rfc3339(scheduled_for)}
        )
        path = f"/api/v2/tasks/{task['id']}/runs/{run['id']}"

        def finished() -> dict[str, Any] | None:
            try:
                state = influx2.api("GET", path)
            except RuntimeError as exc:
                # Between leaving the queue and reaching the run log, a run is briefly found
                # nowhere (InfluxDB answers 404): ask again.
                if "HTTP 404" in str(exc):
                    return None
                raise
            return state if state["status"] in ("success", "failed") else None

        done = wait_for(
            finished,
            timeout=60,
            what=f"task {task['name']} to finish",
        )
        logs = influx2.api("GET", f"{path}/logs").get("events", [])
        assert done["status"] == "success", [event["message"] for event in logs]
    finally:
        influx2.api("DELETE", f"/api/v2/tasks/{task['id']}")


@pytest.mark.parametrize(
    ("task", "window", "measurement"),
    [
        ("vitals-hourly.flux", timedelta(hours=1), "vitals_1h"),
        ("vitals-daily.flux", timedelta(days=1), "vitals_1d"),
    ],
)
def test_the_flux_tasks_aggregate_on_influxdb2(
    influx2: Influx2Server, task: str, window: timedelta, measurement: str
) -> None:
    """The shipped tasks themselves, on the shipped InfluxDB, run at a pinned time: each
    writes its last two whole windows of ``pghd`` into ``pghd_downsampled``, sources merged
    (hourly at 11:00: the 09:00 and 10:00 windows; daily at midnight: that day)."""
    hour0 = NOW.replace(minute=0) - timedelta(hours=4)  # 08:00 the day before the session
    readings = _readings(hour0)  # 08:00-10:45
    with InfluxDBClient(url=influx2.url, token=influx2.token, org=influx2.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=influx2.bucket, org=influx2.org, record=_points(readings)
        )
    influx2.create_database("pghd_downsampled")
    if window == timedelta(hours=1):
        run_at = hour0 + timedelta(hours=3)
    else:
        run_at = hour0.replace(hour=0) + timedelta(days=1)
    _run_task(influx2, (TASKS / task).read_text(), scheduled_for=run_at)

    rows = influx2.query(
        'from(bucket: "pghd_downsampled")'
        f" |> range(start: {_rfc3339(run_at - 3 * window)}, stop: {_rfc3339(run_at)})"
        f' |> filter(fn: (r) => r._measurement == "{measurement}" and r.patient_id =~ /^ds-p/)'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    got = {(r["patient_id"], r["channel"], r["_time"]): {a: r[a] for a in AGGREGATES} for r in rows}
    expected: dict[tuple[str, str, datetime], list[float]] = {}
    for patient, channel, _source, at, value in readings:
        start = datetime.fromtimestamp(
            at.timestamp() // window.total_seconds() * window.total_seconds(), UTC
        )
        if start >= run_at - 2 * window:  # the task's range: the last two windows
            expected.setdefault((patient, channel, start), []).append(value)
    assert set(got) == set(expected)
    assert len(got) == (6 if window == timedelta(hours=1) else 3)
    for key, values in expected.items():
        assert got[key] == {
            "mean": pytest.approx(fmean(values)),
            "min": min(values),
            "max": max(values),
            "count": len(values),
        }, key
