"""Care plans: validation with clear messages, wire round trip, the CLI's option merging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import typer
from pydantic import ValidationError

from deploy.local.topics import DEFAULT_SPEC
from pghd import wire
from pghd.care_plans import CarePlan, CarePlanSettings, DetectorOverride, Limits
from pghd.commands.care_plan import apply_options, describe_plan
from pghd.topics import CARE_PLANS, MEASUREMENTS, load_spec


def errors(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        CarePlanSettings.model_validate(body)
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"spo2_scale": 3}, "spo2_scale: Input should be 1 or 2"),
        (
            {"limits": {"steps": {"high": 1}}},
            "limits: Value error, 'steps' has no clinical thresholds; use one of: blood_glucose,",
        ),
        (
            {"limits": {"heart_rate": {"low": 120, "high": 100}}},
            "limits.heart_rate: Value error, low (120) must be below high (100)",
        ),
        ({"limits": {"heart_rate": {}}}, "limits.heart_rate: Value error, give low, high or both"),
        (
            {"limits": {"heart_rate": {"high": 400}}},
            "limits: Value error, heart_rate.high = 400 is outside the possible range 20..300",
        ),
        (
            {"detectors": {"spo2": {"z_warning": 7, "z_critical": 5}}},
            "detectors.spo2: Value error, z_warning (7) must not exceed z_critical (5)",
        ),
        (
            {"detectors": {"spo2": {"off": ["news2"]}}},
            "detectors.spo2.off.0: Input should be 'deviation', 'cusum' or 'overnight'",
        ),
        (
            {"detectors": {"heart_rate": {"off": ["overnight"]}}},
            "detectors: Value error, heart_rate: overnight only judges resting_heart_rate",
        ),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_invalid_plans_say_what_is_wrong(body: dict[str, Any], message: str) -> None:
    assert any(m.startswith(message) for m in errors(body)), errors(body)


def test_a_plan_round_trips_on_the_wire_and_answers_questions() -> None:
    plan = CarePlan.of(
        CarePlanSettings(
            spo2_scale=2,
            limits={"heart_rate": Limits(high=120), "blood_glucose": Limits(low=80, high=180)},
            detectors={"spo2": DetectorOverride(z_warning=5, off=("cusum",))},
            note="COPD",
        ),
        patient_id="p-1",
        updated_at=datetime(2026, 11, 25, 9, tzinfo=UTC),
        updated_by="nurse",
    )
    assert plan.schema_version == 1
    assert wire.decode(CarePlan, wire.encode(plan)) == plan
    assert plan.limits["heart_rate"].contains(120) and not plan.limits["heart_rate"].contains(121)
    assert plan.is_off("spo2", "cusum") and not plan.is_off("spo2", "deviation")
    override = plan.detector_override("spo2")
    assert override is not None
    assert override.thresholds(z_warning=4, z_critical=6) == (5, 6)
    assert DetectorOverride(z_warning=8).thresholds(z_warning=4, z_critical=6) == (8, 8)
    assert plan.settings().note == "COPD"


def test_care_plans_topic_is_compacted_and_copartitioned_with_measurements() -> None:
    spec = {t.name: t for t in load_spec(DEFAULT_SPEC)}
    assert spec[CARE_PLANS].config["cleanup.policy"] == "compact"
    assert spec[CARE_PLANS].partitions == spec[MEASUREMENTS].partitions


def test_cli_options_change_only_what_they_name() -> None:
    current = {
        "spo2_scale": 2,
        "limits": {"heart_rate": {"low": 45.0}},
        "detectors": {"spo2": {"off": ["cusum"]}},
        "note": "COPD",
    }
    body = apply_options(
        current,
        hr_high=120,
        glucose_low=80,
        limits=["blood_pressure.systolic=:170"],
        z=["heart_rate=5:8"],
        off=["spo2=deviation"],
    )
    assert body == {
        "spo2_scale": 2,
        "limits": {
            "heart_rate": {"low": 45.0, "high": 120},
            "blood_glucose": {"low": 80},
            "blood_pressure.systolic": {"low": None, "high": 170.0},
        },
        "detectors": {
            "spo2": {"off": ["cusum", "deviation"]},
            "heart_rate": {"z_warning": 5.0, "z_critical": 8.0},
        },
        "note": "COPD",
    }
    CarePlanSettings.model_validate(body)  # what the API will accept
    assert "heart_rate" not in apply_options(body, limits=["heart_rate="])["limits"]
    with pytest.raises(typer.BadParameter, match="CHANNEL=LOW:HIGH"):
        apply_options({}, limits=["heart_rate=120"])


def test_describe_plan() -> None:
    lines = describe_plan(
        {
            "patient_id": "p-1",
            "spo2_scale": 2,
            "limits": {"heart_rate": {"high": 120}},
            "detectors": {"spo2": {"z_warning": 5, "off": ["cusum"]}},
            "note": "COPD",
            "updated_by": "nurse",
            "updated_at": "2026-11-25T09:00:00Z",
        }
    )
    assert lines == [
        "patient p-1: NEWS2 SpO2 scale 2",
        "  limits heart_rate: ..120",
        "  detectors spo2: z_warning 5; off: cusum",
        "  note: COPD",
        "  set by nurse at 2026-11-25T09:00:00Z",
    ]
