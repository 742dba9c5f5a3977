"""Every Flux query of the dashboards, run on a real InfluxDB against a known cohort.

The texts come from :data:`deploy.grafana.dashboards.FLUX`, the mapping the dashboards are
built from; Grafana's interpolation is done here as Grafana does it, in its two steps
(:func:`grafana_interpolate`: the browser's template variables in the format each reference
names, then :func:`backend_macros`: the InfluxDB data source's Flux macros
``v.timeRangeStart``/``v.timeRangeStop``/``v.windowPeriod``/``v.defaultBucket``). :data:`CASES`
holds one check per query, and a query without one fails
:func:`test_every_dashboard_query_has_a_case`.

The second half injects hostile variable values (quotes, backslashes, slashes, Flux
fragments, Flux string interpolation, regular expressions) and shows that no dashboard query
then returns another patient's rows, on both InfluxDB versions.

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

import re
from collections.abc import Callable, Mapping
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
from deploy.grafana.dashboards.scope import team_queries
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


# -- Grafana's interpolation, step 1: the template variables (in the browser) -----------------
#
# The InfluxDB data source in Flux mode hands the query text to ``templateSrv.replace`` with no
# format of its own (``applyTemplateVariables`` in public/app/plugins/datasource/influxdb/
# datasource.ts), so a reference's own format decides, and a bare ``${name}`` gets the default,
# ``glob``: a single value exactly as it is (Scenes' sceneInterpolator.ts ``formatValue``; the
# legacy templateSrv does the same). The syntax is Scenes' VARIABLE_REGEX (constants.ts):
# ``$name``, ``[[name:format]]``, ``${name:format}``; the text is scanned once, so a value is
# never interpolated again. ``$__interval`` and ``$__interval_ms`` are left for the backend
# (the data source sets them to themselves).
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
# ``escapeRegex`` of @grafana/data (packages/grafana-data/src/text/string.ts), which the
# ``regex`` format calls (Scenes' formatRegistry.ts; the legacy formatRegistry.ts calls the same
# expression as ``kbn.regexEscape``): a backslash before each of \ ^ $ * + ? . ( ) | [ ] { } /.
_GRAFANA_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def _grafana_escape_regex(value: str) -> str:
    return _GRAFANA_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def grafana_format(value: str | list[str], fmt: str | None) -> str:
    """One value as Grafana formats it: ``regex``, or no format (``glob``) and ``raw``."""
    if fmt == "regex":
        if isinstance(value, str):
            return _grafana_escape_regex(value)
        escaped = [_grafana_escape_regex(v) for v in value]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt in (None, "glob"):
        if isinstance(value, list) and len(value) > 1:
            return "{" + ",".join(value) + "}"
        return value if isinstance(value, str) else ",".join(value)
    if fmt == "raw":
        return value if isinstance(value, str) else ",".join(value)
    raise AssertionError(f"format {fmt!r} is not implemented by this test")


def grafana_interpolate(template: str, variables: Mapping[str, str | list[str]]) -> str:
    """The dashboard variables of ``template`` replaced as Grafana's browser code does."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name in ("__interval", "__interval_ms"):
            return match.group(0)
        assert name in variables, f"the query uses ${name}, which the test did not set"
        return grafana_format(variables[name], fmt)

    return _VARIABLE.sub(one, template)


# -- Grafana's interpolation, step 2: the Flux macros (Grafana's backend) -----------------------
#
# pkg/tsdb/influxdb/flux/macros.go: every ``<letters>.<letters>`` of the text whose second word
# is a macro name is replaced everywhere (``timeRangeStart``/``timeRangeStop``: RFC 3339 with
# nanoseconds, ``windowPeriod``: a Go duration, ``bucket``/``defaultBucket``/``organization``:
# the data source's setting in double quotes, as it is), then ``$__interval_ms`` and
# ``$__interval``. It runs on the text the browser sent, variable values included.
_FLUX_MACRO = re.compile(r"([a-zA-Z]+)\.([a-zA-Z]+)", re.MULTILINE)


def _go_rfc3339nano(at: datetime) -> str:
    text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{at.microsecond:06d}".rstrip("0")
    return text + (f".{fraction}" if fraction else "") + "Z"


def _go_duration(span: timedelta) -> str:
    """time.Duration.String() for whole seconds: 1m0s, 1h0m0s, 45s."""
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def backend_macros(
    text: str, *, start: datetime, stop: datetime, window: timedelta, bucket: str, org: str
) -> str:
    """What the InfluxDB data source's backend does to the query text before running it."""
    values = {
        "timeRangeStart": _go_rfc3339nano(start),
        "timeRangeStop": _go_rfc3339nano(stop),
        "windowPeriod": _go_duration(window),
        "bucket": f'"{bucket}"',
        "defaultBucket": f'"{bucket}"',
        "organization": f'"{org}"',
    }
    for match in _FLUX_MACRO.finditer(text):
        if match.group(2) in values:
            text = text.replace(match.group(0), values[match.group(2)])
    seconds = int(window.total_seconds())
    return text.replace("$__interval_ms", str(seconds * 1000)).replace(
        "$__interval", f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
    )


def interpolate(template: str, cohort: Cohort, **variables: str | list[str]) -> str:
    """Do what Grafana does to a query: the variables, then the Flux macros."""
    macros = {
        "start": cohort.now - timedelta(hours=24),
        "stop": cohort.now + timedelta(minutes=1),
        "window": WINDOW,
        "bucket": cohort.bucket,
        "org": "pghd",
    }
    assert not re.search(r"\bv\.[A-Za-z]", backend_macros(template, **macros)), template
    return backend_macros(grafana_interpolate(template, variables), **macros)


def _run(influx: InfluxServer, cohort: Cohort, name: str, **variables: str | list[str]) -> Rows:
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


# -- Hostile variable values -----------------------------------------------------------------

ESCAPING_DATABASE = "pghd_dashboards_escaping"
#: Two patients whose ids an unescaped regular expression confuses ("." matches any character).
ESC_PATIENT, LOOKALIKE = "esc.p1", "escXp1"
#: Patient values a viewer can put in a dashboard URL (``?var-patient=...``). None names an
#: existing patient, so any row a query returns for one of them is another patient's.
INJECTIONS = [
    'p" or true or r.patient_id == "',  # closes the string literal: every patient
    f'{ESC_PATIENT}" or r.patient_id != "',
    "${r.patient_id}",  # Flux string interpolation: compares each row with itself
    f"{ESC_PATIENT}\\",  # a backslash escaping the closing quote
    'p\\" or true or r.patient_id == \\"',  # escaped quotes, to break a quote-only escaping
    "x/ or true or r.patient_id =~ /",  # closes a regular-expression literal
    "x/) or (true",
    ".*",
    "esc.p1|escXp1",
    "(esc.p1|escXp1)",
    "esc.p1$|^escXp1",
    "esc[.X]p1",
    f'{ESC_PATIENT}")\n  |> filter(fn: (r) => true',
    "v.defaultBucket",  # a Grafana macro name: the backend must not touch the value
    "$__interval",  # another: the backend replaces it even inside the value
]
#: Payloads that reach a Grafana backend macro: the replaced text makes InfluxDB refuse the
#: query (``\1m`` is no valid escape), which shows nothing either.
REFUSED_BY_INFLUXDB = {"$__interval"}
#: The patient queries and whether they take a channel too.
PATIENT_QUERIES = {name: "${channel" in text for name, text in FLUX.items() if "${patient" in text}


def _escaping_cohort(now: datetime, bucket: str) -> Cohort:
    c = Cohort(now=now, bucket=bucket)
    for n, patient in enumerate((ESC_PATIENT, LOOKALIKE)):  # every value differs by patient
        for i in range(3):
            at = now - timedelta(minutes=50 - 10 * i)
            c.vitals.append((patient, "heart_rate", "watch", at, 60.0 + 10 * n + i))
            c.bands.append((patient, "heart_rate", at, 50.0 + n, 90.0 + n))
        c.resting.append((patient, "nightly", now - timedelta(hours=3), 55.0 + n))
        at = now - timedelta(minutes=15 + n)
        c.anomalies.append((patient, "heart_rate", "warning", at, 120.0 + n, f"hr of {patient}"))
        c.episodes[n] = (f"ep-{patient}", "onset")
    c.vitals.append((ESC_PATIENT, "spo2", "watch", now - timedelta(minutes=5), 97.0))
    return c


@pytest.fixture(scope="module")
def escaping(influx: InfluxServer) -> Cohort:
    bucket = influx.create_database(ESCAPING_DATABASE)
    c = _escaping_cohort(_influx_clock(influx).replace(second=0, microsecond=0), bucket)
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=bucket, org=influx.org, record=c.points()
        )
    return c


def test_every_patient_query_escapes_its_variables() -> None:
    """Each ``patient``/``channel`` reference is a whole-value regex in the regex format."""
    assert PATIENT_QUERIES, "no patient query found"
    for name, text in FLUX.items():
        references = {m.group(0) for m in _VARIABLE.finditer(text)}
        assert references <= {"${patient:regex}", "${channel:regex}"}, name
        for reference in references:
            assert f"=~ /^{reference}$/" in text, (name, reference)


@pytest.mark.parametrize("name", sorted(PATIENT_QUERIES))
def test_a_patient_is_matched_exactly(name: str, influx: InfluxServer, escaping: Cohort) -> None:
    """Escaped, the "." of a real patient id matches only itself, not the lookalike's "X"."""
    variables = {"patient": ESC_PATIENT, "channel": "heart_rate"}
    mine = _run(influx, escaping, name, **variables)
    assert mine, f"{name}: no rows for {ESC_PATIENT}"
    theirs = _run(influx, escaping, name, **{**variables, "patient": LOOKALIKE})
    assert _strip(mine) != _strip(theirs), name  # the two patients' values differ
    both = _run(influx, escaping, name, **{**variables, "patient": [ESC_PATIENT, LOOKALIKE]})
    assert len(both) >= len(mine), name  # a multi-value selection: "(a|b)", both of them


def _rows_or_refusal(influx: InfluxServer, text: str) -> Rows | None:
    try:
        return influx.query(text)
    except Exception:  # influxdb-client's ApiException: InfluxDB refused the query
        return None


@pytest.mark.parametrize("payload", INJECTIONS)
@pytest.mark.parametrize("variable", ["patient", "channel"])
def test_an_injected_value_reaches_no_other_patient(
    payload: str, variable: str, influx: InfluxServer, escaping: Cohort
) -> None:
    """The hostile value as the patient (or as the channel of a real patient): every query
    answers with no row at all, since no patient or channel has that name. Only a payload
    that Grafana's backend rewrites (``$__interval``) is refused instead."""
    for name, takes_channel in PATIENT_QUERIES.items():
        if variable == "channel" and not takes_channel:
            continue
        variables = {"patient": ESC_PATIENT, "channel": "heart_rate", variable: payload}
        rows = _rows_or_refusal(influx, interpolate(FLUX[name], escaping, **variables))
        if payload in REFUSED_BY_INFLUXDB:
            assert not rows, (name, payload, rows)
        else:
            assert rows == [], (name, payload, rows)


def test_the_payloads_leak_through_an_unescaped_query(
    influx: InfluxServer, escaping: Cohort
) -> None:
    """The control: the same values in the form the dashboards used before
    (``r.patient_id == "${patient}"``, Grafana's default format) return both patients."""
    unescaped = (
        "from(bucket: v.defaultBucket)\n  |> range(start: -1h)\n"
        '  |> filter(fn: (r) => r._measurement == "vitals" and r._field == "value")\n'
        '  |> filter(fn: (r) => r.patient_id == "${patient}")\n'
        '  |> keep(columns: ["patient_id"])\n  |> distinct(column: "patient_id")'
    )
    for payload in (INJECTIONS[0], INJECTIONS[2]):
        rows = influx.query(interpolate(unescaped, escaping, patient=payload))
        assert {r["_value"] for r in rows} == {ESC_PATIENT, LOOKALIKE}, payload


def test_a_care_teams_boards_show_only_its_patients(influx: InfluxServer, cohort: Cohort) -> None:
    """A team's copies of the queries (``pghd grafana teams``): the patient list, the cohort
    tables and the patient panels stop at the team's patients, whoever is selected."""
    team = team_queries(("dash-p1", "dash-p3"))

    def run(name: str, **variables: str) -> Rows:
        return influx.query(interpolate(team[name], cohort, **variables))

    assert [r["_value"] for r in run("patient_ids")] == ["dash-p1", "dash-p3"]
    assert [r["patient_id"] for r in run("cohort_latest_vitals")] == ["dash-p1"]
    assert {r["patient_id"] for r in run("cohort_freshness")} == {"dash-p1", "dash-p3"}
    assert run("patient_channels", patient="dash-p2") == []  # another team's, asked by name
    assert run("patient_readings", patient="dash-p2", channel="heart_rate") == []
    assert run("patient_readings", patient="dash-p1", channel="heart_rate")
    severities = {r["severity"]: r["patients"] for r in run("cohort_patients_by_severity")}
    assert severities == {"critical": 1, "warning": 1}  # dash-p2's warning is not counted
