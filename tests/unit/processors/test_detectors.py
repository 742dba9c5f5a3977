"""Deviation (personal baseline), NEWS2 bands and glycaemia thresholds."""

from __future__ import annotations

import pytest

from pghd.catalogue import Metric, channel_spec
from pghd.contracts import Context, Severity
from processors.baseline import BaselineParams, BaselineState
from processors.detectors import fmt_number
from processors.detectors.deviation import deviation
from processors.detectors.glycaemia import glycaemia
from processors.detectors.news2 import band_for, news2

PARAMS = BaselineParams(warmup=20)
READY = BaselineState(n=20, mean=70.0, spread=5.0)
HR = channel_spec(Metric.HEART_RATE, "heart_rate")
RHR = channel_spec(Metric.RESTING_HEART_RATE, "resting_heart_rate")
SPO2 = channel_spec(Metric.SPO2, "spo2")
RESP = channel_spec(Metric.RESPIRATORY_RATE, "respiratory_rate")
TEMP = channel_spec(Metric.BODY_TEMPERATURE, "body_temperature")
SYS = channel_spec(Metric.BLOOD_PRESSURE, "systolic")
STEPS = channel_spec(Metric.STEPS, "steps")


def dev(value: float, spec=HR, state: BaselineState | None = READY):
    return deviation(
        value, state=state, spec=spec, unit="/min", params=PARAMS, z_warning=4.0, z_critical=6.0
    )


def test_deviation_thresholds_and_wording() -> None:
    assert dev(89.0) is None
    warning = dev(90.0)
    assert warning is not None and warning.severity is Severity.WARNING
    assert warning.score == pytest.approx(4.0)
    critical = dev(182.0)
    assert critical is not None and critical.severity is Severity.CRITICAL
    assert critical.clause == "far above this patient's usual 70 /min (typical spread 5)"
    # heart rate is judged upward only (below the baseline is sleep or calm; a slow pulse
    # is NEWS2's), so the low-side wording is checked on a channel judged both ways
    assert dev(40.0) is None
    low = dev(40.0, spec=RHR)
    assert low is not None and low.severity is Severity.CRITICAL
    assert low.clause == "far below this patient's usual 70 /min (typical spread 5)"


def test_deviation_needs_a_ready_baseline() -> None:
    assert dev(182.0, state=None) is None
    assert dev(182.0, state=BaselineState(n=19, mean=70.0, spread=5.0)) is None


def test_deviation_honours_direction() -> None:
    state = BaselineState(n=30, mean=97.0, spread=1.0)
    assert dev(90.0, spec=SPO2, state=state) is not None  # low matters for SpO2
    assert dev(104.0, spec=SPO2, state=state) is None  # high does not
    assert dev(10_000.0, spec=STEPS, state=state) is None  # never judged


@pytest.mark.parametrize(
    ("spec", "value", "score"),
    [
        (HR, 130, 2),
        (HR, 131, 3),
        (HR, 130.4, 2),
        (HR, 130.5, 3),
        (HR, 40, 3),
        (HR, 41, 1),
        (HR, 70, 0),
        (SPO2, 91, 3),
        (SPO2, 92, 2),
        (SPO2, 96, 0),
        (TEMP, 39.1, 2),
        (TEMP, 39.0, 1),
        (TEMP, 35.0, 3),
        (TEMP, 35.1, 1),
        (SYS, 90, 3),
        (SYS, 91, 2),
        (SYS, 219, 0),
        (SYS, 220, 3),
        (RESP, 25, 3),
        (RESP, 24, 2),
        (RESP, 8, 3),
    ],
)
def test_news2_band_boundaries(spec, value: float, score: int) -> None:
    band = band_for(value, spec.news2)
    assert band is not None and band.score == score
    finding = news2(value, spec=spec, unit="x", context=Context.REST)
    expected = {3: Severity.CRITICAL, 2: Severity.WARNING}.get(score)
    assert (finding.severity if finding else None) is expected


def test_news2_wording() -> None:
    finding = news2(88.0, spec=SPO2, unit="%")
    assert finding is not None
    assert finding.clause == "in the NEWS2 score-3 band (≤91 %)"
    temp = news2(39.4, spec=TEMP, unit="Cel")
    assert temp is not None and temp.clause == "in the NEWS2 score-2 band (≥39.1 °C)"
    pulse = news2(120.0, spec=HR, unit="/min", context=Context.REST)
    assert pulse is not None and pulse.clause == "in the NEWS2 score-2 band (111\u2013130 /min)"


def test_high_pulse_and_respiration_bands_apply_only_at_rest_or_asleep() -> None:
    for context in (Context.ACTIVITY, None):  # exercise, or not known not to be
        assert news2(150.0, spec=HR, unit="/min", context=context) is None
        assert news2(28.0, spec=RESP, unit="/min", context=context) is None
    for context in (Context.REST, Context.SLEEP):
        assert news2(150.0, spec=HR, unit="/min", context=context) is not None
        assert news2(28.0, spec=RESP, unit="/min", context=context) is not None


def test_low_pulse_and_respiration_bands_apply_whatever_the_patient_does() -> None:
    for context in (Context.ACTIVITY, None, Context.REST):
        low_pulse = news2(38.0, spec=HR, unit="/min", context=context)
        assert low_pulse is not None and low_pulse.severity is Severity.CRITICAL
        slow_breathing = news2(7.0, spec=RESP, unit="/min", context=context)
        assert slow_breathing is not None and slow_breathing.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        (53.9, Severity.CRITICAL),
        (54.0, Severity.WARNING),
        (69.9, Severity.WARNING),
        (70.0, None),
        (250.0, None),
        (250.1, Severity.WARNING),
        (300.0, Severity.WARNING),
        (300.1, Severity.CRITICAL),
    ],
)
def test_glucose_thresholds(value: float, severity: Severity | None) -> None:
    finding = glycaemia(value, metric=Metric.BLOOD_GLUCOSE, unit="mg/dL")
    assert (finding.severity if finding else None) is severity


def test_glycaemia_only_judges_glucose() -> None:
    assert glycaemia(20.0, metric=Metric.HEART_RATE, unit="/min") is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(182.0, "182"), (71.25, "71.3"), (35.05, "35.1"), (-0.04, "0"), (0.2, "0.2")],
)
def test_number_formatting(value: float, text: str) -> None:
    assert fmt_number(value) == text


@pytest.mark.parametrize(
    ("channel", "value", "expected"),
    [
        ("blood_pressure.systolic", 179, None),
        ("blood_pressure.systolic", 180, "warning"),
        ("blood_pressure.systolic", 200, "critical"),
        ("blood_pressure.diastolic", 109, None),
        ("blood_pressure.diastolic", 110, "warning"),
        ("blood_pressure.diastolic", 125, "critical"),
        ("heart_rate", 250, None),
    ],
)
def test_hypertension_bands(channel: str, value: float, expected: str | None) -> None:
    from processors.detectors.hypertension import hypertension

    finding = hypertension(value, channel=channel, unit="mm[Hg]")
    assert (finding.severity.value if finding else None) == expected
    if finding:
        assert "mmHg" in finding.clause or "mm[Hg]" in finding.clause
