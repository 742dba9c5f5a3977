"""Terra (tryterra.co) webhook events to intake candidates.

A Terra data event is ``{"type": "body" | "daily" | "activity" | "sleep" | ...,
"user": {"user_id": ..., "provider": ...}, "data": [<one object of that type>, ...],
"version": ...}``. ``user.user_id`` is the vendor account the registry links to a patient.
What is read (JSON paths inside each ``data`` object):

body      heart_data.heart_rate_data.detailed.hr_samples[] {timestamp, bpm}  -> heart_rate
          heart_data.heart_rate_data.detailed.hrv_samples_sdnn[] {hrv_sdnn}   -> hrv_sdnn
          heart_data.heart_rate_data.summary.resting_hr_bpm (metadata.start_time)
                                                                   -> resting_heart_rate
          oxygen_data.saturation_samples[] {timestamp, percentage}           -> spo2
          temperature_data.body_temperature_samples[] {temperature_celsius}  -> body_temperature
          blood_pressure_data.blood_pressure_samples[] {systolic_bp, diastolic_bp}
                                                                   -> blood_pressure
          glucose_data.blood_glucose_samples[] and detailed_blood_glucose_samples[]
              {blood_glucose_mg_per_dL}                                       -> blood_glucose
          measurements_data.measurements[] {measurement_time, weight_kg}      -> weight
daily     heart_rate_data (as body, at the day's start for the resting rate), oxygen_data,
          distance_data.steps (the day's total, from metadata.start_time to end_time,
          or to the time the push was received while the day is running)  -> steps
activity  heart_rate_data.detailed.hr_samples, oxygen_data.saturation_samples (activity)
sleep     heart_rate_data.detailed (sleep), respiration_data.breaths_data.samples[]
          {breaths_per_min} -> respiratory_rate, respiration_data.oxygen_saturation_data
          .samples[] -> spo2, sleep_durations_data.asleep.duration_asleep_state_seconds
          (the session, from metadata.start_time to end_time)      -> sleep_duration

Summaries of interval metrics are stamped at ``metadata.start_time`` and keep the end of
their span as ``effective_end``. Anything else with samples (skin and ambient temperature,
oxygen samples whose ``type`` is not blood (muscle SmO2), RMSSD, ketones, ECG, stress,
per-interval steps of a day whose total is taken...) is counted as ignored, and so are
events without health data (auth, deauth, healthcheck, nutrition...). The step samples
(``distance_data.detailed.step_samples[] {timestamp, steps, timer_duration_seconds}``) are
not read as intervals: a sample has one timestamp, and Terra's data models say neither what
span it covers (``timer_duration_seconds`` is not described) nor whether ``steps`` counts
since the previous sample or since the day began; taken beside the total they would also
count the day twice. Terra sample timestamps without a UTC offset are the user's local
time; triage refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingest.adapters.intervals import aware
from ingest.adapters.vendor_samples import Extraction, PayloadError, sample_candidate
from ingest.intake import pointer_of
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Context

__all__ = ["DATA_TYPES", "extract"]

VENDOR = "terra"
DATA_TYPES = ("body", "daily", "activity", "sleep")
_CONTEXT = {"activity": Context.ACTIVITY, "sleep": Context.SLEEP}


@dataclass(frozen=True, slots=True)
class _Series:
    """A list of samples inside a data object, each a reading."""

    path: tuple[str, ...]
    metric: Metric
    unit: str
    value: str  # the value field; "systolic_bp,diastolic_bp" for blood pressure
    time: str = "timestamp"
    optional: bool = False  # a sample without this value is another kind, not an error


@dataclass(frozen=True, slots=True)
class _Summary:
    """One value of a data object, stamped at its ``metadata.start_time``.

    The value of an interval metric covers the object's span and keeps
    ``metadata.end_time`` as its end; ``open_end``: the span may still be running (a
    ``daily`` object is sent through the day, its end_time always the coming midnight), so
    the end is taken only up to the time the push was received, and not at all when that
    time is not known.
    """

    path: tuple[str, ...]
    metric: Metric
    unit: str
    context: Context | None
    open_end: bool = False


_HR = ("heart_rate_data", "detailed")
_BODY_HR = ("heart_data", *_HR)
_OXYGEN = _Series(("oxygen_data", "saturation_samples"), Metric.SPO2, "%", "percentage")
_GLUCOSE = ("glucose_data",)
_SERIES: dict[str, tuple[_Series, ...]] = {
    "body": (
        _Series((*_BODY_HR, "hr_samples"), Metric.HEART_RATE, "/min", "bpm"),
        _Series((*_BODY_HR, "hrv_samples_sdnn"), Metric.HRV_SDNN, "ms", "hrv_sdnn"),
        _OXYGEN,
        _Series(
            ("temperature_data", "body_temperature_samples"),
            Metric.BODY_TEMPERATURE,
            "Cel",
            "temperature_celsius",
        ),
        _Series(
            ("blood_pressure_data", "blood_pressure_samples"),
            Metric.BLOOD_PRESSURE,
            "mm[Hg]",
            "systolic_bp,diastolic_bp",
        ),
        _Series(
            (*_GLUCOSE, "blood_glucose_samples"),
            Metric.BLOOD_GLUCOSE,
            "mg/dL",
            "blood_glucose_mg_per_dL",
        ),
        _Series(
            (*_GLUCOSE, "detailed_blood_glucose_samples"),
            Metric.BLOOD_GLUCOSE,
            "mg/dL",
            "blood_glucose_mg_per_dL",
        ),
        _Series(
            ("measurements_data", "measurements"),
            Metric.WEIGHT,
            "kg",
            "weight_kg",
            time="measurement_time",
            optional=True,
        ),
    ),
    "daily": (
        _Series((*_HR, "hr_samples"), Metric.HEART_RATE, "/min", "bpm"),
        _Series((*_HR, "hrv_samples_sdnn"), Metric.HRV_SDNN, "ms", "hrv_sdnn"),
        _OXYGEN,
    ),
    "activity": (_Series((*_HR, "hr_samples"), Metric.HEART_RATE, "/min", "bpm"), _OXYGEN),
    "sleep": (
        _Series((*_HR, "hr_samples"), Metric.HEART_RATE, "/min", "bpm"),
        _Series((*_HR, "hrv_samples_sdnn"), Metric.HRV_SDNN, "ms", "hrv_sdnn"),
        _Series(
            ("respiration_data", "breaths_data", "samples"),
            Metric.RESPIRATORY_RATE,
            "/min",
            "breaths_per_min",
        ),
        _Series(
            ("respiration_data", "oxygen_saturation_data", "samples"),
            Metric.SPO2,
            "%",
            "percentage",
        ),
    ),
}
_RESTING = ("summary", "resting_hr_bpm")
_SUMMARIES: dict[str, tuple[_Summary, ...]] = {
    "body": (
        _Summary(
            ("heart_data", "heart_rate_data", *_RESTING),
            Metric.RESTING_HEART_RATE,
            "/min",
            Context.REST,
        ),
    ),
    "daily": (
        _Summary(("heart_rate_data", *_RESTING), Metric.RESTING_HEART_RATE, "/min", Context.REST),
        _Summary(("distance_data", "steps"), Metric.STEPS, "{steps}", None, open_end=True),
    ),
    "activity": (),
    "sleep": (
        _Summary(
            ("sleep_durations_data", "asleep", "duration_asleep_state_seconds"),
            Metric.SLEEP_DURATION,
            "s",
            Context.SLEEP,
        ),
    ),
}
# Sample lists pghd does not store, counted as ignored.
_IGNORED: dict[str, tuple[tuple[str, ...], ...]] = {
    "body": (
        (*_BODY_HR, "hrv_samples_rmssd"),
        ("heart_data", "ecgsignal"),
        ("heart_data", "afib_classification_samples"),
        ("heart_data", "pulse_wave_velocity_samples"),
        ("temperature_data", "skin_temperature_samples"),
        ("temperature_data", "ambient_temperature_samples"),
        ("oxygen_data", "vo2_samples"),
        ("ketone_data", "ketone_samples"),
        ("hydration_data", "hydration_amount_samples"),
        ("hydration_data", "hydration_level_samples"),
    ),
    "daily": (
        (*_HR, "hrv_samples_rmssd"),
        ("oxygen_data", "vo2_samples"),
        ("distance_data", "detailed", "step_samples"),
        ("distance_data", "detailed", "distance_samples"),
        ("stress_data", "samples"),
        ("MET_data", "MET_samples"),
        ("calories_data", "calorie_samples"),
    ),
    "activity": (
        (*_HR, "hrv_samples_rmssd"),
        ("distance_data", "detailed", "step_samples"),
        ("calories_data", "calorie_samples"),
        ("power_data", "power_samples"),
        ("position_data", "position_samples"),
    ),
    "sleep": (
        (*_HR, "hrv_samples_rmssd"),
        ("sleep_durations_data", "hypnogram_samples"),
        ("respiration_data", "snoring_data", "samples"),
    ),
}


def extract(document: Any, *, received_at: datetime | None = None) -> Extraction:
    """The readings of one Terra event. Raises :class:`PayloadError` for a non-Terra shape.

    ``received_at`` (when the push arrived) bounds the end of a day still in progress; without
    it a day's step total keeps no end.
    """
    if not isinstance(document, dict) or not isinstance(document.get("type"), str):
        raise PayloadError('a Terra event is a JSON object with a string "type"')
    event = document["type"]
    user: dict[str, Any] = document["user"] if isinstance(document.get("user"), dict) else {}
    account = user.get("user_id")
    if event not in DATA_TYPES:
        extraction = Extraction(event=event, account=account if isinstance(account, str) else None)
        extraction.ignore(f"event:{event}")
        return extraction
    if not isinstance(account, str) or not account:
        raise PayloadError(f"a Terra {event} event needs user.user_id (the Terra user)")
    data = document.get("data")
    if not isinstance(data, list):
        raise PayloadError(f'a Terra {event} event needs a "data" array')
    provider = user.get("provider")
    app = provider if isinstance(provider, str) else None
    extraction = Extraction(event=event, account=account)
    for index, item in enumerate(data):
        if isinstance(item, dict):
            _read(
                item,
                event=event,
                pointer=f"/data/{index}",
                app=app,
                out=extraction,
                received_at=received_at,
            )
        else:
            extraction.ignore(f"{event}:not-an-object")
    return extraction


def _read(
    item: dict[str, Any],
    *,
    event: str,
    pointer: str,
    app: str | None,
    out: Extraction,
    received_at: datetime | None,
) -> None:
    assert out.account is not None
    common: dict[str, Any] = {"vendor": VENDOR, "account": out.account, "app": app}
    for series in _SERIES[event]:
        kind = f"{event}.{'.'.join(series.path)}"
        fields = series.value.split(",")
        for where, sample in _samples(item, series.path, pointer):
            if series.metric is Metric.SPO2 and not _blood_oxygen(sample.get("type")):
                out.ignore(f"{event}.{series.path[-1]}:type-{sample.get('type')}")
                continue
            if series.optional and sample.get(fields[0]) is None:
                out.ignore(f"{kind}:without-{fields[0]}")
                continue
            values = (
                {"systolic": sample.get(fields[0]), "diastolic": sample.get(fields[1])}
                if len(fields) == 2
                else {"value": sample.get(fields[0]), "value_field": fields[0]}
            )
            out.candidates.append(
                sample_candidate(
                    **common,
                    **values,
                    pointer=where,
                    kind=kind,
                    metric=series.metric,
                    unit=series.unit,
                    time=sample.get(series.time),
                    time_field=series.time,
                    context=_CONTEXT.get(event),
                )
            )
    for summary in _SUMMARIES[event]:
        value = _at(item, summary.path)
        if value is None:
            continue
        out.candidates.append(
            sample_candidate(
                **common,
                pointer=pointer_of(pointer, summary.path[:-1]),
                kind=f"{event}.{'.'.join(summary.path)}",
                metric=summary.metric,
                unit=summary.unit,
                time=_at(item, ("metadata", "start_time")),
                time_pointer=pointer_of(pointer, ["metadata", "start_time"]),
                value=value,
                value_field=summary.path[-1],
                context=summary.context,
                end=_end(item, summary, received_at),
            )
        )
    for path in _IGNORED[event]:
        out.ignore(f"{event}.{'.'.join(path)}", sum(1 for _ in _samples(item, path, pointer)))


def _end(item: dict[str, Any], summary: _Summary, received_at: datetime | None) -> Any:
    """The end of the span a summary value covers: ``metadata.end_time``, for an interval
    metric; a span still running ends when the push was received, or has no known end."""
    if not CATALOGUE[summary.metric].interval:
        return None
    end = _at(item, ("metadata", "end_time"))
    if not summary.open_end:
        return end
    when = aware(end)
    if received_at is None or when is None:
        return None
    return end if when <= received_at else received_at.astimezone(when.tzinfo).isoformat()


def _blood_oxygen(kind: Any) -> bool:
    """Whether an oxygen sample's ``type`` says SpO2 (blood). Terra also reports muscle
    oxygen (SmO2, typically 60-80 %) in the same list; stored as SpO2 it would raise false
    hypoxia alarms, so a type that is not plainly blood (or absent) is left out and counted."""
    return kind is None or (isinstance(kind, str) and kind.strip().lower() in ("blood", "spo2"))


def _at(item: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = item
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _samples(
    item: dict[str, Any], path: tuple[str, ...], pointer: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    node = _at(item, path)
    if isinstance(node, list):
        for index, sample in enumerate(node):
            if isinstance(sample, dict):
                yield pointer_of(pointer, [*path, index]), sample
