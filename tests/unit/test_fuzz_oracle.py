"""The fuzz run's oracle (``tests/integration/fuzz_readings.py``): its table covers the
catalogue's metrics and units, and it answers hand-checked cases as the README says.

The oracle's numbers (ranges, conversion factors) are the published ones, written down in
the test code; only the *names* are compared with :mod:`pghd.catalogue` here, so that a
metric or unit added there is not silently left out of the fuzz run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pghd.catalogue import CATALOGUE
from tests.integration.fuzz_readings import TABLE, expected_verdict

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_the_table_names_the_catalogues_metrics_units_and_channels() -> None:
    assert sorted(TABLE) == sorted(m.value for m in CATALOGUE)
    for metric, spec in CATALOGUE.items():
        row = TABLE[metric.value]
        assert row.unit == spec.unit, metric
        assert sorted(row.units) == sorted(spec.accepted_units), metric
        channels = {"value"} if not spec.is_composite else {c.name for c in spec.channels}
        assert set(row.ranges) == channels, metric


def _item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "patient_id": "p-1",
        "metric": "body_temperature",
        "value": 98.6,
        "unit": "[degF]",
        "effective_time": (NOW - timedelta(hours=1)).isoformat(),
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),  # 98.6 °F = 37 °C
        ({"value": 113.2}, False),  # 45.1 °C
        ({"value": 45, "unit": "Cel"}, True),  # the upper bound itself
        ({"value": 45.001, "unit": "Cel"}, False),
        ({"value": 318.15, "unit": "K"}, None),  # 45 °C, up to float rounding: not judged
        ({"unit": "kelvin"}, False),
        ({"unit": ""}, False),
        ({"metric": "heart_rate", "value": 300, "unit": "bpm"}, True),
        ({"metric": "heart_rate", "value": 19.9, "unit": "/min"}, False),
        ({"metric": "blood_glucose", "value": 55.6, "unit": "mmol/L"}, False),  # 1001.7 mg/dL
        ({"metric": "weight", "value": 1433, "unit": "lb"}, True),  # 650.0 kg
        ({"metric": "sleep_duration", "value": 1441, "unit": "min"}, False),
        ({"effective_time": (NOW - timedelta(days=89)).isoformat()}, True),
        ({"effective_time": (NOW - timedelta(days=91)).isoformat()}, False),  # raw retention
        ({"effective_time": "2000-01-01T00:59:59+01:00"}, False),  # 1999-12-31T23:59:59Z
        ({"effective_time": (NOW + timedelta(minutes=9)).isoformat()}, True),
        ({"effective_time": (NOW + timedelta(minutes=11)).isoformat()}, False),
        ({"effective_time": (NOW + timedelta(minutes=10)).isoformat()}, None),  # at the edge
        ({"effective_time": "9999-12-31T23:59:59-01:00"}, False),
        ({"effective_time": "0001-01-01T00:30:00+23:59"}, False),
        ({"effective_time": "2026-11-25T10:00:00"}, None),  # no offset: not RFC 3339
        ({"effective_time": "2026-02-30T10:00:00Z"}, False),
        ({"comment": "hi"}, False),  # unknown field
        ({"patient_id": "-p"}, False),
        ({"value": "98.6"}, None),  # a string number: not this oracle's business
        ({"systolic": 120}, False),
        ({"context": "running"}, False),
    ],
)
def test_hand_checked_cases(changes: dict[str, Any], expected: bool | None) -> None:
    assert expected_verdict(_item(**changes), now=NOW) is expected


def test_only_interval_metrics_take_an_end_after_their_start() -> None:
    start = NOW - timedelta(hours=9)
    steps = {
        "metric": "steps",
        "value": 900,
        "unit": "{steps}",
        "effective_time": start.isoformat(),
    }
    assert (
        expected_verdict(
            _item(**steps, effective_end=(start + timedelta(minutes=15)).isoformat()), now=NOW
        )
        is True
    )
    assert expected_verdict(_item(**steps, effective_end=start.isoformat()), now=NOW) is False
    assert expected_verdict(_item(effective_end=NOW.isoformat()), now=NOW) is False  # an instant
    day = (start + timedelta(hours=26, minutes=1)).isoformat()
    assert expected_verdict(_item(**steps, effective_end=day), now=NOW) is False
    ahead = (NOW + timedelta(minutes=11)).isoformat()
    assert expected_verdict(_item(**steps, effective_end=ahead), now=NOW) is False
    night = {"metric": "sleep_duration", "unit": "h", "effective_time": start.isoformat()}
    end = (start + timedelta(hours=8)).isoformat()
    assert expected_verdict(_item(**night, value=7.5, effective_end=end), now=NOW) is True
    assert expected_verdict(_item(**night, value=8.5, effective_end=end), now=NOW) is False


def test_blood_pressure_needs_both_values_systolic_above_diastolic() -> None:
    bp = {"metric": "blood_pressure", "unit": "mmHg", "value": None}
    assert expected_verdict(_item(**bp, systolic=120, diastolic=80), now=NOW) is True
    assert expected_verdict(_item(**bp, systolic=80, diastolic=80), now=NOW) is False
    assert expected_verdict(_item(**bp, systolic=120), now=NOW) is False
    kpa = {**bp, "unit": "kPa"}
    assert expected_verdict(_item(**kpa, systolic=16, diastolic=10.7), now=NOW) is True
    assert expected_verdict(_item(**kpa, systolic=41, diastolic=10), now=NOW) is False  # 307.5
    both = {**bp, "value": 120}
    assert expected_verdict(_item(**both, systolic=120, diastolic=80), now=NOW) is False
    assert expected_verdict([_item()], now=NOW) is False
