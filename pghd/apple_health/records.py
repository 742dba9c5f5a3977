"""What of an Apple Health export becomes a reading, and how.

Readings are dicts in :class:`~pghd.readings.ReadingIn` shape:

- ``HKQuantityTypeIdentifier`` records of the supported types (:data:`QUANTITY_TYPES`), units
  mapped to the catalogue's UCUM units; oxygen saturation comes as a fraction with unit
  ``%`` and becomes percent; glucose in ``mmol<molar mass>/L`` becomes mg/dL with the molar
  mass the unit names. A unit the mapping does not know is passed on as is, so ingest's
  validation reports it. Heart rate's motion context (sedentary, active) becomes the
  reading's context (``rest``, ``activity``).
- blood pressure: one reading per systolic/diastolic pair, paired by the
  ``HKCorrelationTypeIdentifierBloodPressure`` correlation or, for halves outside any
  correlation, by equal start time and source (:mod:`pghd.apple_health.pressure`). The
  export lists every correlation's halves at top level too; both routes give the same
  event id and a pair is yielded once.
- step counts: ``StepCount`` records cover ``startDate`` to ``endDate``; the reading is
  stamped at the start and keeps the end as ``effective_end`` (when it is after the start).
- sleep: one ``sleep_duration`` reading per night and source, the hours asleep
  (:mod:`pghd.apple_health.sleep`), stamped at the start of the night's earliest asleep
  segment, with the end of its last asleep segment as ``effective_end``. Per night,
  because ``sleep_duration`` is "sleep over the night" in the catalogue and its baseline
  compares nights; Apple Watch writes a record per sleep stage, minutes each, which as
  separate readings would look like very short nights.

Every reading has a deterministic ``event_id`` (a hash of the patient, record type, source,
start, end, value and unit, as written in the export), so importing the same export twice
stores each reading once. Other record types and elements are counted in
:class:`ExportStats` and skipped; records with a bad date or value are counted as problems.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from xml.etree.ElementTree import Element

from pghd.apple_health.pressure import Half, Pairing
from pghd.apple_health.sleep import ASLEEP_PREFIX, Night, Nights
from pghd.catalogue import Metric
from pghd.contracts import interval_problem

__all__ = ["QUANTITY_TYPES", "ExportStats", "RecordMapper"]

Q = "HKQuantityTypeIdentifier"
SYSTOLIC = f"{Q}BloodPressureSystolic"
DIASTOLIC = f"{Q}BloodPressureDiastolic"
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
BP_CORRELATION = "HKCorrelationTypeIdentifierBloodPressure"
_COUNT_MIN = {"count/min": ("/min", 1.0)}

QUANTITY_TYPES: dict[str, tuple[Metric, dict[str, tuple[str, float]]]] = {
    f"{Q}HeartRate": (Metric.HEART_RATE, _COUNT_MIN),
    f"{Q}RestingHeartRate": (Metric.RESTING_HEART_RATE, _COUNT_MIN),
    f"{Q}HeartRateVariabilitySDNN": (Metric.HRV_SDNN, {"ms": ("ms", 1.0)}),
    f"{Q}OxygenSaturation": (Metric.SPO2, {"%": ("%", 100.0)}),
    f"{Q}RespiratoryRate": (Metric.RESPIRATORY_RATE, _COUNT_MIN),
    f"{Q}BodyTemperature": (
        Metric.BODY_TEMPERATURE,
        {"degC": ("Cel", 1.0), "degF": ("[degF]", 1.0)},
    ),
    f"{Q}BloodGlucose": (Metric.BLOOD_GLUCOSE, {"mg/dL": ("mg/dL", 1.0)}),
    f"{Q}StepCount": (Metric.STEPS, {"count": ("{steps}", 1.0)}),
    f"{Q}BodyMass": (Metric.WEIGHT, {"kg": ("kg", 1.0), "lb": ("[lb_av]", 1.0), "g": ("g", 1.0)}),
}
"""Supported quantity types: the metric, and Apple's units as (UCUM unit, factor)."""

_MOTION_CONTEXT = {"1": "rest", "2": "activity"}  # HKHeartRateMotionContext sedentary/active


@dataclass
class ExportStats:
    """What the parser met: records by type, readings by metric, skips and problems."""

    records: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    readings: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)

    @property
    def total_readings(self) -> int:
        return sum(self.readings.values())


def _event_id(*parts: str) -> str:
    return "ah-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _time(text: str | None) -> datetime | None:
    """An export date (``2026-01-02 08:15:00 -0500``); None unless valid with an offset."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _number(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _unit(mapping: dict[str, tuple[str, float]], unit: str, value: float) -> tuple[str, float]:
    if unit in mapping:
        ucum, factor = mapping[unit]
        return ucum, round(value * factor, 6) if factor != 1.0 else value
    if unit.startswith("mmol<") and unit.endswith(">/L"):  # glucose: mmol/L -> mg/dL
        molar_mass = _number(unit[5:-3])
        if molar_mass is not None:
            return "mg/dL", round(value * molar_mass / 10.0, 6)
    return unit, value


def _device(attrib: dict[str, str]) -> str | None:
    """The device name out of ``<<HKDevice: 0x..>, name:Apple Watch, ...>``."""
    return _device_name(attrib.get("device", ""))


@lru_cache(maxsize=256)
def _device_name(text: str) -> str | None:
    start = text.find("name:")
    if start < 0:
        return None
    end = text.find(",", start)
    return text[start + 5 : end if end >= 0 else None].strip()[:128] or None


class RecordMapper:
    """Turns top-level elements of ``export.xml`` into readings, keeping pairing and night state.

    :meth:`element` for each top-level element as it ends, :meth:`finish` at the end.
    """

    def __init__(self, patient_id: str, stats: ExportStats) -> None:
        self.patient_id = patient_id
        self.stats = stats
        self.pairing = Pairing()
        self.nights = Nights()

    def element(self, elem: Element) -> Iterator[dict[str, Any]]:
        tag = elem.tag
        if tag == "Record":
            self.stats.records += 1
            yield from self.record(elem)
        elif tag == "Correlation":
            self.stats.records += 1
            self.stats.by_type[elem.get("type", "")] += 1
            if elem.get("type") == BP_CORRELATION:
                yield from self.correlation(elem)
            else:
                self.stats.skipped[elem.get("type", "Correlation")] += 1
        elif tag not in ("ExportDate", "Me"):
            self.stats.skipped[tag] += 1

    def record(self, elem: Element) -> Iterator[dict[str, Any]]:
        attrib = elem.attrib
        kind = attrib.get("type", "")
        self.stats.by_type[kind] += 1
        if kind in QUANTITY_TYPES:
            reading = self.quantity(kind, elem)
            if reading is not None:
                yield reading
        elif kind in (SYSTOLIC, DIASTOLIC):
            yield from self.half(attrib)
        elif kind == SLEEP:
            yield from self.sleep(attrib)
        else:
            self.stats.skipped[kind] += 1

    def _problem(self, reason: str) -> None:
        self.stats.problems[reason] += 1

    def quantity(self, kind: str, elem: Element) -> dict[str, Any] | None:
        attrib = elem.attrib
        metric, mapping = QUANTITY_TYPES[kind]
        when, end = _time(attrib.get("startDate")), _time(attrib.get("endDate"))
        value = _number(attrib.get("value"))
        if when is None or end is None:
            self._problem("bad date")
            return None
        if value is None:
            self._problem("bad value")
            return None
        raw_unit = attrib.get("unit", "")
        unit, value = _unit(mapping, raw_unit, value)
        reading = self._reading(
            metric,
            when,
            source=attrib.get("sourceName", ""),
            device=_device(attrib),
            event_id=_event_id(
                self.patient_id,
                kind,
                attrib.get("sourceName", ""),
                attrib.get("startDate", ""),
                attrib.get("endDate", ""),
                attrib.get("value", ""),
                raw_unit,
            ),
            value=value,
            unit=unit,
        )
        if end > when and interval_problem(metric, when, end) is None:  # steps over a span
            reading["effective_end"] = end.isoformat()
        if metric is Metric.HEART_RATE:
            for child in elem:
                if child.get("key") == "HKMetadataKeyHeartRateMotionContext":
                    context = _MOTION_CONTEXT.get(child.get("value", ""))
                    if context is not None:
                        reading["context"] = context
        return reading

    def _reading(
        self, metric: Metric, when: datetime, *, source: str, device: str | None, **fields: Any
    ) -> dict[str, Any]:
        """A reading dict; ``fields`` are ``event_id``, the value(s) and the unit."""
        self.stats.readings[metric.value] += 1
        reading: dict[str, Any] = {
            "patient_id": self.patient_id,
            "metric": metric.value,
            **fields,
            "effective_time": when.isoformat(),
        }
        if source:
            reading["app"] = source[:128]
        if device is not None:
            reading["device_id"] = device
        return reading

    def half(self, attrib: dict[str, str]) -> Iterator[dict[str, Any]]:
        half = Half.of(attrib, device=_device(attrib))
        pair = self.pairing.add(half, systolic=attrib["type"] == SYSTOLIC)
        if pair is not None:
            yield from self.pair(*pair)

    def correlation(self, elem: Element) -> Iterator[dict[str, Any]]:
        parts = {child.get("type"): child.attrib for child in elem if child.tag == "Record"}
        if SYSTOLIC in parts and DIASTOLIC in parts:
            systolic, diastolic = parts[SYSTOLIC], parts[DIASTOLIC]
            yield from self.pair(
                Half.of(systolic, device=_device(systolic)),
                Half.of(diastolic, device=_device(diastolic)),
            )
        else:
            self._problem("blood pressure correlation without both halves")

    def pair(self, systolic: Half, diastolic: Half) -> Iterator[dict[str, Any]]:
        event_id = _event_id(
            self.patient_id,
            BP_CORRELATION,
            systolic.source,
            systolic.start,
            systolic.end,
            systolic.value,
            diastolic.value,
            systolic.unit,
        )
        if not self.pairing.first_time(event_id):
            return
        when = _time(systolic.start)
        high, low = _number(systolic.value), _number(diastolic.value)
        if when is None or _time(systolic.end) is None:
            self._problem("bad date")
            return
        if high is None or low is None:
            self._problem("bad value")
            return
        yield self._reading(
            Metric.BLOOD_PRESSURE,
            when,
            source=systolic.source,
            device=systolic.device,
            event_id=event_id,
            systolic=high,
            diastolic=low,
            unit="mm[Hg]" if systolic.unit == "mmHg" else systolic.unit,
        )

    def sleep(self, attrib: dict[str, str]) -> Iterator[dict[str, Any]]:
        if not attrib.get("value", "").startswith(ASLEEP_PREFIX):
            return
        start, end = _time(attrib.get("startDate")), _time(attrib.get("endDate"))
        if start is None or end is None or end < start:
            self._problem("bad date")
            return
        closed = self.nights.add(
            source=attrib.get("sourceName", ""),
            start=start,
            end=end,
            texts=(attrib.get("startDate", ""), attrib.get("endDate", "")),
            device=_device(attrib),
        )
        for night in closed:
            yield self.night(night)

    def night(self, night: Night) -> dict[str, Any]:
        onset, end = night.onset, night.last_end
        assert onset is not None and end is not None
        seconds = night.asleep_seconds()
        reading = self._reading(
            Metric.SLEEP_DURATION,
            onset,
            source=night.source,
            device=night.device,
            event_id=_event_id(
                self.patient_id,
                SLEEP,
                night.source,
                night.night_of,
                night.first,
                night.last,
                f"{seconds:.0f}",
            ),
            value=round(seconds / 3600.0, 4),
            unit="h",
        )
        if interval_problem(Metric.SLEEP_DURATION, onset, end) is None:  # not over 26 h
            reading["effective_end"] = end.isoformat()
        return reading

    def finish(self) -> Iterator[dict[str, Any]]:
        for night in self.nights.close_all():
            yield self.night(night)
        if unpaired := self.pairing.unpaired():
            self.stats.problems["blood pressure half without its pair"] += unpaired
