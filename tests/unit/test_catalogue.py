"""Metric catalogue: units, conversions, ranges, LOINC codes."""

import pytest

from pghd.catalogue import CATALOGUE, Metric, UnitError, channel_spec, convert, metric_for_loinc


def test_every_metric_has_a_spec_with_loinc_and_range() -> None:
    assert set(CATALOGUE) == set(Metric)
    for spec in CATALOGUE.values():
        assert spec.loinc
        for channel in spec.channels:
            low, high = channel.possible
            assert low < high
            assert channel.min_spread > 0


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        (Metric.BODY_TEMPERATURE, 98.6, "[degF]", 37.0),
        (Metric.BODY_TEMPERATURE, 37.2, "Cel", 37.2),
        (Metric.BODY_TEMPERATURE, 310.15, "K", 37.0),
        (Metric.BLOOD_GLUCOSE, 5.5, "mmol/L", 99.088),
        (Metric.WEIGHT, 150.0, "[lb_av]", 68.0388555),
        (Metric.SLEEP_DURATION, 450.0, "min", 7.5),
        (Metric.SPO2, 0.97, "1", 97.0),
        (Metric.HEART_RATE, 70.0, "bpm", 70.0),
    ],
)
def test_conversions_to_canonical_unit(
    metric: Metric, value: float, unit: str, expected: float
) -> None:
    assert convert(metric, value, unit) == pytest.approx(expected)


def test_unknown_unit_names_accepted_units() -> None:
    with pytest.raises(UnitError, match=r"'furlongs' is not accepted.*Cel.*\[degF\]"):
        convert(Metric.BODY_TEMPERATURE, 1.0, "furlongs")


def test_blood_pressure_has_systolic_and_diastolic_channels() -> None:
    spec = CATALOGUE[Metric.BLOOD_PRESSURE]
    assert spec.is_composite
    assert channel_spec(Metric.BLOOD_PRESSURE, "systolic").loinc == "8480-6"
    assert channel_spec(Metric.BLOOD_PRESSURE, "diastolic").loinc == "8462-4"
    with pytest.raises(KeyError):
        channel_spec(Metric.BLOOD_PRESSURE, "mean")


def test_loinc_codes_and_aliases_name_their_metric() -> None:
    assert metric_for_loinc("59408-5") is metric_for_loinc("2708-6") is Metric.SPO2
    assert metric_for_loinc("2339-0") is metric_for_loinc("15074-8") is Metric.BLOOD_GLUCOSE
    assert metric_for_loinc("85354-9") is Metric.BLOOD_PRESSURE
    assert metric_for_loinc("8480-6") is None  # a component, not a reading of its own
