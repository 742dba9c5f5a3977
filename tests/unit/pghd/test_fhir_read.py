"""The FHIR read API's pure parts: search parameters, the cursor, pages cut from rows, the
Flux text, interpretations, and the resources (each validated with fhir.resources' R4B
models, as the export's tests do; R4B's Observation, Flag, Bundle and CapabilityStatement
are R4's). tests/integration/test_fhir_read.py runs the reader on real InfluxDB.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation

from pghd.alerting import AlertState
from pghd.audit_trail import audited_path
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Anomaly, Measurement, Severity, Source
from pghd.export.influx import EPOCH
from pghd.export.records import StoredFinding, StoredReading, finding_of, format_time, readings_of
from pghd.fhir_read import flux
from pghd.fhir_read.cursor import Cursor, ReadingKey, decode_cursor, encode_cursor
from pghd.fhir_read.influx import InfluxObservationReader, ObservationPage
from pghd.fhir_read.interpretation import INTERPRETATION, flags_of, index_findings
from pghd.fhir_read.paging import MAX_CHANNELS, PageBuilder
from pghd.fhir_read.resources import (
    VITAL_SIGNS,
    capability_statement,
    flag,
    full_url,
    searchset,
    vital_sign,
)
from pghd.fhir_read.search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    RECENTLY_RESOLVED,
    FlagSearch,
    FlagStatus,
    ObservationSearch,
    SearchError,
    TimeRange,
    date_range,
    matching_alerts,
    parse_flag_search,
    parse_observation_search,
    strict_handling,
)
from processors.points import anomaly_point, vital_point
from tests.clock import ANCHOR
from tests.unit.alerts.api.conftest import make_alert

PATIENT = "p-fhir"
NOW = ANCHOR + timedelta(hours=6)
WHEN = ANCHOR - timedelta(hours=2)


def reading(
    metric: Metric,
    values: Mapping[str, float],
    *,
    when: datetime = WHEN,
    device: str | None = "watch-1",
    event_id: str = "ev-1",
    end: datetime | None = None,
) -> StoredReading:
    return StoredReading(
        patient_id=PATIENT,
        metric=metric,
        time=when,
        unit=CATALOGUE[metric].unit,
        values=dict(values),
        source="acme",
        event_id=event_id,
        device=device,
        end=end,
    )


def finding(
    channel: str,
    value: float,
    *,
    severity: str = "warning",
    detector: str = "deviation",
    when: datetime = WHEN,
    phase: str | None = None,
    metric: Metric | None = None,
) -> StoredFinding:
    return StoredFinding(
        patient_id=PATIENT,
        anomaly_id=f"an-{channel}-{value}-{detector}-{phase}",
        time=when,
        metric=metric or Metric(channel.split(".")[0]),
        channel=channel,
        detector=detector,
        severity=severity,
        score=3.0,
        value=value,
        unit=CATALOGUE[metric or Metric(channel.split(".")[0])].unit,
        explanation=f"{channel} {value} is off",
        phase=phase,
    )


def params(query: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` as (name, value) pairs, as the route hands them over."""
    return [
        (name, value)
        for part in query.split("&")
        if part
        for name, _, value in [part.partition("=")]
    ]


# --- search parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    "given", [PATIENT, f"Patient/{PATIENT}", f"https://ehr.example.org/fhir/Patient/{PATIENT}"]
)
def test_the_patient_is_an_id_or_a_patient_reference(given: str) -> None:
    assert parse_observation_search([("patient", given)]).patient_id == PATIENT


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("code=8867-4", "required"),
        ("patient=", "required"),
        ("patient=a&patient=b", "invalid"),
        ("patient=a,b", "invalid"),
        ("patient=Patient/has space", "invalid"),
    ],
)
def test_a_search_reads_exactly_one_patient(query: str, code: str) -> None:
    with pytest.raises(SearchError) as refused:
        parse_observation_search(params(query))
    assert (refused.value.parameter, refused.value.code) == ("patient", code)


@pytest.mark.parametrize(
    ("codes", "metrics"),
    [
        (["8867-4"], {Metric.HEART_RATE}),
        (["http://loinc.org|8867-4"], {Metric.HEART_RATE}),
        (["|8867-4"], {Metric.HEART_RATE}),
        (["2708-6"], {Metric.SPO2}),  # an alias: oxygen saturation in arterial blood
        (["8867-4,85354-9"], {Metric.HEART_RATE, Metric.BLOOD_PRESSURE}),
        (["8867-4,85354-9", "85354-9"], {Metric.BLOOD_PRESSURE}),  # repeated: both hold
        (["8480-6"], set()),  # a component's code is component-code's, not code's
        (["http://snomed.info/sct|364075005"], set()),
        (["0000-0"], set()),
    ],
)
def test_codes_select_metrics_with_or_without_the_loinc_system(
    codes: list[str], metrics: set[Metric]
) -> None:
    search = parse_observation_search([("patient", PATIENT), *(("code", c) for c in codes)])
    assert search.metrics == frozenset(metrics)
    assert search.matches_nothing is (not metrics)


def test_without_a_code_every_metric_is_searched() -> None:
    search = parse_observation_search([("patient", PATIENT), ("code", "")])
    assert search.metrics is None and not search.matches_nothing


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("value", "start", "stop"),
    [
        ("2026-12-01", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
        ("eq2026-12-01", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
        ("ge2026-12-01", "2026-12-01T00:00:00Z", None),
        ("gt2026-12-01", "2026-12-02T00:00:00Z", None),
        ("le2026-12-01", None, "2026-12-02T00:00:00Z"),
        ("lt2026-12-01", None, "2026-12-01T00:00:00Z"),
        ("2026", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2027-01-31", "2027-01-31T00:00:00Z", "2027-02-01T00:00:00Z"),
        ("ge2026-12-01T08:30Z", "2026-12-01T08:30:00Z", None),
        ("lt2026-12-01T08:30:15Z", None, "2026-12-01T08:30:15Z"),
        ("gt2026-12-01T08:30:15Z", "2026-12-01T08:30:16Z", None),
        # an EHR polling with the last effectiveDateTime it saw, as pghd wrote it
        ("gt2026-12-01T08:30:15.123456Z", "2026-12-01T08:30:15.123457Z", None),
        ("gt2026-12-01T08:30:15.5Z", "2026-12-01T08:30:15.600000Z", None),
        ("ge2026-12-01T09:30:00+01:00", "2026-12-01T08:30:00Z", None),
        ("ge2026-12-01T03:00:00-05:30", "2026-12-01T08:30:00Z", None),
        ("ge2026-12-01T08:30:00", "2026-12-01T08:30:00Z", None),  # no zone: UTC
    ],
)
def test_a_date_selects_the_range_its_prefix_and_precision_imply(
    value: str, start: str | None, stop: str | None
) -> None:
    assert date_range(value) == TimeRange(
        start=t(start) if start else None, stop=t(stop) if stop else None
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("ne2026-12-01", "not-supported"),
        ("sa2026-12-01", "not-supported"),
        ("ap2026-12-01", "not-supported"),
        ("yesterday", "invalid"),
        ("2026-13-01", "invalid"),
        ("2026-12-01T25:00:00Z", "invalid"),
        ("ge", "invalid"),
        # ranges leaving years 1 to 9999 (Python's datetime), once 500s
        ("9999-12-31", "invalid"),
        ("9999-12-31T23:59", "invalid"),
        ("gt9999-12-31T23:59:59.999999Z", "invalid"),
        ("0001-01-01T00:00:00+14:00", "invalid"),
    ],
)
def test_unsupported_prefixes_and_bad_dates_are_refused(value: str, code: str) -> None:
    with pytest.raises(SearchError) as refused:
        parse_observation_search([("patient", PATIENT), ("date", value)])
    assert (refused.value.parameter, refused.value.code) == ("date", code)


def test_several_dates_narrow_the_range() -> None:
    search = parse_observation_search(
        params(f"patient={PATIENT}&date=ge2026-12-01&date=lt2026-12-03&date=gt2026-11-01")
    )
    assert search.window == TimeRange(t("2026-12-01T00:00:00Z"), t("2026-12-03T00:00:00Z"))
    empty = parse_observation_search(
        params(f"patient={PATIENT}&date=ge2026-12-03&date=lt2026-12-01")
    )
    assert empty.matches_nothing


@pytest.mark.parametrize(
    ("given", "count"), [(None, DEFAULT_COUNT), ("1", 1), ("200", 200), ("100000", MAX_COUNT)]
)
def test_count_defaults_to_50_and_is_served_at_most_500(given: str | None, count: int) -> None:
    query = [("patient", PATIENT)] + ([("_count", given)] if given else [])
    assert parse_observation_search(query).count == count


@pytest.mark.parametrize("given", [["0"], ["-3"], ["ten"], ["1.5"], ["5", "6"]])
def test_a_count_that_is_no_positive_whole_number_is_refused(given: list[str]) -> None:
    with pytest.raises(SearchError) as refused:
        parse_observation_search([("patient", PATIENT), *(("_count", g) for g in given)])
    assert refused.value.parameter == "_count"


def test_unknown_parameters_are_ignored_unless_handling_is_strict() -> None:
    query = params(f"patient={PATIENT}&code=8867-4&_sort=-date&category=vital-signs")
    lenient = parse_observation_search(query)
    assert lenient.applied == (("patient", PATIENT), ("code", "8867-4"))
    with pytest.raises(SearchError) as refused:
        parse_observation_search(query, strict=True)
    assert refused.value.code == "not-supported"
    assert "_sort" in refused.value.detail and "category" in refused.value.detail
    flags = params(f"patient={PATIENT}&_count=10")
    assert parse_flag_search(flags).applied == (("patient", PATIENT),)
    with pytest.raises(SearchError):
        parse_flag_search(flags, strict=True)


@pytest.mark.parametrize(
    ("prefer", "strict"),
    [
        (None, False),
        ("", False),
        ("handling=strict", True),
        ("return=minimal, handling=strict", True),
        ("Handling = Strict", True),
        ("handling=lenient", False),
        ("respond-async", False),
    ],
)
def test_the_prefer_header_chooses_the_handling(prefer: str | None, strict: bool) -> None:
    assert strict_handling(prefer) is strict


# --- the cursor ----------------------------------------------------------------------------


def test_a_cursor_round_trips_and_belongs_to_its_search() -> None:
    search = parse_observation_search(params(f"patient={PATIENT}&code=8867-4&date=ge2026-12-01"))
    key = ReadingKey(WHEN + timedelta(microseconds=7), "acme", "unknown", "heart_rate", 'ev"1')
    cursor = Cursor(after=key, span=timedelta(hours=3), query=search.fingerprint)
    text = encode_cursor(cursor)
    assert text.isascii() and "=" not in text and "/" not in text and "+" not in text
    assert decode_cursor(text) == cursor
    again = parse_observation_search([*search.applied, ("_count", "7"), ("_cursor", text)])
    assert again.cursor == cursor and again.count == 7
    for other in (
        f"patient=p-other&code=8867-4&date=ge2026-12-01&_cursor={text}",
        f"patient={PATIENT}&code=59408-5&date=ge2026-12-01&_cursor={text}",
        f"patient={PATIENT}&code=8867-4&_cursor={text}",
    ):
        with pytest.raises(SearchError, match="another search"):
            parse_observation_search(params(other))


def _forged(time: str) -> str:
    document = {"v": 1, "t": time, "k": ["acme", "unknown", "heart_rate", "e"], "s": 60, "q": ""}
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64!",
        "e30",
        encode_cursor.__name__,
        "x" * 3000,
        _forged("yesterday"),
        _forged("0001-01-01T00:00:00+14:00"),  # before year 1 in UTC: once a 500
    ],
)
def test_a_cursor_this_server_did_not_make_is_refused(text: str) -> None:
    with pytest.raises(SearchError) as refused:
        parse_observation_search([("patient", PATIENT), ("_cursor", text or "AAAA")])
    assert refused.value.parameter == "_cursor"


# --- pages of rows ---------------------------------------------------------------------------


def rows_of(*readings: StoredReading) -> list[dict[str, Any]]:
    """The pivoted ``vitals`` rows the store's points of ``readings`` give back, sorted."""
    rows = []
    for r in readings:
        for channel in CATALOGUE[r.metric].channels:
            key = (
                r.metric.value
                if len(CATALOGUE[r.metric].channels) == 1
                else (f"{r.metric.value}.{channel.name}")
            )
            rows.append(
                {
                    "_time": r.time,
                    "patient_id": r.patient_id,
                    "metric": r.metric.value,
                    "channel": key,
                    "source": r.source,
                    "device": r.device or "unknown",
                    "unit": r.unit,
                    "value": r.values[channel.name],
                    "event_id": r.event_id,
                }
            )
    return sorted(
        rows,
        key=lambda row: tuple(
            str(row[c]) if c != "_time" else row[c]
            for c in ("_time", "source", "device", "metric", "event_id", "channel")
        ),
    )


SERIES = [
    reading(
        Metric.HEART_RATE,
        {"heart_rate": 60.0 + i},
        when=WHEN + timedelta(minutes=i),
        event_id=f"hr-{i}",
    )
    for i in range(3)
] + [
    reading(
        Metric.BLOOD_PRESSURE,
        {"systolic": 120.0, "diastolic": 80.0},
        when=WHEN + timedelta(minutes=1),
        device=None,
        event_id="bp-1",
    )
]


def test_a_page_holds_whole_readings_and_knows_whether_more_follow() -> None:
    rows = rows_of(*SERIES)  # 5 rows, 4 readings; the blood pressure at minute 1
    builder = PageBuilder(count=2)
    assert builder.limit == MAX_CHANNELS * 3
    builder.add(rows[:3])  # hr-0, then the blood pressure's two channels
    assert not builder.full and builder.limit == MAX_CHANNELS * 1
    builder.add(rows[3:])
    assert builder.full
    page = builder.page()
    assert page.more and page.last is not None
    assert [r.event_id for r in readings_of(page.rows)] == ["hr-0", "bp-1"]
    assert page.last.event_id == "bp-1" and page.last.device == "unknown"
    whole = PageBuilder(count=10)
    whole.add(rows)
    everything = whole.page()
    assert not everything.more and len(list(readings_of(everything.rows))) == 4


def test_a_window_that_filled_its_limit_still_gives_whole_readings() -> None:
    """A window asked for ``limit`` rows may end inside a blood pressure: that reading is the
    one after the page, never in it."""
    rows = rows_of(*SERIES)
    builder = PageBuilder(count=1)
    builder.add(rows[: builder.limit])  # hr-0, systolic of bp-1 (its diastolic cut off)
    assert builder.full
    page = builder.page()
    assert [r.event_id for r in readings_of(page.rows)] == ["hr-0"]


# --- Flux --------------------------------------------------------------------------------


def test_the_window_query_reads_after_the_cursor_in_the_rows_order() -> None:
    key = ReadingKey(WHEN, "acme", "watch-1", "heart_rate", "ev-9")
    text = flux.window_query(
        "pghd/autogen",
        PATIENT,
        {Metric.HEART_RATE},
        WHEN,
        WHEN + timedelta(hours=1),
        after=key,
        limit=6,
    )
    moment = format_time(WHEN)
    assert f'r._time > {moment} or (r._time == {moment} and (r.source > "acme" or' in text
    assert 'r.event_id > "ev-9"' in text
    assert text.index("pivot(") < text.index(f"r._time > {moment}")  # event_id is a field
    assert text.endswith(
        'sort(columns: ["_time", "source", "device", "metric", "event_id", "channel"])'
        " |> limit(n: 6)"
    )
    assert 'r.metric == "heart_rate"' in text
    # InfluxDB 1.8's range also gives points stamped at its stop: filtered out
    assert f"r._time < {format_time(WHEN + timedelta(hours=1))})" in text


def test_the_seek_query_filters_nothing_storage_cannot_do_before_first() -> None:
    """InfluxDB 2.x pushes ``range |> filter(tags, field) |> first()`` down to storage (one
    point per series read); a filter on ``_time`` before ``first()`` stops that, and each
    page's seek would read everything from the cursor to now."""
    stop = WHEN + timedelta(hours=1)
    text = flux.seek_query("pghd/autogen", PATIENT, {Metric.HEART_RATE}, WHEN, stop)
    between = text[text.index("|> range(") : text.index("|> first()")]
    assert "_time" not in between
    assert f"range(start: {format_time(WHEN)}, stop: {format_time(stop)})" in between
    assert between.count("|> filter(") == 1
    assert 'r.metric == "heart_rate"' in between and 'r._field == "value"' in between


class ScriptedReader(InfluxObservationReader):
    """The reader with InfluxDB replaced by a script: every query noted, the seek answering
    ``seek`` (the times of each series' first point), every other query nothing."""

    def __init__(self, seek: list[datetime]) -> None:
        super().__init__(url="http://127.0.0.1:1", token="t", org="o", bucket="pghd")
        self.seek = seek
        self.queries: list[str] = []

    async def _records(self, flux: str) -> AsyncIterator[Mapping[str, Any]]:
        self.queries.append(flux)
        if "first()" in flux:
            for moment in self.seek:
                yield {"_time": moment}


async def test_a_seek_drops_a_time_at_its_stop_as_influxdb_1_8_gives_it() -> None:
    """1.8's ``range`` includes its stop; the seek query has no filter against it (see
    above), so its answer is cut in Python."""
    stop = WHEN + timedelta(hours=1)
    search = parse_observation_search([("patient", PATIENT), ("date", f"lt{format_time(stop)}")])
    assert await ScriptedReader([stop])._seek(search, WHEN, stop) is None
    later = stop - timedelta(minutes=1)
    assert await ScriptedReader([stop, later])._seek(search, WHEN, stop) == later
    reader = ScriptedReader([stop])
    assert await reader.page(search, now=NOW) == ObservationPage()
    assert len(reader.queries) == 1  # the seek found nothing before stop: no window read


BEFORE = format_time(NOW - timedelta(days=2))
AFTER = format_time(NOW - timedelta(days=1))


@pytest.mark.parametrize(
    ("dates", "start", "stop"),
    [
        (["ge1600-01-01", "le2300-01-01"], EPOCH, NOW + timedelta(days=1)),
        ([], EPOCH, NOW + timedelta(days=1)),
        (["gt1969-12-31T23:59:59Z"], EPOCH, NOW + timedelta(days=1)),
        ([f"ge{BEFORE}", f"lt{AFTER}"], t(BEFORE), t(AFTER)),
    ],
)
async def test_the_dates_read_are_clamped_to_1970_and_a_day_after_now(
    dates: list[str], start: datetime, stop: datetime
) -> None:
    """InfluxDB refuses ``range`` times before 1677 or after 2262, and no reading is stored
    before 1970 or more than a day ahead: a search's bounds are clamped before Flux."""
    search = parse_observation_search([("patient", PATIENT), *(("date", d) for d in dates)])
    reader = ScriptedReader([])
    await reader.page(search, now=NOW)
    [seek] = reader.queries
    assert f"range(start: {format_time(start)}, stop: {format_time(stop)})" in seek


async def test_a_search_after_the_clamp_reads_nothing() -> None:
    """``date=ge2300-01-01`` starts after a day from now: nothing can match, nothing is read."""
    search = parse_observation_search([("patient", PATIENT), ("date", "ge2300-01-01")])
    reader = ScriptedReader([])
    assert await reader.page(search, now=NOW) == ObservationPage()
    assert reader.queries == []


def test_values_in_the_flux_are_escaped_literals() -> None:
    hostile = 'x" or true or r.patient_id == "${r.patient_id}'
    text = flux.seek_query("pghd", hostile, None, WHEN, NOW)
    assert 'r.patient_id == "x\\" or true or r.patient_id == \\"\\${r.patient_id}"' in text
    key = ReadingKey(WHEN, hostile, hostile, hostile, hostile)
    assert '"x" or' not in flux.after_predicate(key)


# --- interpretation --------------------------------------------------------------------------


def interpreted(stored: StoredReading, *found: StoredFinding) -> dict[str, Any]:
    resource = vital_sign(stored, flags_of(stored, index_findings(found)))
    Observation.model_validate(resource)
    return resource


def code_of(resource: Mapping[str, Any]) -> str | None:
    concepts = resource.get("interpretation")
    return concepts[0]["coding"][0]["code"] if concepts else None


@pytest.mark.parametrize(
    ("metric", "channel", "value", "severity", "detector", "code"),
    [
        (Metric.HEART_RATE, "heart_rate", 165.0, "critical", "deviation", "HH"),  # NEWS2 band
        (Metric.HEART_RATE, "heart_rate", 85.0, "warning", "deviation", "H"),  # judged upward
        (Metric.HEART_RATE, "heart_rate", 38.0, "critical", "news2", "LL"),
        (Metric.SPO2, "spo2", 93.0, "warning", "news2", "L"),
        (Metric.RESPIRATORY_RATE, "respiratory_rate", 26.0, "critical", "news2", "HH"),
        (Metric.BODY_TEMPERATURE, "body_temperature", 37.6, "warning", "deviation", "A"),
        (Metric.BLOOD_GLUCOSE, "blood_glucose", 50.0, "critical", "glycaemia", "AA"),
        (Metric.WEIGHT, "weight", 90.0, "warning", "care_plan", "A"),
    ],
)
def test_a_flagged_reading_is_interpreted_high_low_or_abnormal(
    metric: Metric, channel: str, value: float, severity: str, detector: str, code: str
) -> None:
    resource = interpreted(
        reading(metric, {channel: value}),
        finding(channel, value, severity=severity, detector=detector),
    )
    assert code_of(resource) == code
    concept = resource["interpretation"][0]
    assert concept["coding"][0]["system"] == INTERPRETATION
    assert concept["text"] == f"{channel} {value} is off"


def test_a_blood_pressure_is_interpreted_on_its_flagged_component() -> None:
    pressure = reading(Metric.BLOOD_PRESSURE, {"systolic": 170.0, "diastolic": 85.0})
    resource = interpreted(
        pressure, finding("blood_pressure.systolic", 170.0, detector="hypertension")
    )
    systolic, diastolic = resource["component"]
    assert systolic["interpretation"][0]["coding"][0]["code"] == "H"
    assert "interpretation" not in diastolic
    assert code_of(resource) == "H"


def test_a_patient_gets_the_interpretation_codes_without_the_care_team_s_explanation() -> None:
    """docs/patients.md: the findings' explanations are never passed to patients."""
    pressure = reading(Metric.BLOOD_PRESSURE, {"systolic": 170.0, "diastolic": 85.0})
    found = finding("blood_pressure.systolic", 170.0, detector="hypertension")
    assert found.explanation
    flags = flags_of(pressure, index_findings([found]))
    for_team = vital_sign(pressure, flags)
    assert for_team["interpretation"][0]["text"] == found.explanation
    assert for_team["component"][0]["interpretation"][0]["text"] == found.explanation
    for_patient = vital_sign(pressure, flags, for_patient=True)
    Observation.model_validate(for_patient)
    concept = {"coding": [{"system": INTERPRETATION, "code": "H", "display": "High"}]}
    assert for_patient["interpretation"] == [concept]
    assert for_patient["component"][0]["interpretation"] == [concept]
    assert found.explanation not in str(for_patient)


def test_notes_withdrawn_flags_and_other_readings_findings_flag_nothing() -> None:
    heart = reading(Metric.HEART_RATE, {"heart_rate": 112.0})
    cases = [
        finding("heart_rate", 112.0, severity="info", detector="data_gap"),
        finding("heart_rate", 112.0, severity="info", detector="episode", phase="resolved"),
        finding("heart_rate", 111.0),  # another device's reading at the same time
        finding("heart_rate", 112.0, when=WHEN + timedelta(seconds=1)),
        finding("resting_heart_rate", 112.0, metric=Metric.RESTING_HEART_RATE),
    ]
    for case in cases:
        assert code_of(interpreted(heart, case)) is None, case
    flagged = finding("heart_rate", 112.0, severity="warning", detector="resting_tachycardia")
    withdrawn = finding("heart_rate", 112.0, severity="info", detector="episode", phase="withdrawn")
    assert code_of(interpreted(heart, flagged)) == "H"
    assert code_of(interpreted(heart, flagged, withdrawn)) is None
    critical = finding("heart_rate", 112.0, severity="critical", detector="deviation")
    assert code_of(interpreted(heart, flagged, critical)) == "HH"


def test_the_store_s_own_points_link_a_finding_to_its_reading() -> None:
    """What the processors write (a reading's points, an anomaly at its time, on its
    channel, with its value) read back as the API reads them: the reading is flagged."""
    measurement = Measurement(
        event_id="ev-42",
        patient_id=PATIENT,
        metric=Metric.SPO2,
        value=91.0,
        unit="%",
        effective_time=WHEN,
        source=Source(vendor="acme", device_id="ring-2"),
        received_at=WHEN,
    )
    rows = []
    for channel, value in measurement.channels():
        point = vital_point(measurement, channel=channel, value=value)
        rows.append({**point.tags, **point.fields, "_time": point.time})
    [stored] = readings_of(rows)
    anomaly = Anomaly(
        anomaly_id="a" * 32,
        patient_id=PATIENT,
        metric=Metric.SPO2,
        channel="spo2",
        detector="news2",
        severity=Severity.CRITICAL,
        score=3.0,
        value=91.0,
        unit="%",
        observed_at=measurement.effective_time,
        detected_at=NOW,
        explanation="SpO2 91 % is in the NEWS2 score-3 band (≤91 %).",
        event_ids=["ev-42"],
    )
    point = anomaly_point(anomaly)
    stored_finding = finding_of({**point.tags, **point.fields, "_time": point.time})
    assert stored_finding is not None
    assert code_of(interpreted(stored, stored_finding)) == "LL"


# --- resources -----------------------------------------------------------------------------


def test_vital_signs_carry_their_profiles_and_others_none() -> None:
    heart = interpreted(reading(Metric.HEART_RATE, {"heart_rate": 72.0}))
    assert heart["meta"]["profile"] == [
        VITAL_SIGNS,
        "http://hl7.org/fhir/StructureDefinition/heartrate",
    ]
    assert heart["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert heart["device"]["identifier"]["value"] == "watch-1"
    assert heart["category"][0]["coding"][0]["code"] == "vital-signs"
    assert "interpretation" not in heart
    spo2 = interpreted(reading(Metric.SPO2, {"spo2": 97.0}))
    assert [c["code"] for c in spo2["code"]["coding"]] == ["59408-5", "2708-6"]
    assert spo2["meta"]["profile"][1].endswith("/oxygensat")
    resting = interpreted(reading(Metric.RESTING_HEART_RATE, {"resting_heart_rate": 55.0}))
    assert resting["meta"]["profile"] == [VITAL_SIGNS]
    steps = interpreted(
        reading(Metric.STEPS, {"steps": 900.0}, end=WHEN + timedelta(hours=1), device=None)
    )
    assert "profile" not in steps["meta"] and "effectivePeriod" in steps
    glucose = interpreted(reading(Metric.BLOOD_GLUCOSE, {"blood_glucose": 99.0}))
    assert "profile" not in glucose["meta"]
    for metric in Metric:
        values = {c.name: c.possible[0] + 1.0 for c in CATALOGUE[metric].channels}
        interpreted(reading(metric, values))  # every metric validates


def test_alerts_are_flags_active_until_resolved() -> None:
    opened = make_alert(patient_id=PATIENT, severity=Severity.CRITICAL)
    acknowledged = make_alert(patient_id=PATIENT, problem="spo2", status=AlertState.ACKNOWLEDGED)
    resolved = make_alert(patient_id=PATIENT, problem="news2", status=AlertState.RESOLVED)
    resources = [flag(a) for a in (opened, acknowledged, resolved)]
    for resource in resources:
        Flag.model_validate(resource)
    first, second, third = resources
    assert [r["status"] for r in resources] == ["active", "active", "inactive"]
    assert first["id"] == opened.alert_id
    assert first["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert first["code"]["text"] == f"Heart rate: {opened.summary}"
    assert first["code"]["coding"][0]["code"] == "heart_rate"
    assert first["category"][0]["coding"][0]["code"] == "clinical"
    assert first["period"] == {"start": format_time(opened.opened_at)}
    assert first["author"]["type"] == "Device"
    assert first["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    assert second["extension"][1] == {
        "url": "urn:pghd:fhir:alert-state",
        "valueCode": "acknowledged",
    }
    assert second["code"]["text"].startswith("Oxygen saturation")
    assert third["period"]["end"] == format_time(resolved.resolved_at or NOW)
    assert third["code"]["text"].startswith("NEWS2 score")


def test_a_patient_s_flag_names_the_problem_without_the_alert_s_summary() -> None:
    """docs/patients.md: Alert.summary is the care team's text, never passed to patients."""
    for problem, label in (("heart_rate", "Heart rate"), ("news2", "NEWS2 score")):
        alert = make_alert(patient_id=PATIENT, problem=problem, summary="165 /min, far above")
        own = flag(alert, for_patient=True)
        Flag.model_validate(own)
        assert own["code"]["text"] == own["code"]["coding"][0]["display"]
        assert own["code"]["text"].startswith(label)
        assert "far above" not in str(own)
        team = flag(alert)
        assert team["code"]["text"] == f"{own['code']['text']}: 165 /min, far above"
        assert {k: v for k, v in team.items() if k != "code"} == {
            k: v for k, v in own.items() if k != "code"
        }


def test_a_flag_search_lists_open_and_recently_resolved_alerts() -> None:
    now = datetime.now(UTC)  # make_alert's times are relative to the session's start
    recent = make_alert(patient_id=PATIENT, problem="spo2", status=AlertState.RESOLVED)
    old = make_alert(
        patient_id=PATIENT,
        problem="weight",
        status=AlertState.RESOLVED,
        resolved_at=now - RECENTLY_RESOLVED - timedelta(minutes=1),
    )
    opened = make_alert(patient_id=PATIENT)
    someone_else = make_alert(patient_id="p-other")
    alerts = [recent, old, opened, someone_else]

    def found(statuses: set[FlagStatus]) -> list[str]:
        search = FlagSearch(patient_id=PATIENT, statuses=frozenset(statuses))
        return [a.problem for a in matching_alerts(alerts, search, now=now)]

    assert set(found({"active", "inactive"})) == {"spo2", "heart_rate"}
    assert found({"active"}) == ["heart_rate"]
    assert found({"inactive"}) == ["spo2"]
    assert parse_flag_search(params(f"patient={PATIENT}&status=active")).statuses == {"active"}
    both = parse_flag_search(params(f"patient={PATIENT}&status=active,inactive"))
    assert both.statuses == {"active", "inactive"}
    with pytest.raises(SearchError):
        parse_flag_search(params(f"patient={PATIENT}&status=open"))


def test_a_searchset_bundle_validates_with_its_links_and_matches() -> None:
    resources = [
        interpreted(reading(Metric.HEART_RATE, {"heart_rate": 70.0 + i}, event_id=f"e{i}"))
        for i in range(3)
    ] + [flag(make_alert(patient_id=PATIENT))]
    links = [
        ("self", "https://pghd.example.org/fhir/Observation?patient=p"),
        ("next", "https://x/n"),
    ]
    bundle = searchset(resources, links=links, now=NOW)
    Bundle.model_validate(bundle)
    assert (bundle["type"], bundle["timestamp"]) == ("searchset", format_time(NOW))
    assert bundle["link"] == [{"relation": r, "url": u} for r, u in links]
    assert [e["search"] for e in bundle["entry"]] == [{"mode": "match"}] * 4
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == 4 and all(u.startswith("urn:uuid:") for u in urls)
    assert urls[0] == full_url(resources[0])
    empty = searchset([], links=links[:1], now=NOW)
    Bundle.model_validate(empty)
    assert "entry" not in empty


@pytest.mark.parametrize("identity_provider", [False, True])
def test_the_capability_statement_says_what_is_served(identity_provider: bool) -> None:
    statement = capability_statement(
        version="9.9.9",
        date=NOW,
        base_url="https://pghd.example.org/fhir",
        identity_provider=identity_provider,
    )
    CapabilityStatement.model_validate(statement)
    assert (statement["fhirVersion"], statement["kind"], statement["date"]) == (
        "4.0.1",
        "instance",
        format_time(NOW),
    )
    assert "json" in statement["format"]
    [rest] = statement["rest"]
    assert rest["mode"] == "server"
    resources = {r["type"]: r for r in rest["resource"]}
    observation = resources["Observation"]
    assert [p["name"] for p in observation["searchParam"]] == ["patient", "code", "date", "_count"]
    assert observation["interaction"] == [{"code": "search-type"}]
    assert VITAL_SIGNS in observation["supportedProfile"]
    assert [p["name"] for p in resources["Flag"]["searchParam"]] == ["patient", "status"]
    assert "SMART on FHIR" in rest["security"]["description"]
    assert ("service" in rest["security"]) is identity_provider


def test_the_read_api_is_audited_but_its_metadata() -> None:
    prefixes, public = ("/v1/", "/fhir/"), ("/fhir/metadata",)
    assert audited_path("/fhir/Observation", prefixes=prefixes, public=public)
    assert audited_path("/fhir/Flag", prefixes=prefixes, public=public)
    assert audited_path("/v1/alerts", prefixes=prefixes, public=public)
    assert not audited_path("/fhir/metadata", prefixes=prefixes, public=public)
    assert not audited_path("/readyz", prefixes=prefixes, public=public)


def test_an_observation_search_fingerprint_names_patient_codes_and_dates() -> None:
    base = ObservationSearch(patient_id=PATIENT, metrics=None, window=TimeRange())
    assert (
        base.fingerprint
        != ObservationSearch(
            patient_id=PATIENT, metrics=frozenset({Metric.SPO2}), window=TimeRange()
        ).fingerprint
    )
    assert (
        base.fingerprint
        == ObservationSearch(
            patient_id=PATIENT, metrics=None, window=TimeRange(), count=3
        ).fingerprint
    )
