"""The Apple Health export parser: units, pairing, sleep, bad records, safety, memory."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pghd.apple_health import (
    ExportError,
    ExportStats,
    NotAnExport,
    UnsafeExport,
    check_export,
    iter_readings,
    open_export,
)
from pghd.readings import ReadingIn, canonicalize
from pghd.simulation.apple_export import HEADER, NIGHT_ASLEEP_HOURS, write_export

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
Q = "HKQuantityTypeIdentifier"
WATCH_DEVICE = (
    "&lt;&lt;HKDevice: 0x2836f1a40&gt;, name:Apple Watch, manufacturer:Apple Inc., "
    "model:Watch, hardware:Watch6,2, software:10.1&gt;"
)


def record(
    kind: str,
    value: str,
    unit: str | None = None,
    *,
    start: str = "2026-01-02 08:15:00 -0500",
    end: str | None = None,
    source: str = "Alex\u2019s Apple Watch",
    body: str = "",
) -> str:
    unit_attr = f' unit="{unit}"' if unit is not None else ""
    attrs = (
        f'type="{kind}" sourceName="{source}" device="{WATCH_DEVICE}"{unit_attr}'
        f' creationDate="{start}" startDate="{start}" endDate="{end or start}" value="{value}"'
    )
    return f"<Record {attrs}>{body}</Record>" if body else f"<Record {attrs}/>"


def document(*elements: str, header: str = HEADER) -> bytes:
    return (
        header
        + '<HealthData locale="en_US">\n <ExportDate value="2026-01-03 00:00:00 -0500"/>\n'
        + "\n".join(elements)
        + "\n</HealthData>\n"
    ).encode()


def parse(xml: bytes, patient: str = "p-1") -> tuple[list[dict[str, Any]], ExportStats]:
    stats = ExportStats()
    readings = list(iter_readings(io.BytesIO(xml), patient_id=patient, stats=stats))
    return readings, stats


def canonical(reading: dict[str, Any]) -> Any:
    """The measurement ingest would make of ``reading`` (its full validation path)."""
    return canonicalize(ReadingIn.model_validate(reading), vendor="acme", received_at=END)


@pytest.mark.parametrize(
    ("kind", "value", "unit", "metric", "posted", "stored", "stored_unit"),
    [
        ("HeartRate", "72", "count/min", "heart_rate", ("/min", 72), 72, "/min"),
        ("RestingHeartRate", "55", "count/min", "resting_heart_rate", ("/min", 55), 55, "/min"),
        ("HeartRateVariabilitySDNN", "41.5", "ms", "hrv_sdnn", ("ms", 41.5), 41.5, "ms"),
        ("OxygenSaturation", "0.97", "%", "spo2", ("%", 97), 97, "%"),
        ("RespiratoryRate", "14.5", "count/min", "respiratory_rate", ("/min", 14.5), 14.5, "/min"),
        ("BodyTemperature", "98.6", "degF", "body_temperature", ("[degF]", 98.6), 37.0, "Cel"),
        ("BodyTemperature", "36.8", "degC", "body_temperature", ("Cel", 36.8), 36.8, "Cel"),
        ("BloodGlucose", "104", "mg/dL", "blood_glucose", ("mg/dL", 104), 104, "mg/dL"),
        (
            "BloodGlucose",
            "5.5",
            "mmol&lt;180.1558800000541&gt;/L",
            "blood_glucose",
            ("mg/dL", 99.085734),
            99.0857,
            "mg/dL",
        ),
        ("StepCount", "812", "count", "steps", ("{steps}", 812), 812, "{steps}"),
        ("BodyMass", "150", "lb", "weight", ("[lb_av]", 150), 68.0389, "kg"),
        ("BodyMass", "70.2", "kg", "weight", ("kg", 70.2), 70.2, "kg"),
    ],
)
def test_quantity_units_map_to_the_catalogue(
    kind: str,
    value: str,
    unit: str,
    metric: str,
    posted: tuple[str, float],
    stored: float,
    stored_unit: str,
) -> None:
    (reading,), stats = parse(document(record(f"{Q}{kind}", value, unit)))
    assert reading["metric"] == metric
    assert (reading["unit"], reading["value"]) == (posted[0], pytest.approx(posted[1]))
    assert reading["effective_time"] == "2026-01-02T08:15:00-05:00"
    assert reading["app"] == "Alex\u2019s Apple Watch"
    assert reading["device_id"] == "Apple Watch"
    assert reading["patient_id"] == "p-1"
    measurement = canonical(reading)
    assert measurement.value == pytest.approx(stored, abs=1e-3)
    assert measurement.unit == stored_unit
    assert measurement.effective_time == datetime(2026, 1, 2, 13, 15, tzinfo=UTC)
    assert measurement.event_id == reading["event_id"]
    assert stats.readings == Counter({metric: 1})


def test_an_unknown_unit_is_passed_on_for_ingest_to_refuse() -> None:
    (reading,), _ = parse(document(record(f"{Q}BodyMass", "11", "st")))
    assert reading["unit"] == "st"


def test_heart_rate_motion_context_becomes_the_reading_context() -> None:
    def meta(value: str) -> str:
        return f'<MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="{value}"/>'

    readings, _ = parse(
        document(
            record(f"{Q}HeartRate", "61", "count/min", body=meta("1")),
            record(
                f"{Q}HeartRate",
                "131",
                "count/min",
                start="2026-01-02 09:00:00 -0500",
                body=meta("2"),
            ),
            record(
                f"{Q}HeartRate",
                "80",
                "count/min",
                start="2026-01-02 10:00:00 -0500",
                body=meta("0"),
            ),
        )
    )
    assert [r.get("context") for r in readings] == ["rest", "activity", None]


BP_TIME = "2026-01-02 07:30:00 -0500"


def bp_half(kind: str, value: str, *, source: str = "Withings", start: str = BP_TIME) -> str:
    return record(f"{Q}BloodPressure{kind}", value, "mmHg", source=source, start=start)


def test_blood_pressure_in_a_correlation_is_one_reading_even_with_its_top_level_halves() -> None:
    correlation = (
        f'<Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Withings"'
        f' creationDate="{BP_TIME}" startDate="{BP_TIME}" endDate="{BP_TIME}">'
        '<MetadataEntry key="HKWasUserEntered" value="0"/>'
        f"{bp_half('Diastolic', '82')}{bp_half('Systolic', '128')}</Correlation>"
    )
    halves = [bp_half("Diastolic", "82"), bp_half("Systolic", "128")]
    for elements in ([correlation], [*halves, correlation], [correlation, *halves]):
        readings, stats = parse(document(*elements))
        assert len(readings) == 1, elements
        (reading,) = readings
        assert reading["metric"] == "blood_pressure"
        assert (reading["systolic"], reading["diastolic"], reading["unit"]) == (128, 82, "mm[Hg]")
        assert "value" not in reading
        assert canonical(reading).components == {"systolic": 128, "diastolic": 82}
        assert not stats.problems
    # Both routes give the same event id, so readings from either are one event downstream.
    assert (
        parse(document(correlation))[0][0]["event_id"] == parse(document(*halves))[0][0]["event_id"]
    )


def test_blood_pressure_halves_pair_by_start_and_source_only() -> None:
    readings, stats = parse(
        document(
            bp_half("Diastolic", "80"),
            bp_half("Diastolic", "75", start="2026-01-02 19:00:00 -0500"),
            bp_half("Diastolic", "90", source="Omron"),
            bp_half("Systolic", "121"),
            bp_half("Systolic", "117", start="2026-01-02 19:00:00 -0500"),
            bp_half("Systolic", "140", source="Qardio"),
        )
    )
    assert [(r["systolic"], r["diastolic"]) for r in readings] == [(121, 80), (117, 75)]
    assert stats.problems == Counter({"blood pressure half without its pair": 2})


def test_a_correlation_missing_a_half_is_a_problem_not_a_reading() -> None:
    correlation = (
        f'<Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Withings"'
        f' startDate="{BP_TIME}" endDate="{BP_TIME}">{bp_half("Systolic", "128")}</Correlation>'
    )
    readings, stats = parse(document(correlation))
    assert readings == []
    assert stats.problems == Counter({"blood pressure correlation without both halves": 1})


SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
V = "HKCategoryValueSleepAnalysis"


def sleep(value: str, start: str, end: str, *, source: str = "Alex\u2019s Apple Watch") -> str:
    return record(SLEEP, f"{V}{value}", start=start, end=end, source=source)


def test_sleep_is_one_reading_per_night_and_source_counting_asleep_values_once() -> None:
    readings, stats = parse(
        document(
            sleep("InBed", "2026-01-01 22:50:00 -0500", "2026-01-02 07:00:00 -0500"),
            sleep("AsleepCore", "2026-01-01 23:00:00 -0500", "2026-01-02 01:00:00 -0500"),
            sleep("AsleepDeep", "2026-01-02 01:00:00 -0500", "2026-01-02 02:00:00 -0500"),
            # overlaps the deep segment by 30 min: counted once
            sleep("AsleepREM", "2026-01-02 01:30:00 -0500", "2026-01-02 03:00:00 -0500"),
            sleep("Awake", "2026-01-02 03:00:00 -0500", "2026-01-02 03:30:00 -0500"),
            sleep("Asleep", "2026-01-02 03:30:00 -0500", "2026-01-02 06:45:00 -0500"),
            # another source the same night, and the next night
            sleep(
                "AsleepUnspecified",
                "2026-01-02 00:00:00 -0500",
                "2026-01-02 06:00:00 -0500",
                source="AutoSleep",
            ),
            sleep("AsleepCore", "2026-01-02 23:30:00 -0500", "2026-01-03 06:00:00 -0500"),
            # a nap in the afternoon belongs to the night that follows (noon to noon)
            sleep("AsleepCore", "2026-01-03 14:00:00 -0500", "2026-01-03 14:30:00 -0500"),
        )
    )
    # each night from its first asleep start (not in bed) to its last asleep end
    nights = [(r["app"], r["value"], r["effective_time"], r["effective_end"]) for r in readings]
    assert nights == [
        (
            "Alex\u2019s Apple Watch",
            7.25,
            "2026-01-01T23:00:00-05:00",
            "2026-01-02T06:45:00-05:00",
        ),
        ("AutoSleep", 6.0, "2026-01-02T00:00:00-05:00", "2026-01-02T06:00:00-05:00"),
        (
            "Alex\u2019s Apple Watch",
            6.5,
            "2026-01-02T23:30:00-05:00",
            "2026-01-03T06:00:00-05:00",
        ),
        (
            "Alex\u2019s Apple Watch",
            0.5,
            "2026-01-03T14:00:00-05:00",
            "2026-01-03T14:30:00-05:00",
        ),
    ]
    assert {r["unit"] for r in readings} == {"h"}
    first = canonical(readings[0])
    assert first.value == 7.25
    assert first.effective_time == datetime(2026, 1, 2, 4, 0, tzinfo=UTC)
    assert first.effective_end == datetime(2026, 1, 2, 11, 45, tzinfo=UTC)
    assert stats.readings == Counter({"sleep_duration": 4})
    assert stats.by_type[SLEEP] == 9
    assert len({r["event_id"] for r in readings}) == 4


def test_a_night_starts_at_its_earliest_asleep_segment_whatever_the_record_order() -> None:
    (night,), _ = parse(
        document(  # stage records of one source need not come in time order
            sleep("AsleepREM", "2026-01-02 02:10:00 -0500", "2026-01-02 02:40:00 -0500"),
            sleep("AsleepCore", "2026-01-01 23:20:00 -0500", "2026-01-02 02:10:00 -0500"),
            sleep("AsleepDeep", "2026-01-02 02:40:00 -0500", "2026-01-02 03:10:00 -0500"),
        )
    )
    assert (night["effective_time"], night["effective_end"], night["value"]) == (
        "2026-01-01T23:20:00-05:00",
        "2026-01-02T03:10:00-05:00",
        3.8333,
    )


IPHONE = (
    "&lt;&lt;HKDevice: 0x281f2c6e0&gt;, name:iPhone, manufacturer:Apple Inc., "
    "model:iPhone, hardware:iPhone14,5, software:17.1&gt;"
)


def test_a_step_count_keeps_the_end_of_its_record() -> None:
    # as the iPhone writes them: one record per walking bout, startDate to endDate
    step_count = record(
        f"{Q}StepCount",
        "812",
        "count",
        start="2026-01-02 08:15:00 -0500",
        end="2026-01-02 08:21:34 -0500",
        source="Alex\u2019s iPhone",
    ).replace(WATCH_DEVICE, IPHONE)
    (reading,), _ = parse(document(step_count))
    assert (reading["effective_time"], reading["effective_end"]) == (
        "2026-01-02T08:15:00-05:00",
        "2026-01-02T08:21:34-05:00",
    )
    assert reading["device_id"] == "iPhone"
    measurement = canonical(reading)
    assert measurement.effective_end == datetime(2026, 1, 2, 13, 21, 34, tzinfo=UTC)
    assert measurement.value == 812


def test_only_interval_metrics_keep_an_end() -> None:
    readings, _ = parse(
        document(
            # an SDNN record spans the minute of beats it was computed from: still a level
            record(
                f"{Q}HeartRateVariabilitySDNN",
                "41.5",
                "ms",
                start="2026-01-02 08:15:00 -0500",
                end="2026-01-02 08:16:00 -0500",
            ),
            record(f"{Q}StepCount", "9", "count"),  # a step count whose end is its start
        )
    )
    assert [r["metric"] for r in readings] == ["hrv_sdnn", "steps"]
    assert all("effective_end" not in r for r in readings)


@pytest.mark.parametrize(
    ("start", "value", "problem"),
    [
        ("2026-13-02 08:15:00 -0500", "70", "bad date"),
        ("2026-01-02 08:15:00", "70", "bad date"),  # no UTC offset
        ("yesterday", "70", "bad date"),
        ("2026-01-02 08:15:00 -0500", "seventy", "bad value"),
        ("2026-01-02 08:15:00 -0500", "nan", "bad value"),
    ],
)
def test_bad_records_are_counted_and_the_rest_parsed(start: str, value: str, problem: str) -> None:
    readings, stats = parse(
        document(
            record(f"{Q}HeartRate", value, "count/min", start=start),
            record(f"{Q}HeartRate", "66", "count/min"),
        )
    )
    assert [r["value"] for r in readings] == [66]
    assert stats.problems == Counter({problem: 1})
    assert stats.records == 2


def test_unknown_types_and_elements_are_skipped_and_counted() -> None:
    readings, stats = parse(
        document(
            '<Me HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>',
            record(f"{Q}ActiveEnergyBurned", "3.2", "kcal"),
            record(f"{Q}ActiveEnergyBurned", "1.1", "kcal"),
            record(f"{Q}DistanceWalkingRunning", "0.4", "km"),
            record(f"{Q}HeartRate", "70", "count/min"),
            '<Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="30">'
            '<WorkoutEvent type="HKWorkoutEventTypeSegment"/></Workout>',
            '<ActivitySummary dateComponents="2026-01-02" activeEnergyBurned="400"/>',
        )
    )
    assert [r["metric"] for r in readings] == ["heart_rate"]
    assert stats.skipped == Counter(
        {
            f"{Q}ActiveEnergyBurned": 2,
            f"{Q}DistanceWalkingRunning": 1,
            "Workout": 1,
            "ActivitySummary": 1,
        }
    )
    assert stats.records == 4


def test_event_ids_are_deterministic_unique_and_per_patient(tmp_path: Path) -> None:
    summary = write_export(tmp_path / "export.zip", records=3000, end=END)

    def ids(patient: str) -> list[str]:
        with open_export(summary.path) as stream:
            return [r["event_id"] for r in iter_readings(stream, patient_id=patient)]

    first, again, other = ids("p-1"), ids("p-1"), ids("p-2")
    assert first == again
    assert len(set(first)) == len(first) == summary.total_readings
    assert not set(first) & set(other)


@pytest.mark.parametrize("bare_xml", [False, True])
def test_generated_export_parses_to_what_the_generator_wrote(
    tmp_path: Path, bare_xml: bool
) -> None:
    path = tmp_path / ("export.xml" if bare_xml else "export.zip")
    summary = write_export(path, records=4000, end=END, bare_xml=bare_xml)
    stats = ExportStats()
    with open_export(path) as stream:
        readings = list(iter_readings(stream, patient_id="p-1", stats=stats))
        assert stream.position == stream.total > 0
    assert dict(stats.readings) == summary.readings
    assert stats.by_type[f"{Q}HeartRate"] == summary.by_type[f"{Q}HeartRate"]
    assert stats.records == summary.records + summary.correlations
    assert not stats.problems
    nights = [r["value"] for r in readings if r["metric"] == "sleep_duration"]
    assert nights and all(v == pytest.approx(NIGHT_ASLEEP_HOURS, abs=1e-4) for v in nights)
    steps = [r for r in readings if r["metric"] == "steps"]
    assert steps and all(  # the generator gives step counts a span, as the iPhone does
        datetime.fromisoformat(r["effective_end"]) > datetime.fromisoformat(r["effective_time"])
        for r in steps
    )
    for reading in readings:  # every one passes ingest's validation and range checks
        canonical(reading)


BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n<!ENTITY a "aaaaaaaaaaaaaaaaaaaa">\n'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(9))
    + ']>\n<HealthData><Record type="HKQuantityTypeIdentifierHeartRate" sourceName="&j;"'
    ' unit="count/min" startDate="2026-01-02 08:15:00 -0500"'
    ' endDate="2026-01-02 08:15:00 -0500" value="70"/></HealthData>\n'
).encode()
EXTERNAL = (
    b'<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n'
    b'<!ENTITY secret SYSTEM "file:///etc/passwd">\n]>\n<HealthData><Me name="&secret;"/>'
    b"</HealthData>\n"
)


@pytest.mark.parametrize("xml", [BOMB, EXTERNAL], ids=["entity-expansion", "external-entity"])
def test_entity_declarations_are_refused_not_expanded(xml: bytes, tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(UnsafeExport, match="entities"):
        parse(xml)
    assert time.perf_counter() - started < 1.0  # 10^10 characters were never built
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("apple_health_export/export.xml", xml)
    with pytest.raises(UnsafeExport):
        check_export(path)


def test_the_real_doctype_with_its_internal_subset_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "export.xml"
    path.write_bytes(document(record(f"{Q}HeartRate", "70", "count/min")))
    assert HEADER.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE HealthData [')
    check_export(path)
    assert len(parse(path.read_bytes())[0]) == 1


def test_what_is_not_an_export_is_refused_clearly(tmp_path: Path) -> None:
    other_zip = tmp_path / "photos.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("apple_health_export/export_cda.xml", "<ClinicalDocument/>")
    binary = tmp_path / "export.bin"
    binary.write_bytes(b"\x00\x01 not xml at all")
    wrong_root = tmp_path / "export.xml"
    wrong_root.write_bytes(b'<?xml version="1.0"?><rss version="2.0"></rss>')
    with pytest.raises(NotAnExport, match=r"no export\.xml"):
        check_export(other_zip)
    with pytest.raises(NotAnExport, match="neither a zip nor XML"):
        check_export(binary)
    with pytest.raises(NotAnExport, match="<rss>"):
        check_export(wrong_root)
    with pytest.raises(NotAnExport, match="<rss>"):
        parse(wrong_root.read_bytes())
    truncated = document(record(f"{Q}HeartRate", "70", "count/min"))[:-40]
    with pytest.raises(ExportError, match="not well-formed"):
        parse(truncated)


def _peak(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with open_export(path) as stream:
            count = sum(1 for _ in iter_readings(stream, patient_id="p-1"))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_export_grows(tmp_path: Path) -> None:
    small = write_export(tmp_path / "small.zip", records=50_000, end=END)
    large = write_export(tmp_path / "large.zip", records=200_000, end=END)
    small_count, small_peak = _peak(small.path)
    large_count, large_peak = _peak(large.path)
    assert (small_count, large_count) == (small.total_readings, large.total_readings)
    # Four times the records: the peak grows only by the blood-pressure pairing entries
    # (0.5 % of records, a few hundred bytes each); keeping the parsed elements would cost
    # ~1 KiB per record, 150 MiB more.
    assert large_peak < 2 * 1024 * 1024, large_peak
    assert large_peak - small_peak < 512 * 1024, (small_peak, large_peak)


def test_damaged_or_unreadable_zips_are_export_errors(tmp_path: Path) -> None:
    summary = write_export(tmp_path / "export.zip", records=3000, end=END)
    data = bytearray(summary.path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ExportError), open_export(damaged) as stream:
        for _ in iter_readings(stream, patient_id="p-1"):
            pass

    stored = tmp_path / "stored.zip"
    with zipfile.ZipFile(stored, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("apple_health_export/export.xml", document())
    raw = bytearray(stored.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = raw.index(signature) + offset
        raw[at : at + 2] = (99).to_bytes(2, "little")  # a compression method zipfile lacks
    stored.write_bytes(bytes(raw))
    with pytest.raises(NotAnExport, match="cannot be read from the zip"):
        check_export(stored)
