"""Per-patient care plans: the overrides a care team sets for one patient's judging.

A care plan travels on the compacted ``pghd.care-plans.v1`` (key = patient id, a tombstone
clears it). The care-team API validates and produces it; the processors keep the latest
plan per patient in a table and pass it to the detectors with every reading of that
patient. Pure data and validation, no I/O.

What a plan can change:

- ``spo2_scale``: NEWS2 SpO2 scale 1 (default) or 2 (hypercapnic respiratory failure, e.g.
  COPD with a prescribed target of 88-92 %). Scale 2 is taken "on air": a wearable never
  knows whether the patient is on supplemental oxygen.
- ``limits``: per channel, the range (``low``/``high``, canonical units) this patient's care
  team accepts, e.g. a known resting tachycardia (``heart_rate.high = 120``) or tighter
  glucose targets (``blood_glucose.low = 80``). Inside it, a clinical-threshold *warning*
  (NEWS2 score 2, glucose, severe hypertension) is only shown (``info``); outside it a value
  is a warning even where the standard thresholds say nothing. A *critical* finding
  (NEWS2 score 3, level-2 hypoglycaemia, a hypertensive crisis) is never quieted by a plan.
- ``detectors``: per channel, the personal-baseline detectors' thresholds
  (``z_warning``, ``z_critical``) or some of them switched off (``deviation``, ``cusum``,
  ``overnight``).
- ``note``: free text for the care team (never used in judging).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pghd.catalogue import CATALOGUE, ChannelSpec
from pghd.contracts import SCHEMA_VERSION, PatientId, UtcDatetime, channel_key

__all__ = [
    "BASELINE_DETECTORS",
    "DETECTOR_CHANNELS",
    "LIMIT_CHANNELS",
    "CarePlan",
    "CarePlanSettings",
    "DetectorOverride",
    "Limits",
]

#: Every channel of the catalogue by its key (``blood_pressure.systolic``).
_CHANNELS: dict[str, ChannelSpec] = {
    channel_key(metric, channel.name): channel
    for metric, spec in CATALOGUE.items()
    for channel in spec.channels
}
#: Channels with clinical thresholds, and so with care-plan limits: the NEWS2 vitals,
#: diastolic pressure (severe hypertension) and blood glucose.
LIMIT_CHANNELS: frozenset[str] = frozenset(
    {key for key, spec in _CHANNELS.items() if spec.news2}
    | {"blood_pressure.diastolic", "blood_glucose"}
)
#: Channels judged against a personal baseline, whose detectors a plan can tune.
DETECTOR_CHANNELS: frozenset[str] = frozenset(
    key for key, spec in _CHANNELS.items() if spec.direction is not None
)
#: Personal-baseline detectors a plan may switch off for a channel.
BASELINE_DETECTORS = ("deviation", "cusum", "overnight")

BaselineDetector = Literal["deviation", "cusum", "overnight"]


def _known(channel: str, allowed: frozenset[str], what: str) -> str:
    if channel not in allowed:
        raise ValueError(f"{channel!r} has no {what}; use one of: {', '.join(sorted(allowed))}")
    return channel


class Limits(BaseModel):
    """The range of one channel this patient's care team accepts (canonical units)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float | None = Field(default=None, description="values below it are a warning")
    high: float | None = Field(default=None, description="values above it are a warning")

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.low is None and self.high is None:
            raise ValueError("give low, high or both")
        for name, value in (("low", self.low), ("high", self.high)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the limits (a missing side is open)."""
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


class DetectorOverride(BaseModel):
    """Personal-baseline detector thresholds of one channel, or detectors switched off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    z_warning: Annotated[float, Field(gt=0, le=50)] | None = None
    z_critical: Annotated[float, Field(gt=0, le=50)] | None = None
    off: tuple[BaselineDetector, ...] = Field(
        default=(), description="detectors not reported on this channel"
    )

    @model_validator(mode="after")
    def _ordered(self) -> DetectorOverride:
        if (
            self.z_warning is not None
            and self.z_critical is not None
            and self.z_warning > self.z_critical
        ):
            raise ValueError(
                f"z_warning ({self.z_warning:g}) must not exceed z_critical ({self.z_critical:g})"
            )
        if len(set(self.off)) != len(self.off):
            raise ValueError("off lists a detector twice")
        if self.z_warning is None and self.z_critical is None and not self.off:
            raise ValueError("give z_warning, z_critical or off")
        return self

    def thresholds(self, *, z_warning: float, z_critical: float) -> tuple[float, float]:
        """The ``(z_warning, z_critical)`` to use given the service-wide ones: the plan's
        where set; a critical threshold below the plan's warning one is raised to it."""
        warning = self.z_warning if self.z_warning is not None else z_warning
        critical = self.z_critical if self.z_critical is not None else z_critical
        return warning, max(warning, critical)


class CarePlanSettings(BaseModel):
    """What a care team sets in a plan: the body of ``PUT /v1/patients/{id}/care-plan``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spo2_scale: Literal[1, 2] = Field(
        default=1, description="NEWS2 SpO2 scale: 2 for hypercapnic respiratory failure"
    )
    limits: dict[str, Limits] = Field(
        default_factory=dict, description="channel key -> accepted range (canonical units)"
    )
    detectors: dict[str, DetectorOverride] = Field(
        default_factory=dict, description="channel key -> personal-baseline detector overrides"
    )
    note: Annotated[str, Field(max_length=2000)] = ""

    @field_validator("limits")
    @classmethod
    def _limit_channels(cls, value: dict[str, Limits]) -> dict[str, Limits]:
        for channel, limits in value.items():
            _known(channel, LIMIT_CHANNELS, "clinical thresholds")
            low, high = _CHANNELS[channel].possible
            for name, bound in (("low", limits.low), ("high", limits.high)):
                if bound is not None and not low <= bound <= high:
                    raise ValueError(
                        f"{channel}.{name} = {bound:g} is outside the possible range"
                        f" {low:g}..{high:g}"
                    )
        return value

    @field_validator("detectors")
    @classmethod
    def _detector_channels(cls, value: dict[str, DetectorOverride]) -> dict[str, DetectorOverride]:
        for channel, override in value.items():
            _known(channel, DETECTOR_CHANNELS, "personal baseline")
            if "overnight" in override.off and channel != "resting_heart_rate":
                raise ValueError(f"{channel}: overnight only judges resting_heart_rate")
        return value

    def limits_for(self, channel: str) -> Limits | None:
        """The accepted range of ``channel``, if the plan sets one."""
        return self.limits.get(channel)

    def detector_override(self, channel: str) -> DetectorOverride | None:
        """The detector overrides of ``channel``, if the plan sets any."""
        return self.detectors.get(channel)

    def is_off(self, channel: str, detector: str) -> bool:
        """Whether the plan switches ``detector`` off on ``channel``."""
        override = self.detectors.get(channel)
        return override is not None and detector in override.off


class CarePlan(CarePlanSettings):
    """One patient's care plan as it travels on ``pghd.care-plans.v1`` (key = patient id)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    patient_id: PatientId
    updated_at: UtcDatetime
    updated_by: Annotated[str, Field(min_length=1, max_length=128)]

    @classmethod
    def of(
        cls, settings: CarePlanSettings, *, patient_id: str, updated_at: datetime, updated_by: str
    ) -> CarePlan:
        """The plan of ``patient_id`` with ``settings``, stamped with who set it and when."""
        return cls.model_validate(
            {
                **settings.model_dump(),
                "patient_id": patient_id,
                "updated_at": updated_at,
                "updated_by": updated_by,
            }
        )

    def settings(self) -> CarePlanSettings:
        """The editable part (what a ``PUT`` takes)."""
        return CarePlanSettings.model_validate(
            self.model_dump(include=set(CarePlanSettings.model_fields))
        )
