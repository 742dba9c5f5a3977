"""Synthetic Apple Health exports (``export.zip``) for tests and the bench.

Laid out as the Health app writes them: the XML declaration, a ``DOCTYPE`` with its internal
subset (``ELEMENT``/``ATTLIST`` declarations, no entities), ``ExportDate``, ``Me``, then the
``Record`` elements grouped by type in alphabetical order (each type in time order, with
``MetadataEntry`` and ``HeartRateVariabilityMetadataList`` children), then blood-pressure
``Correlation`` elements whose ``Record`` children also appear at top level (as the real
export's DTD notes), then a ``Workout`` and ``ActivitySummary`` elements (which the importer
skips). Three quarters of the blood-pressure pairs are also in a correlation; the others pair
only by start time and source. Records of one type never share a start time, so every
reading is its own point in InfluxDB.

Deterministic for a given ``seed``; the XML is written straight into the zip member, so a
million-record export needs little memory. No clock and no environment: ``end`` is given.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

__all__ = ["HEADER", "MEMBER", "ExportSummary", "write_export"]

MEMBER = "apple_health_export/export.xml"
Q = "HKQuantityTypeIdentifier"
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
BP_CORRELATION = "HKCorrelationTypeIdentifierBloodPressure"
GLUCOSE_MMOL = "mmol<180.1558800000541>/L"

HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Me EMPTY>
<!ATTLIST Me
  HKCharacteristicTypeIdentifierDateOfBirth         CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBiologicalSex       CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBloodType           CDATA #REQUIRED
  HKCharacteristicTypeIdentifierFitzpatrickSkinType CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level
     records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
<!ATTLIST Correlation
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry
  key   CDATA #REQUIRED
  value CDATA #REQUIRED
>
<!ELEMENT HeartRateVariabilityMetadataList (InstantaneousBeatsPerMinute*)>
<!ELEMENT InstantaneousBeatsPerMinute EMPTY>
<!ATTLIST InstantaneousBeatsPerMinute
  bpm  CDATA #REQUIRED
  time CDATA #REQUIRED
>
]>
"""

_WATCH = (
    "Alex\u2019s Apple Watch",
    "&lt;&lt;HKDevice: 0x281f2c5a0&gt;, name:Apple Watch, manufacturer:Apple Inc., "
    "model:Watch, hardware:Watch6,2, software:10.1&gt;",
)
_PHONE = (
    "Alex\u2019s iPhone",
    "&lt;&lt;HKDevice: 0x281f2c6e0&gt;, name:iPhone, manufacturer:Apple Inc., "
    "model:iPhone, hardware:iPhone14,5, software:17.1&gt;",
)
_WITHINGS = ("Withings", "")
_GLUCOSE = ("Dexcom G6", "")
_THERMO = ("Kinsa", "")

# Share of the records of each type; the blood-pressure share is split between its halves.
_SHARES: dict[str, float] = {
    f"{Q}HeartRate": 0.455,
    f"{Q}StepCount": 0.16,
    f"{Q}ActiveEnergyBurned": 0.10,
    f"{Q}OxygenSaturation": 0.04,
    f"{Q}RespiratoryRate": 0.04,
    f"{Q}HeartRateVariabilitySDNN": 0.03,
    f"{Q}RestingHeartRate": 0.01,
    f"{Q}BodyTemperature": 0.02,
    f"{Q}BloodGlucose": 0.02,
    f"{Q}BodyMass": 0.02,
    "bp": 0.005,
    SLEEP: 0.10,
}
# One night: in bed, then asleep stages with an awake spell, as minutes from 23:00.
_NIGHT = (
    ("HKCategoryValueSleepAnalysisInBed", 0, 480),
    ("HKCategoryValueSleepAnalysisAsleepCore", 10, 100),
    ("HKCategoryValueSleepAnalysisAsleepDeep", 100, 160),
    ("HKCategoryValueSleepAnalysisAsleepCore", 160, 250),
    ("HKCategoryValueSleepAnalysisAsleepREM", 250, 300),
    ("HKCategoryValueSleepAnalysisAwake", 300, 315),
    ("HKCategoryValueSleepAnalysisAsleepCore", 315, 420),
    ("HKCategoryValueSleepAnalysisAsleepREM", 420, 470),
)
NIGHT_ASLEEP_HOURS = (90 + 60 + 90 + 50 + 105 + 50) / 60
"""Hours asleep in every generated night (stages other than in-bed and awake)."""


@dataclass
class ExportSummary:
    """What a generated export holds, for tests to compare an import against."""

    path: Path
    records: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    readings: dict[str, int] = field(default_factory=dict)
    correlations: int = 0

    @property
    def total_readings(self) -> int:
        """Readings an import should yield: records of supported types, BP pairs, nights."""
        return sum(self.readings.values())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _stamp(when: datetime, tz: timezone) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %z")


def history_days(records: int) -> int:
    """Days of history: about 400 records a day, as a watch and a phone write."""
    return records // 400 + 3


def _counts(records: int) -> dict[str, int]:
    counts = {kind: int(records * share) for kind, share in _SHARES.items()}
    counts["bp"] -= counts["bp"] % 2
    nights = min(counts[SLEEP] // len(_NIGHT), history_days(records) - 2)  # one night a day at most
    counts[SLEEP] = nights * len(_NIGHT)
    counts[f"{Q}HeartRate"] += records - sum(counts.values())
    return counts


class _Writer:
    """Formats records into the member, counting them into the summary."""

    def __init__(self, out: IO[bytes], summary: ExportSummary, tz: timezone) -> None:
        self.out, self.summary, self.tz = out, summary, tz

    def write(self, text: str) -> None:
        self.out.write(text.encode())

    def record(
        self,
        kind: str,
        source: tuple[str, str],
        start: datetime,
        end: datetime,
        *,
        value: str,
        unit: str | None,
        children: str = "",
        indent: str = " ",
        count: bool = True,
    ) -> str:
        device = f' device="{source[1]}"' if source[1] else ""
        unit_attr = f' unit="{_escape(unit)}"' if unit is not None else ""
        created = _stamp(end + timedelta(seconds=7), self.tz)
        text = (
            f'{indent}<Record type="{kind}" sourceName="{source[0]}" sourceVersion="10.1"'
            f'{device}{unit_attr} creationDate="{created}" startDate="{_stamp(start, self.tz)}"'
            f' endDate="{_stamp(end, self.tz)}" value="{value}"'
        )
        text += f">\n{children}{indent}</Record>\n" if children else "/>\n"
        if count:
            self.summary.records += 1
            self.summary.by_type[kind] = self.summary.by_type.get(kind, 0) + 1
        return text


def _spaced(count: int, start: datetime, span: timedelta, shift: int) -> Iterator[datetime]:
    step = span / max(count, 1)
    for i in range(count):
        yield start + i * step + timedelta(seconds=shift)


def _quantity_values(kind: str, rng: random.Random, i: int) -> tuple[str, str, tuple[str, str]]:
    """``(value, unit, source)`` of the ``i``-th record of a quantity type."""
    makers: dict[str, Callable[[], tuple[str, str, tuple[str, str]]]] = {
        "HeartRate": lambda: (str(rng.randint(52, 110)), "count/min", _WATCH),
        "StepCount": lambda: (str(rng.randint(5, 1800)), "count", _PHONE),
        "ActiveEnergyBurned": lambda: (f"{rng.uniform(0.1, 9):.3f}", "kcal", _WATCH),
        "OxygenSaturation": lambda: (f"{rng.randint(93, 100) / 100:.2f}", "%", _WATCH),
        "RespiratoryRate": lambda: (f"{rng.uniform(12, 19):.1f}", "count/min", _WATCH),
        "HeartRateVariabilitySDNN": lambda: (f"{rng.uniform(20, 90):.4f}", "ms", _WATCH),
        "RestingHeartRate": lambda: (str(rng.randint(50, 66)), "count/min", _WATCH),
        "BodyTemperature": lambda: (
            (f"{rng.uniform(36.3, 37.3):.1f}", "degC", _THERMO)
            if i % 2
            else (f"{rng.uniform(97.4, 99.1):.1f}", "degF", _THERMO)
        ),
        "BloodGlucose": lambda: (
            (f"{rng.uniform(4.4, 7.8):.1f}", GLUCOSE_MMOL, _GLUCOSE)
            if i % 2
            else (str(rng.randint(80, 140)), "mg/dL", _GLUCOSE)
        ),
        "BodyMass": lambda: (
            (f"{rng.uniform(150, 170):.1f}", "lb", _WITHINGS)
            if i % 2
            else (f"{rng.uniform(68, 77):.2f}", "kg", _WITHINGS)
        ),
    }
    return makers[kind.removeprefix(Q)]()


def _length(kind: str, i: int, gap: timedelta) -> timedelta:
    """How long the ``i``-th record of a quantity type lasts (``gap``: to the next one).

    The iPhone writes a step count per walking bout, a few minutes each, ending before the
    next begins; the other types are written as instants (start equals end).
    """
    if kind != f"{Q}StepCount":
        return timedelta(0)
    return min(timedelta(minutes=2 + i % 9), gap / 2)


def _children(kind: str, rng: random.Random, when: datetime) -> str:
    if kind == f"{Q}HeartRate":
        context = rng.choice("012")
        return f'  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="{context}"/>\n'
    if kind == f"{Q}HeartRateVariabilitySDNN":
        beats = "".join(
            f'   <InstantaneousBeatsPerMinute bpm="{rng.randint(55, 75)}" '
            f'time="{(when + timedelta(seconds=s)).strftime("%I:%M:%S.00 %p")}"/>\n'
            for s in range(0, 50, 5)
        )
        return (
            f"  <HeartRateVariabilityMetadataList>\n{beats}  </HeartRateVariabilityMetadataList>\n"
        )
    return ""


def _body(w: _Writer, *, records: int, end: datetime, rng: random.Random) -> None:
    counts = _counts(records)
    nights = counts[SLEEP] // len(_NIGHT)
    start = end - timedelta(days=history_days(records))
    span = end - start - timedelta(minutes=5)
    pairs = counts["bp"] // 2
    bp_times = list(_spaced(pairs, start, span, 11))
    bp_values = [(str(rng.randint(108, 138)), str(rng.randint(68, 88))) for _ in range(pairs)]
    kinds = sorted(
        [k for k in counts if k.startswith(Q)]
        + [SLEEP, f"{Q}BloodPressureSystolic", f"{Q}BloodPressureDiastolic"]
    )
    for shift, kind in enumerate(kinds):
        if kind == SLEEP:
            _sleep(w, nights=nights, end=end)
        elif kind.startswith(f"{Q}BloodPressure"):
            part = 0 if kind.endswith("Systolic") else 1
            for when, values in zip(bp_times, bp_values, strict=True):
                w.write(w.record(kind, _WITHINGS, when, when, value=values[part], unit="mmHg"))
        else:
            gap = span / max(counts[kind], 1)
            for i, when in enumerate(_spaced(counts[kind], start, span, shift)):
                value, unit, source = _quantity_values(kind, rng, i)
                children = _children(kind, rng, when)
                until = when + _length(kind, i, gap)
                w.write(
                    w.record(kind, source, when, until, value=value, unit=unit, children=children)
                )
    for i, (when, (systolic, diastolic)) in enumerate(zip(bp_times, bp_values, strict=True)):
        if i % 4:
            _bp_correlation(w, when, systolic=systolic, diastolic=diastolic)
    readings = {
        "heart_rate": counts[f"{Q}HeartRate"],
        "steps": counts[f"{Q}StepCount"],
        "spo2": counts[f"{Q}OxygenSaturation"],
        "respiratory_rate": counts[f"{Q}RespiratoryRate"],
        "hrv_sdnn": counts[f"{Q}HeartRateVariabilitySDNN"],
        "resting_heart_rate": counts[f"{Q}RestingHeartRate"],
        "body_temperature": counts[f"{Q}BodyTemperature"],
        "blood_glucose": counts[f"{Q}BloodGlucose"],
        "weight": counts[f"{Q}BodyMass"],
        "blood_pressure": pairs,
        "sleep_duration": nights,
    }
    w.summary.readings = {metric: n for metric, n in readings.items() if n}


def _sleep(w: _Writer, *, nights: int, end: datetime) -> None:
    local_end = end.astimezone(w.tz)
    last_evening = local_end.replace(hour=23, minute=0, second=0, microsecond=0) - timedelta(days=2)
    for night in range(nights, 0, -1):
        evening = last_evening - timedelta(days=night - 1)
        for value, begin, finish in _NIGHT:
            w.write(
                w.record(
                    SLEEP,
                    _WATCH,
                    evening + timedelta(minutes=begin),
                    evening + timedelta(minutes=finish),
                    value=value,
                    unit=None,
                )
            )


def _bp_correlation(w: _Writer, when: datetime, *, systolic: str, diastolic: str) -> None:
    halves = "".join(
        w.record(kind, _WITHINGS, when, when, value=v, unit="mmHg", indent="  ", count=False)
        for kind, v in (
            (f"{Q}BloodPressureDiastolic", diastolic),
            (f"{Q}BloodPressureSystolic", systolic),
        )
    )
    stamp = _stamp(when, w.tz)
    w.write(
        f' <Correlation type="{BP_CORRELATION}" sourceName="{_WITHINGS[0]}" sourceVersion="5.1"'
        f' creationDate="{stamp}" startDate="{stamp}" endDate="{stamp}">\n'
        '  <MetadataEntry key="HKWasUserEntered" value="0"/>\n'
        f"{halves} </Correlation>\n"
    )
    w.summary.correlations += 1


def _document(
    out: IO[bytes], summary: ExportSummary, *, records: int, end: datetime, seed: int, tz: timezone
) -> None:
    w = _Writer(out, summary, tz)
    w.write(HEADER)
    w.write('<HealthData locale="en_US">\n')
    w.write(f' <ExportDate value="{_stamp(end, tz)}"/>\n')
    w.write(
        ' <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-04-02"'
        ' HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"'
        ' HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet"'
        ' HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet"/>\n'
    )
    _body(w, records=records, end=end, rng=random.Random(seed))
    workout = _stamp(end - timedelta(days=1), tz)
    w.write(
        ' <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="31.5"'
        f' durationUnit="min" sourceName="{_WATCH[0]}" startDate="{workout}"'
        f' endDate="{workout}">\n'
        f'  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="{workout}"/>\n'
        " </Workout>\n"
    )
    for day in range(3):
        date = (end - timedelta(days=day)).date().isoformat()
        w.write(
            f' <ActivitySummary dateComponents="{date}" activeEnergyBurned="410"'
            ' activeEnergyBurnedGoal="500" activeEnergyBurnedUnit="Cal"/>\n'
        )
    w.write("</HealthData>\n")


def write_export(
    path: Path,
    *,
    records: int,
    end: datetime,
    seed: int = 1,
    utc_offset_hours: int = -5,
    bare_xml: bool = False,
) -> ExportSummary:
    """Write an export of ``records`` top-level records, the last ones just before ``end``.

    ``path`` becomes an ``export.zip`` holding ``apple_health_export/export.xml``, or with
    ``bare_xml`` the ``export.xml`` itself. Dates carry a fixed UTC offset (``-0500`` by
    default), as exports do.
    """
    tz = timezone(timedelta(hours=utc_offset_hours))
    summary = ExportSummary(path=path)
    if bare_xml:
        with path.open("wb") as out:
            _document(out, summary, records=records, end=end, seed=seed, tz=tz)
        return summary
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf,
        zf.open(MEMBER, "w", force_zip64=True) as out,
    ):
        _document(out, summary, records=records, end=end, seed=seed, tz=tz)
    return summary
