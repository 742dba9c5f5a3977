"""Every Flux query of the dashboards, run on a real InfluxDB against a known cohort.

The texts come from :data:`deploy.grafana.dashboards.FLUX`, the mapping the dashboards are
built from; Grafana's interpolation is done here by hand (``${bucket}``, ``${patient}``,
``${channel}``, ``v.timeRangeStart``/``v.timeRangeStop`` as RFC 3339 times and
``v.windowPeriod`` as a duration). :data:`CASES` holds one check per query, and a query
without one fails :func:`test_every_dashboard_query_has_a_case`.

The cohort is written relative to InfluxDB's clock (queries such as ``range(start: -24h)``
look back from its ``now()``, as Grafana runs them), on whole minutes (so a 1-minute window
ends one minute after its point), with the measurements, tags and fields of
:mod:`processors.judge`:

- ``dash-p1``: heart rate every 10 min for 2 h from two sources, SpO2 every 30 min, a
  heart-rate baseline band, anomalies: two critical heart rate, one warning SpO2;
- ``dash-p2``: heart rate and systolic pressure every 30 min, last reading 2 h ago, one
  warning anomaly;
- ``dash-p3``: last reading 3 days ago, one critical anomaly 2 days ago (outside 24 h).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from typer.testing import CliRunner

from deploy.grafana.dashboards import FLUX
from deploy.local.influxdb import InfluxServer
from pghd.cli import app

DATABASE = "pghd_dashboards"
WINDOW = timedelta(minutes=1)
Rows = list[dict[str, Any]]


def _point(
    measurement: str, tags: dict[str, str], fields: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {"measurement": measurement, "tags": tags, "fields": fields, "time": at}


@dataclass
class Cohort:
    """What was written, to derive the expected answers from."""

    now: datetime
    bucket: str
    vitals: list[tuple[str, str, str, datetime, float]] = field(default_factory=list)
    bands: list[tuple[str, str, datetime, float, float]] = field(default_factory=list)
    anomalies: list[tuple[str, str, str, datetime, float, str]] = field(default_factory=list)
    episodes: dict[int, tuple[str, str]] = field(default_factory=dict)
    resting: list[tuple[str, str, datetime, float]] = field(default_factory=list)
    """(patient, kind, time, value): resting heart rates the processors computed."""
    """index into ``anomalies`` -> (episode id, phase) of that anomaly."""

    def points(self) -> list[dict[str, Any]]:
        """The InfluxDB points of the cohort (influxdb-client's dictionary form)."""
        points = []
        for n, (patient, channel, source, at, value) in enumerate(self.vitals):
            tags = {"patient_id": patient, "metric": channel.split(".")[0], "channel": channel}
            points.append(
                _point(
                    "vitals",
                    {**tags, "source": source, "unit": "/min"},
                    {"value": value, "event_id": f"ev-{n}"},
                    at,
                )
            )
        for patient, kind, at, value in self.resting:
            tags = {"patient_id": patient, "kind": kind, "unit": "/min"}
            fields = {"value": value, "samples": 40}
            points.append(_point("resting_heart_rate", tags, fields, at))
        for patient, channel, at, low, high in self.bands:
            mean, spread = (low + high) / 2, (high - low) / 8
            fields = {"mean": mean, "spread": spread, "low": low, "high": high, "n": 30}
            points.append(
                _point("baselines", {"patient_id": patient, "channel": channel}, fields, at)
            )
        for n, (patient, channel, severity, at, value, text) in enumerate(self.anomalies):
            tags = {
                "patient_id": patient,
                "metric": channel.split(".")[0],
                "channel": channel,
                "detector": "deviation" if channel == "heart_rate" else "news2",
                "severity": severity,
            }
            details: dict[str, Any] = {
                "score": 5.0 + n,
                "value": value,
                "explanation": text,
                "anomaly_id": f"an-{n}",
            }
            if n in self.episodes:
                details["episode_id"], tags["phase"] = self.episodes[n]
            points.append(_point("anomalies", tags, details, at))
        return points

    def last(self, patient: str, channel: str | None = None) -> tuple[datetime, float]:
        """Time and value of the latest reading of ``patient`` (of ``channel``)."""
        rows = [v for v in self.vitals if v[0] == patient and channel in (None, v[1])]
        latest = max(rows, key=lambda v: v[3])
        return latest[3], latest[4]


def _cohort(now: datetime, bucket: str) -> Cohort:
    c = Cohort(now=now, bucket=bucket)
    for i in range(12):  # dash-p1 heart rate: sources alternate, the last one is "ring"
        at = now - timedelta(minutes=115 - 10 * i)
        c.vitals.append(("dash-p1", "heart_rate", "ring" if i % 2 else "watch", at, 60.0 + i))
        c.bands.append(("dash-p1", "heart_rate", at, 50.0 + i / 10, 80.0 - i / 10))
    for i in range(4):
        at = now - timedelta(minutes=100 - 30 * i)
        c.vitals.append(("dash-p1", "spo2", "watch", at, 97.0 - i))
    for i in range(4):
        at = now - timedelta(hours=2, minutes=90 - 30 * i)
        c.vitals.append(("dash-p2", "heart_rate", "watch", at, 70.0 + i))
        c.vitals.append(("dash-p2", "blood_pressure.systolic", "cuff", at, 120.0 + i))
    c.vitals.append(("dash-p3", "heart_rate", "watch", now - timedelta(days=3), 65.0))
    c.anomalies += [
        ("dash-p1", "heart_rate", "critical", now - timedelta(minutes=45), 130.0, "hr 130"),
        ("dash-p1", "heart_rate", "critical", now - timedelta(minutes=25), 135.0, "hr 135"),
        ("dash-p1", "spo2", "warning", now - timedelta(minutes=40), 93.0, "spo2 93"),
        ("dash-p2", "heart_rate", "warning", now - timedelta(hours=3), 110.0, "hr 110"),
        ("dash-p3", "heart_rate", "critical", now - timedelta(days=2), 150.0, "hr 150"),
    ]
    # The two heart-rate anomalies of dash-p1 are one episode (onset, then a reminder); the
    # SpO2 one opens another; dash-p2's predates episodes (no episode id, as older points).
    c.episodes = {0: ("ep-hr", "onset"), 1: ("ep-hr", "update"), 2: ("ep-spo2", "onset")}
    c.resting += [
        ("dash-p1", "nightly", now - timedelta(hours=20), 58.5),
        ("dash-p1", "daily", now - timedelta(hours=12), 66.25),
        ("dash-p1", "nightly", now - timedelta(hours=2), 59.0),
        ("dash-p2", "daily", now - timedelta(hours=3), 70.0),
    ]
    return c


@pytest.fixture(scope="module", params=["1.8", "2.7"], ids=["influxdb1.8", "influxdb2.7"])
def influx(request: pytest.FixtureRequest, influx: InfluxServer) -> InfluxServer:
    """Every query runs on InfluxDB 1.8 (the local runner's) and 2.7 (what Grafana reads in
    the shipped compose and k8s stacks)."""
    if request.param == "1.8":
        return influx
    server: InfluxServer = request.getfixturevalue("influx2")
    return server


@pytest.fixture(scope="module")
def cohort(influx: InfluxServer) -> Cohort:
    bucket = influx.create_database(DATABASE)
    # Relative to InfluxDB's clock (whole minutes): cohort_patients_by_severity looks back
    # 24 h from its now(), as Grafana runs it (the tests' clock may differ from it, e.g.
    # under scripts/test-at-hour.sh); every check here is relative, none depends on the hour.
    c = _cohort(_influx_clock(influx).replace(second=0, microsecond=0), bucket)
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=bucket, org=influx.org, record=c.points()
        )
    return c


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def interpolate(template: str, cohort: Cohort, *, patient: str = "", channel: str = "") -> str:
    """Do what Grafana does to a query: variables and the Flux time macros."""
    text = (
        template.replace("${bucket}", cohort.bucket)
        .replace("${patient}", patient)
        .replace("${channel}", channel)
        .replace("v.timeRangeStart", _rfc3339(cohort.now - timedelta(hours=24)))
        .replace("v.timeRangeStop", _rfc3339(cohort.now + timedelta(minutes=1)))
        .replace("v.windowPeriod", f"{int(WINDOW.total_seconds())}s")
    )
    assert "${" not in text and "v." not in text, text
    return text


def _run(influx: InfluxServer, cohort: Cohort, name: str, **variables: str) -> Rows:
    return influx.query(interpolate(FLUX[name], cohort, **variables))


def _strip(rows: Rows) -> Rows:
    return [{k: v for k, v in r.items() if k not in ("result", "table")} for r in rows]


def check_patients_by_severity(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _strip(_run(influx, cohort, "cohort_patients_by_severity"))
    assert sorted(rows, key=lambda r: r["severity"]) == [
        {"severity": "critical", "patients": 1},  # dash-p1 twice; dash-p3's is 2 days old
        {"severity": "warning", "patients": 2},
    ]


def check_latest_vitals(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _strip(_run(influx, cohort, "cohort_latest_vitals"))
    assert [r["patient_id"] for r in rows] == ["dash-p1", "dash-p2"]  # dash-p3: 3 days ago
    p1, p2 = rows
    assert p1["heart_rate"] == cohort.last("dash-p1", "heart_rate")[1] == 71.0
    assert p1["spo2"] == cohort.last("dash-p1", "spo2")[1] == 94.0
    assert p1.get("blood_pressure.systolic") is None
    assert p2["heart_rate"] == 73.0 and p2["blood_pressure.systolic"] == 123.0
    assert p2.get("spo2") is None
    # the computed resting heart rate is not a posted vital
    assert "resting_heart_rate" not in p1 and "resting_heart_rate" not in p2


def _influx_clock(influx: InfluxServer) -> datetime:
    """InfluxDB's clock (its ``now()``), to the second: the Date header of ``/ping``."""
    return parsedate_to_datetime(httpx.get(f"{influx.url}/ping", timeout=10).headers["Date"])


def check_freshness(influx: InfluxServer, cohort: Cohort) -> None:
    # Ages are measured with the database's clock, not the tests' (they may differ).
    before = _influx_clock(influx)
    rows = _run(influx, cohort, "cohort_freshness")
    after = _influx_clock(influx) + timedelta(seconds=1)  # the header drops the fraction
    assert [r["patient_id"] for r in rows] == ["dash-p3", "dash-p2", "dash-p1"]  # stalest first
    for row in rows:
        last, _ = cohort.last(row["patient_id"])
        assert row["last_reading"] == last
        low, high = (before - last).total_seconds(), (after - last).total_seconds()
        assert low - 1 <= row["age_seconds"] <= high + 1, row


def check_anomalies_over_time(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _run(influx, cohort, "cohort_anomalies_over_time")
    totals: dict[str, int] = {}
    for row in rows:
        assert set(row) >= {"_time", "severity", "anomalies"}
        totals[row["severity"]] = totals.get(row["severity"], 0) + row["anomalies"]
    assert totals == {"critical": 2, "warning": 2}
    times = sorted(r["_time"] for r in rows if r["severity"] == "critical")
    assert times == [cohort.now - timedelta(minutes=m) + WINDOW for m in (45, 25)]


def check_patient_ids(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _run(influx, cohort, "patient_ids")
    assert [r["_value"] for r in rows] == ["dash-p1", "dash-p2", "dash-p3"]


def check_patient_channels(influx: InfluxServer, cohort: Cohort) -> None:
    p1 = _run(influx, cohort, "patient_channels", patient="dash-p1")
    assert [r["_value"] for r in p1] == ["heart_rate", "spo2"]
    p2 = _run(influx, cohort, "patient_channels", patient="dash-p2")
    assert [r["_value"] for r in p2] == ["blood_pressure.systolic", "heart_rate"]


def check_patient_readings(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _run(influx, cohort, "patient_readings", patient="dash-p1", channel="heart_rate")
    written = sorted(
        (at, v) for p, ch, _, at, v in cohort.vitals if (p, ch) == ("dash-p1", "heart_rate")
    )
    assert [(r["_time"], r["reading"]) for r in rows] == [(at + WINDOW, v) for at, v in written]
    assert all(set(r) == {"result", "table", "_time", "reading"} for r in rows)
    systolic = _run(
        influx, cohort, "patient_readings", patient="dash-p2", channel="blood_pressure.systolic"
    )
    assert [r["reading"] for r in systolic] == [120.0, 121.0, 122.0, 123.0]


def check_baseline_band(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _run(influx, cohort, "patient_baseline_band", patient="dash-p1", channel="heart_rate")
    expected = [(at, low, high) for p, _, at, low, high in cohort.bands if p == "dash-p1"]
    assert [(r["_time"], r["low"], r["high"]) for r in rows] == expected
    assert _run(influx, cohort, "patient_baseline_band", patient="dash-p1", channel="spo2") == []


def check_anomaly_points(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _run(influx, cohort, "patient_anomaly_points", patient="dash-p1", channel="heart_rate")
    assert [(r["_time"], r["severity"], r["anomaly"]) for r in rows] == [
        (cohort.now - timedelta(minutes=45), "critical", 130.0),
        (cohort.now - timedelta(minutes=25), "critical", 135.0),
    ]
    spo2 = _run(influx, cohort, "patient_anomaly_points", patient="dash-p1", channel="spo2")
    assert [(r["severity"], r["anomaly"]) for r in spo2] == [("warning", 93.0)]


def check_anomaly_annotations(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _strip(_run(influx, cohort, "patient_anomaly_annotations", patient="dash-p1"))
    assert rows == [
        {
            "_time": cohort.now - timedelta(minutes=m),
            "text": text,
            "channel": channel,
            "severity": severity,
            "detector": detector,
        }
        for m, text, channel, severity, detector in [
            (45, "hr 130", "heart_rate", "critical", "deviation"),
            (40, "spo2 93", "spo2", "warning", "news2"),
            (25, "hr 135", "heart_rate", "critical", "deviation"),
        ]
    ]
    assert _run(influx, cohort, "patient_anomaly_annotations", patient="dash-p3") == []


def check_episode_regions(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _strip(_run(influx, cohort, "patient_episode_regions", patient="dash-p1"))
    now = cohort.now
    assert rows == [
        {
            "_time": now - timedelta(minutes=45),
            "timeEnd": now - timedelta(minutes=25),
            "text": "heart_rate episode (update)",
            "channel": "heart_rate",
            "episode_id": "ep-hr",
        },
        {
            "_time": now - timedelta(minutes=40),
            "timeEnd": now - timedelta(minutes=40),
            "text": "spo2 episode (onset)",
            "channel": "spo2",
            "episode_id": "ep-spo2",
        },
    ]
    assert _run(influx, cohort, "patient_episode_regions", patient="dash-p2") == []


def check_resting_heart_rate(influx: InfluxServer, cohort: Cohort) -> None:
    rows = _run(influx, cohort, "patient_resting_heart_rate", patient="dash-p1")
    now = cohort.now
    by_series = sorted((r["series"], r["_time"], r["_value"]) for r in rows)
    assert by_series == [
        ("daily", now - timedelta(hours=12), 66.25),
        ("nightly", now - timedelta(hours=20), 58.5),
        ("nightly", now - timedelta(hours=2), 59.0),
    ]
    assert {r["table"] for r in rows if r["series"] == "nightly"} != {
        r["table"] for r in rows if r["series"] == "daily"
    }  # two series, drawn as two lines


#: Query name -> the check that runs it against the cohort.
CASES: dict[str, Callable[[InfluxServer, Cohort], None]] = {
    "cohort_patients_by_severity": check_patients_by_severity,
    "cohort_latest_vitals": check_latest_vitals,
    "cohort_freshness": check_freshness,
    "cohort_anomalies_over_time": check_anomalies_over_time,
    "patient_ids": check_patient_ids,
    "patient_channels": check_patient_channels,
    "patient_readings": check_patient_readings,
    "patient_baseline_band": check_baseline_band,
    "patient_anomaly_points": check_anomaly_points,
    "patient_anomaly_annotations": check_anomaly_annotations,
    "patient_episode_regions": check_episode_regions,
    "patient_resting_heart_rate": check_resting_heart_rate,
}


def test_every_dashboard_query_has_a_case() -> None:
    assert sorted(set(FLUX) - set(CASES)) == [], "dashboard queries without a test case"
    assert sorted(set(CASES) - set(FLUX)) == [], "test cases of queries no dashboard runs"


@pytest.mark.parametrize("name", sorted(FLUX))
def test_dashboard_query(name: str, influx: InfluxServer, cohort: Cohort) -> None:
    if name not in CASES:
        pytest.fail(f"dashboard query {name!r} has no test case")
    CASES[name](influx, cohort)


def test_render_draws_both_boards_from_the_queries(
    influx: InfluxServer, cohort: Cohort, tmp_path: Path
) -> None:
    """``pghd grafana render`` on this cohort: the detail board defaults to the patient with
    the most anomalies; a patient without readings is refused, not drawn empty."""
    env = {**influx.env(), "PGHD_INFLUX_BUCKET": cohort.bucket}
    runner = CliRunner()
    args = ["grafana", "render", "--out", str(tmp_path), "--hours", "72", "--window", "10m"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "(patient dash-p1)" in result.output
    for name in ("cohort-overview.png", "patient-detail.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    refused = runner.invoke(app, [*args, "--patient", "dash-nobody"], env=env)
    assert refused.exit_code == 1
    assert "dash-nobody has no readings" in refused.output
