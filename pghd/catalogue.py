"""Metric catalogue: canonical units, conversions, LOINC codes, possible ranges, clinical bands.

Everything here is pure data and pure functions. A *metric* is what a device reports
(``blood_pressure``); a *channel* is one numeric series of it (``blood_pressure.systolic``).
Scalar metrics have a single channel named like the metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

__all__ = [
    "CATALOGUE",
    "MAX_INTERVAL",
    "NEWS2_SPO2_SCALE2",
    "Band",
    "ChannelSpec",
    "Metric",
    "MetricSpec",
    "UnitError",
    "channel_spec",
    "convert",
    "metric_for_loinc",
]


class Metric(StrEnum):
    """Metrics the platform accepts."""

    HEART_RATE = "heart_rate"
    RESTING_HEART_RATE = "resting_heart_rate"
    HRV_SDNN = "hrv_sdnn"
    SPO2 = "spo2"
    RESPIRATORY_RATE = "respiratory_rate"
    BODY_TEMPERATURE = "body_temperature"
    BLOOD_PRESSURE = "blood_pressure"
    BLOOD_GLUCOSE = "blood_glucose"
    STEPS = "steps"
    WEIGHT = "weight"
    SLEEP_DURATION = "sleep_duration"


class UnitError(ValueError):
    """A unit that the metric does not accept."""


@dataclass(frozen=True, slots=True)
class Band:
    """A clinical band: readings in ``[low, high]`` score ``score`` (NEWS2-style)."""

    low: float
    high: float
    score: int


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One numeric series of a metric and how to judge it.

    ``possible`` is the physiologically possible range: readings outside are refused.
    ``min_spread`` floors the baseline spread so a very steady patient does not turn
    measurement noise into alarms. ``direction`` says which departures matter
    (``both``, ``high`` or ``low``); ``None`` means the channel is never judged against a
    personal baseline (steps, weight).
    """

    name: str
    loinc: str
    possible: tuple[float, float]
    min_spread: float
    direction: str | None = "both"
    news2: tuple[Band, ...] = ()
    news2_parameter: str | None = None
    exercise_sensitive: bool = False
    """Rises with exercise: judged against the patient's baseline (and NEWS2's high bands)
    only at rest or asleep."""
    sampled: bool = False
    """A wearable samples it every few minutes: a lone spike is a motion artefact, so a
    critical finding needs the next reading to agree, and it gets no CUSUM (its samples mix
    rest, waking and sleep in ways the context cannot always tell apart, and CUSUM sums
    exactly those small residuals into false shifts; a slow rise is judged on the nightly
    resting heart rate instead)."""
    daily: bool = False
    """Read about once a day: its baseline warms up on fewer readings."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric: its canonical UCUM unit, accepted units and channels."""

    metric: Metric
    unit: str
    loinc: str
    channels: tuple[ChannelSpec, ...]
    conversions: Mapping[str, Callable[[float], float]] = field(default_factory=dict)
    description: str = ""
    loinc_aliases: tuple[str, ...] = ()
    """Other LOINC codes that report the same metric (e.g. SpO2 by blood gas)."""
    interval: bool = False
    """Whether a reading covers an interval (steps counted over it, a night's sleep): such
    readings may carry an ``effective_end`` (``effective_time`` is then the start)."""

    @property
    def accepted_units(self) -> tuple[str, ...]:
        return (self.unit, *self.conversions)

    @property
    def is_composite(self) -> bool:
        return len(self.channels) > 1


def _identity(x: float) -> float:
    return x


def _scale(factor: float) -> Callable[[float], float]:
    def convert(x: float) -> float:
        return x * factor

    return convert


def _fahrenheit_to_celsius(x: float) -> float:
    return (x - 32.0) * 5.0 / 9.0


def _kelvin_to_celsius(x: float) -> float:
    return x - 273.15


GLUCOSE_MG_DL_PER_MMOL_L = 18.016
POUND_KG = 0.45359237

# NEWS2 (Royal College of Physicians, 2017) bands for the vitals wearables give.
_NEWS2_PULSE = (
    Band(float("-inf"), 40, 3),
    Band(41, 50, 1),
    Band(51, 90, 0),
    Band(91, 110, 1),
    Band(111, 130, 2),
    Band(131, float("inf"), 3),
)
_NEWS2_SPO2_SCALE1 = (
    Band(float("-inf"), 91, 3),
    Band(92, 93, 2),
    Band(94, 95, 1),
    Band(96, float("inf"), 0),
)
#: NEWS2 SpO2 scale 2 (hypercapnic respiratory failure, e.g. COPD; set by a care plan), on
#: air: a wearable never knows about supplemental oxygen, so the on-oxygen bands (93-94: 1,
#: 95-96: 2, >=97: 3) are not used and 88 % or more scores 0.
NEWS2_SPO2_SCALE2 = (
    Band(float("-inf"), 83, 3),
    Band(84, 85, 2),
    Band(86, 87, 1),
    Band(88, float("inf"), 0),
)
_NEWS2_RESP = (
    Band(float("-inf"), 8, 3),
    Band(9, 11, 1),
    Band(12, 20, 0),
    Band(21, 24, 2),
    Band(25, float("inf"), 3),
)
_NEWS2_TEMP = (
    Band(float("-inf"), 35.0, 3),
    Band(35.05, 36.0, 1),
    Band(36.05, 38.0, 0),
    Band(38.05, 39.0, 1),
    Band(39.05, float("inf"), 2),
)
_NEWS2_SYSTOLIC = (
    Band(float("-inf"), 90, 3),
    Band(91, 100, 2),
    Band(101, 110, 1),
    Band(111, 219, 0),
    Band(220, float("inf"), 3),
)


def _scalar(
    metric: Metric,
    *,
    unit: str,
    loinc: str,
    possible: tuple[float, float],
    min_spread: float,
    direction: str | None = "both",
    news2: tuple[Band, ...] = (),
    news2_parameter: str | None = None,
    conversions: Mapping[str, Callable[[float], float]] | None = None,
    description: str = "",
    loinc_aliases: tuple[str, ...] = (),
    interval: bool = False,
    exercise_sensitive: bool = False,
    sampled: bool = False,
    daily: bool = False,
) -> MetricSpec:
    channel = ChannelSpec(
        name=metric.value,
        loinc=loinc,
        possible=possible,
        min_spread=min_spread,
        direction=direction,
        news2=news2,
        news2_parameter=news2_parameter,
        exercise_sensitive=exercise_sensitive,
        sampled=sampled,
        daily=daily,
    )
    return MetricSpec(
        metric=metric,
        unit=unit,
        loinc=loinc,
        channels=(channel,),
        conversions=dict(conversions or {}),
        description=description,
        loinc_aliases=loinc_aliases,
        interval=interval,
    )


#: The longest interval a reading may cover: a day of 25 hours (a daylight-saving change)
#: and an hour of slack, so a device's daily step total fits.
MAX_INTERVAL = timedelta(hours=26)


CATALOGUE: dict[Metric, MetricSpec] = {
    spec.metric: spec
    for spec in (
        _scalar(
            Metric.HEART_RATE,
            unit="/min",
            loinc="8867-4",
            possible=(20, 300),
            min_spread=4.0,
            # Judged upward only against the patient's baseline: a rate below it at rest is
            # sleep or calm (and sleep is often known only when its session arrives next
            # morning); a slow pulse is NEWS2's (<= 40 /min critical), in any context.
            direction="high",
            news2=_NEWS2_PULSE,
            news2_parameter="pulse",
            exercise_sensitive=True,
            sampled=True,
            conversions={"{beats}/min": _identity, "bpm": _identity, "beats/min": _identity},
            description="Heart rate",
        ),
        _scalar(
            Metric.RESTING_HEART_RATE,
            unit="/min",
            loinc="40443-4",
            possible=(20, 250),
            min_spread=2.0,
            daily=True,
            conversions={"{beats}/min": _identity, "bpm": _identity, "beats/min": _identity},
            description="Resting heart rate",
        ),
        _scalar(
            Metric.HRV_SDNN,
            unit="ms",
            loinc="80404-7",
            possible=(1, 500),
            min_spread=5.0,
            direction="low",
            daily=True,
            conversions={"s": _scale(1000.0)},
            description="Heart-rate variability (SDNN)",
        ),
        _scalar(
            Metric.SPO2,
            unit="%",
            loinc="59408-5",
            possible=(50, 100),
            min_spread=1.0,
            direction="low",
            news2=_NEWS2_SPO2_SCALE1,
            news2_parameter="spo2_scale1",
            conversions={"1": _scale(100.0)},
            description="Oxygen saturation (SpO2)",
            loinc_aliases=("2708-6",),
        ),
        _scalar(
            Metric.RESPIRATORY_RATE,
            unit="/min",
            loinc="9279-1",
            possible=(2, 80),
            min_spread=1.5,
            news2=_NEWS2_RESP,
            news2_parameter="respiration_rate",
            exercise_sensitive=True,
            conversions={"{breaths}/min": _identity, "breaths/min": _identity},
            description="Respiratory rate",
        ),
        _scalar(
            Metric.BODY_TEMPERATURE,
            unit="Cel",
            loinc="8310-5",
            possible=(25, 45),
            min_spread=0.2,
            news2=_NEWS2_TEMP,
            news2_parameter="temperature",
            conversions={
                "[degF]": _fahrenheit_to_celsius,
                "degF": _fahrenheit_to_celsius,
                "°F": _fahrenheit_to_celsius,
                "°C": _identity,
                "degC": _identity,
                "K": _kelvin_to_celsius,
            },
            description="Body temperature",
        ),
        MetricSpec(
            metric=Metric.BLOOD_PRESSURE,
            unit="mm[Hg]",
            loinc="85354-9",
            channels=(
                ChannelSpec(
                    name="systolic",
                    loinc="8480-6",
                    possible=(40, 300),
                    min_spread=5.0,
                    news2=_NEWS2_SYSTOLIC,
                    news2_parameter="systolic_bp",
                ),
                ChannelSpec(name="diastolic", loinc="8462-4", possible=(20, 200), min_spread=4.0),
            ),
            conversions={"mmHg": _identity, "kPa": _scale(7.50062)},
            description="Blood pressure (systolic and diastolic)",
        ),
        _scalar(
            Metric.BLOOD_GLUCOSE,
            unit="mg/dL",
            loinc="2339-0",
            possible=(10, 1000),
            min_spread=8.0,
            conversions={"mmol/L": _scale(GLUCOSE_MG_DL_PER_MMOL_L), "mg/dl": _identity},
            description="Blood glucose",
            loinc_aliases=("15074-8",),
        ),
        _scalar(
            Metric.STEPS,
            unit="{steps}",
            loinc="55423-8",
            possible=(0, 100_000),
            min_spread=1.0,
            direction=None,
            conversions={"steps": _identity, "{count}": _identity, "1": _identity},
            description="Step count over the reading's interval",
            interval=True,
        ),
        _scalar(
            Metric.WEIGHT,
            unit="kg",
            loinc="29463-7",
            possible=(0.5, 650),
            min_spread=0.5,
            direction=None,
            daily=True,
            conversions={"[lb_av]": _scale(POUND_KG), "lb": _scale(POUND_KG), "g": _scale(0.001)},
            description="Body weight",
        ),
        _scalar(
            Metric.SLEEP_DURATION,
            unit="h",
            loinc="93832-4",
            possible=(0, 24),
            min_spread=0.5,
            direction="low",
            daily=True,
            conversions={"min": _scale(1 / 60), "s": _scale(1 / 3600)},
            description="Sleep duration over the night",
            interval=True,
        ),
    )
}


def convert(metric: Metric, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the metric's canonical unit.

    Raises :class:`UnitError` naming the accepted units when ``unit`` is not one of them.
    """
    spec = CATALOGUE[metric]
    if unit == spec.unit:
        return value
    try:
        conversion = spec.conversions[unit]
    except KeyError:
        accepted = ", ".join(spec.accepted_units)
        raise UnitError(
            f"unit {unit!r} is not accepted for {metric.value}; use one of: {accepted}"
        ) from None
    return conversion(value)


_BY_LOINC: dict[str, Metric] = {
    code: spec.metric for spec in CATALOGUE.values() for code in (spec.loinc, *spec.loinc_aliases)
}


def metric_for_loinc(code: str) -> Metric | None:
    """The metric a LOINC code reports (its own code or an alias), or None."""
    return _BY_LOINC.get(code)


def channel_spec(metric: Metric, channel: str) -> ChannelSpec:
    """The spec of one channel of ``metric`` (``channel`` as in :class:`ChannelSpec.name`)."""
    for spec in CATALOGUE[metric].channels:
        if spec.name == channel:
            return spec
    raise KeyError(f"{metric.value} has no channel {channel!r}")
