"""The FHIR read API on real servers: the page reader on InfluxDB 1.8 and 2.7, and the care
API's ``/fhir`` searches end to end.

End to end: two patients of two care teams are enrolled through ingest's patients API, their
heart rates posted through ingest, judged by the processors (a spike at rest is flagged) and
stored in InfluxDB by the store stage; the care-team API (its own process, reading the same
InfluxDB and Kafka) then answers ``GET /fhir/Observation?patient=…&code=8867-4`` with a
searchset Bundle that fhir.resources validates, pages through ``next`` links serving every
reading exactly once, interprets the flagged reading, refuses the other team's clinician,
and leaves each search on the audit trail (``pghd.audit.v1``, read back through
``GET /v1/audit``).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from deploy.local.harness import (
    Pipeline,
    heart_rate_series,
    reading,
    running_care_api,
    running_pipeline,
    wait_for,
)
from deploy.local.influxdb import InfluxServer
from deploy.local.influxdb2 import Influx2Server
from deploy.local.process import log_tail
from pghd.access import hash_token
from pghd.export.records import format_time, parse_time
from pghd.fhir_read import flux
from pghd.fhir_read.cursor import encode_cursor
from pghd.fhir_read.influx import InfluxObservationReader, ObservationPage
from pghd.fhir_read.search import ObservationSearch, parse_observation_search
from tests.clock import ANCHOR
from tests.integration.test_care_api import make_alert, publish

FHIR = "application/fhir+json"
RUN = uuid.uuid4().hex[:8]
_RANGE_START = re.compile(r"range\(start: ([^,]+),")


# --- the reader, on both InfluxDB versions --------------------------------------------------


def _line(measurement: str, tags: Mapping[str, str], fields: str, when: datetime) -> str:
    tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
    return f"{measurement},{tag_text} {fields} {ns}"


@dataclass(frozen=True)
class Written:
    """One reading written: its key in the search's order, and what it is."""

    time: datetime
    device: str
    metric: str
    event_id: str


class CountingReader(InfluxObservationReader):
    """The real reader, noting every query it runs (to show where each page reads from)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queries: list[str] = []

    async def _records(self, flux: str) -> AsyncIterator[Mapping[str, Any]]:
        self.queries.append(flux)
        async for values in super()._records(flux):
            yield values


def _history(patient: str, other: str) -> tuple[list[str], list[Written]]:
    """Line protocol of a patient's readings (two clusters 200 days apart, two devices at
    one instant, a blood pressure at that instant, an interval reading, an event id with a
    quote) and findings, plus someone else's reading; and the patient's readings in the
    search's order."""
    lines: list[str] = []
    written: list[Written] = []
    early = ANCHOR - timedelta(days=230)
    late = ANCHOR - timedelta(days=30)

    def vital(
        channel: str,
        value: float,
        when: datetime,
        *,
        device: str,
        event_id: str,
        pid: str = patient,
        **extra: str,
    ) -> None:
        metric = channel.split(".")[0]
        unit = {"blood_pressure": "mm[Hg]", "steps": "{steps}"}.get(metric, "/min")
        tags = {
            "patient_id": pid,
            "metric": metric,
            "channel": channel,
            "source": "acme",
            "device": device,
            "unit": unit,
        }
        quoted = event_id.replace('"', '\\"')
        fields = f'value={value},event_id="{quoted}"' + "".join(
            f',{k}="{v}"' for k, v in extra.items()
        )
        lines.append(_line("vitals", tags, fields, when))
        if pid == patient and not channel.endswith(".diastolic"):
            written.append(Written(when, device, metric, event_id))

    for i in range(25):
        vital(
            "heart_rate",
            60 + i % 7,
            early + timedelta(minutes=7 * i),
            device="watch-1",
            event_id=f"e-{i}",
        )
    spike_at = late + timedelta(minutes=3 * 20)
    for i in range(30):
        value = 165 if i == 20 else 62 + i % 5
        vital(
            "heart_rate",
            value,
            late + timedelta(minutes=3 * i),
            device="watch-1",
            event_id=f"l-{i}",
        )
    shared = late + timedelta(minutes=3 * 10)  # l-10 is at this instant already
    vital("heart_rate", 99, shared, device="watch-2", event_id="w2")
    vital("blood_pressure.systolic", 128, shared, device="unknown", event_id="bp-1")
    vital("blood_pressure.diastolic", 84, shared, device="unknown", event_id="bp-1")
    vital("heart_rate", 70, shared + timedelta(seconds=1), device="watch-1", event_id='q"uote')
    steps_end = format_time(late + timedelta(hours=1))
    vital("steps", 1200, late, device="unknown", event_id="st-1", effective_end=steps_end)
    vital("heart_rate", 71, shared, device="watch-1", event_id="other", pid=other)
    finding_tags = {"patient_id": patient, "metric": "heart_rate", "channel": "heart_rate"}
    lines.append(
        _line(
            "anomalies",
            {**finding_tags, "detector": "deviation", "severity": "critical"},
            'score=7,value=165,explanation="far above",anomaly_id="an-1"',
            spike_at,
        )
    )
    order = sorted(written, key=lambda w: (w.time, "acme", w.device, w.metric, w.event_id))
    return lines, order


@pytest.mark.parametrize("server_name", ["influx", "influx2"])
def test_the_reader_serves_every_reading_once_page_after_page(
    server_name: str, request: pytest.FixtureRequest
) -> None:
    server: InfluxServer | Influx2Server = request.getfixturevalue(server_name)
    bucket = server.create_database(f"fhir_{uuid.uuid4().hex[:8]}")
    patient, other = "p-fhir-reader", "p-fhir-other"
    lines, order = _history(patient, other)
    with InfluxDBClient(url=server.url, token=server.token, org=server.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines)
    now = datetime.now(UTC)

    async def walk(query: list[tuple[str, str]]) -> tuple[list[ObservationPage], list[list[str]]]:
        reader = CountingReader(
            url=server.url,
            token=server.token,
            org=server.org,
            bucket=bucket,
            first_span=timedelta(minutes=10),
        )
        pages: list[ObservationPage] = []
        queries: list[list[str]] = []
        search: ObservationSearch | None = parse_observation_search(query)
        try:
            while search is not None:
                reader.queries.clear()
                page = await reader.page(search, now=now)
                pages.append(page)
                queries.append(list(reader.queries))
                search = (
                    None
                    if page.next is None
                    else parse_observation_search([*query, ("_cursor", encode_cursor(page.next))])
                )
        finally:
            await reader.close()
        return pages, queries

    for count in (2, 7, 500):
        pages, queries = asyncio.run(walk([("patient", patient), ("_count", str(count))]))
        served = [
            Written(r.time, r.device or "unknown", r.metric.value, r.event_id)
            for page in pages
            for r in page.readings
        ]
        assert served == order, count  # every reading once, in order, none of the other's
        assert len(pages) == max(1, math.ceil(len(order) / count))
        assert all(len(page.readings) == count for page in pages[:-1])
        for before, page_queries in zip(pages, queries[1:], strict=False):
            # each page reads from where the last one ended, never from the start
            starts = [parse_time(m) for q in page_queries for m in _RANGE_START.findall(q)]
            assert starts and all(t is not None and t >= before.readings[-1].time for t in starts)
        # from 1970 on, a seek finds where the history starts and, after the 200-day gap,
        # where it goes on: a handful of queries, not a walk through empty years
        assert max(len(q) for q in queries) <= 12, [len(q) for q in queries]
    ([everything], _) = asyncio.run(walk([("patient", patient), ("_count", "500")]))
    # dates InfluxDB's range refuses (before 1677, after 2262) are clamped to 1970 and now
    wide = [("patient", patient), ("date", "ge1600-01-01"), ("date", "le2300-01-01")]
    ([clamped], _) = asyncio.run(walk([*wide, ("_count", "500")]))
    assert [r.event_id for r in clamped.readings] == [r.event_id for r in everything.readings]

    spike = next(r for r in everything.readings if r.event_id == "l-20")
    assert [(f.anomaly_id, f.time) for f in everything.findings] == [("an-1", spike.time)]
    bp = next(r for r in everything.readings if r.event_id == "bp-1")
    assert dict(bp.values) == {"systolic": 128.0, "diastolic": 84.0}

    # code and date narrow the search; the cursor keeps them
    late = ANCHOR - timedelta(days=30)
    narrowed = [
        ("patient", patient),
        ("code", "http://loinc.org|8867-4"),
        ("date", f"ge{format_time(late)}"),
        ("date", f"lt{format_time(late + timedelta(minutes=30))}"),
        ("_count", "4"),
    ]
    pages, _ = asyncio.run(walk(narrowed))
    served_narrow = [r.event_id for page in pages for r in page.readings]
    expected = [
        w.event_id
        for w in order
        if w.metric == "heart_rate" and late <= w.time < late + timedelta(minutes=30)
    ]
    assert served_narrow == expected and len(expected) == 10


def test_on_influxdb_2_the_seek_is_pushed_down_to_storage(influx2: Influx2Server) -> None:
    """The seek of every page is ``first()`` per series from the cursor on: InfluxDB 2.x's
    storage answers it (one point per series) only when nothing but tag and field filters
    stand between ``range`` and ``first()``, which its operator profile shows."""
    bucket = influx2.create_database(f"fhir_seek_{uuid.uuid4().hex[:8]}")
    start = ANCHOR - timedelta(days=2)
    tags = {"patient_id": "p-seek", "metric": "heart_rate", "channel": "heart_rate"}
    lines = [
        _line(
            "vitals",
            {**tags, "source": "acme", "device": "watch-1"},
            f"value={60 + i % 9}",
            start + timedelta(minutes=5 * i),
        )
        for i in range(200)
    ]
    query = flux.seek_query(bucket, "p-seek", None, start, ANCHOR)
    profiled = 'import "profiler"\noption profiler.enabledProfilers = ["operator"]\n' + query
    with InfluxDBClient(url=influx2.url, token=influx2.token, org=influx2.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=lines)
        tables = client.query_api().query(profiled, org=influx2.org)
    records = [record.values for table in tables for record in table.records]
    assert [r["_time"] for r in records if "_time" in r] == [start]
    operators = [str(r["Type"]) for r in records if "Type" in r]
    assert "*influxdb.readWindowAggregateSource" in operators, operators
    assert not any("filter" in op.lower() or "Selector" in op for op in operators), operators


# --- end to end: ingest, Kafka, processors, InfluxDB, the care API ------------------------

OURS, THEIRS = f"fhir-{RUN}-a", f"fhir-{RUN}-b"
USERS = {
    "nurse-a": ("clinician", ["ward-a"]),
    "nurse-b": ("clinician", ["ward-b"]),
    "auditor": ("admin", []),
}
NORMAL = [70, 72, 69, 71, 73, 70, 68, 71, 72, 70, 69, 71]
SERIES_START = ANCHOR + timedelta(minutes=10)


@dataclass
class Care:
    url: str
    log: Path

    def get(self, user: str, path: str, **headers: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {user}-{RUN}", **headers}
        return httpx.get(
            path if path.startswith("http") else self.url + path, headers=auth, timeout=30
        )


@pytest.fixture(scope="module")
def pipeline(
    stack_env: dict[str, str], influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("fhir-read")
    bucket = influx.create_database(f"fhir_e2e_{RUN}")
    with running_pipeline(
        stack_env=stack_env,
        influx=influx,
        workdir=workdir,
        services=("ingest", "processors"),
        extra_env={"PGHD_INFLUX_BUCKET": bucket},
    ) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def care(
    pipeline: Pipeline, influx: InfluxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Care]:
    for patient, team in ((OURS, "ward-a"), (THEIRS, "ward-b")):
        pipeline.enroll(patient, ["heart_rate"])
        assigned = pipeline.admin("PUT", f"/v1/patients/{patient}/teams/{team}")
        assert assigned.status_code == 200, assigned.text
    ours = heart_rate_series(OURS, [*NORMAL, 165, 166, 71], start=SERIES_START)
    theirs = [reading(THEIRS, 75 + i, SERIES_START + timedelta(minutes=i)) for i in range(4)]
    for body in (ours, theirs):
        response = pipeline.post(body)
        assert response.status_code == 202, response.text
    pipeline.wait_vitals(OURS, len(ours))
    pipeline.wait_vitals(THEIRS, len(theirs))
    bucket = pipeline.bucket
    wait_for(
        lambda: (
            influx.query(
                f'from(bucket: "{bucket}") |> range(start: -30d, stop: 1d)'
                f' |> filter(fn: (r) => r._measurement == "anomalies" and r.patient_id == "{OURS}")'
            )
            or None
        ),
        timeout=60,
        what="the spike's finding in InfluxDB",
        diagnostics=pipeline.diagnostics,
    )
    publish(pipeline.kafka_bootstrap, (make_alert(OURS).fingerprint, make_alert(OURS)))
    workdir = tmp_path_factory.mktemp("fhir-care")
    users = workdir / "users.json"
    users.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "users": {
                    name: {
                        "role": role,
                        "teams": teams,
                        "token_sha256": [hash_token(f"{name}-{RUN}")],
                    }
                    for name, (role, teams) in USERS.items()
                },
            }
        )
    )
    log = workdir / "care-api.log"
    env = {**influx.env(), "PGHD_INFLUX_BUCKET": bucket, "PGHD_CARE_API_USERS_FILE": str(users)}
    with running_care_api(kafka_bootstrap=pipeline.kafka_bootstrap, log=log, env=env) as url:
        yield Care(url=url, log=log)


def _bundle(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR
    body: dict[str, Any] = response.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    return body


def _next(body: Mapping[str, Any]) -> str | None:
    return next((link["url"] for link in body["link"] if link["relation"] == "next"), None)


def test_the_metadata_is_a_capability_statement(care: Care) -> None:
    response = httpx.get(f"{care.url}/fhir/metadata", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == FHIR
    CapabilityStatement.model_validate(response.json())


def test_a_clinician_pages_through_their_patients_heart_rates(care: Care) -> None:
    query = f"/fhir/Observation?patient={OURS}&code=8867-4"
    whole = _bundle(care.get("nurse-a", query + "&_count=500"))
    resources = [e["resource"] for e in whole["entry"]]
    assert len(resources) == len(NORMAL) + 3
    assert {r["subject"]["reference"] for r in resources} == {f"Patient/{OURS}"}
    assert {r["code"]["coding"][0]["code"] for r in resources} == {"8867-4"}
    assert _next(whole) is None
    flagged = [r for r in resources if "interpretation" in r]
    assert flagged, "the spike carries no interpretation"
    assert {r["valueQuantity"]["value"] for r in flagged} <= {165.0, 166.0}
    assert {r["interpretation"][0]["coding"][0]["code"] for r in flagged} <= {"H", "HH"}
    assert all(r["interpretation"][0]["text"] for r in flagged)

    url: str | None = query + "&_count=4"
    seen: list[str] = []
    pages = 0
    while url is not None:
        body = _bundle(care.get("nurse-a", url))
        seen += [e["resource"]["id"] for e in body.get("entry", [])]
        url = _next(body)
        pages += 1
    assert pages == math.ceil(len(resources) / 4)
    assert seen == [r["id"] for r in resources]  # every reading once, in the same order

    later = format_time(SERIES_START + timedelta(minutes=5 * 12))
    polled = _bundle(care.get("nurse-a", f"{query}&date=gt{later}"))
    assert [e["resource"]["valueQuantity"]["value"] for e in polled["entry"]] == [166.0, 71.0]


def test_another_teams_clinician_is_refused_and_every_search_is_audited(care: Care) -> None:
    own_id, foreign_id, flag_id = (uuid.uuid4().hex for _ in range(3))
    own = care.get("nurse-a", f"/fhir/Observation?patient={OURS}", **{"X-Request-ID": own_id})
    assert own.status_code == 200, own.text + log_tail(care.log)
    foreign = care.get(
        "nurse-b", f"/fhir/Observation?patient={OURS}&code=8867-4", **{"X-Request-ID": foreign_id}
    )
    assert foreign.status_code == 403 and foreign.headers["content-type"] == FHIR
    OperationOutcome.model_validate(foreign.json())
    assert OURS not in foreign.text
    flags = care.get(
        "nurse-a", f"/fhir/Flag?patient={OURS}&status=active", **{"X-Request-ID": flag_id}
    )
    [entry] = _bundle(flags)["entry"]
    assert entry["resource"]["resourceType"] == "Flag" and entry["resource"]["status"] == "active"
    theirs = _bundle(care.get("nurse-b", f"/fhir/Observation?patient={THEIRS}&code=8867-4"))
    assert len(theirs["entry"]) == 4

    def events() -> dict[str, Any] | None:
        trail = care.get("auditor", f"/v1/audit?patient_id={OURS}&limit=10000")
        assert trail.status_code == 200, trail.text
        found = {e["request_id"]: e for e in trail.json()}
        return found if {own_id, foreign_id, flag_id} <= set(found) else None

    found = wait_for(events, timeout=20, what="the searches on the audit trail")
    for request_id, user, operation, outcome in (
        (own_id, "nurse-a", "GET /fhir/Observation", "success"),
        (foreign_id, "nurse-b", "GET /fhir/Observation", "denied"),
        (flag_id, "nurse-a", "GET /fhir/Flag", "success"),
    ):
        event = found[request_id]
        assert (event["agent"]["name"], event["operation"], event["outcome"]) == (
            user,
            operation,
            outcome,
        )
        assert event["patients"] == [OURS] and event["resource"].startswith("/fhir/")
