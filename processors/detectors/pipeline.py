"""Run every detector on one channel value and work out the channel's next state.

The per-channel half of :mod:`processors.judge`: given a reading's value on one channel
and the state of the channel's context bucket (:func:`processors.baseline.bucket_of`),
it collects the findings of

- :mod:`.deviation` (robust z against the context baseline, with persistence),
- :mod:`.cusum` (sustained shift),
- :mod:`.overnight` (resting heart rate raised night after night),
- :mod:`.news2` (clinical bands; score 2 needs confirmation, see there),
- :mod:`.glycaemia` (thresholds and fast falls) and :mod:`.hypertension`,
- :mod:`.gaps` (a long silence before this reading: ``info`` only, and not reported for a
  time-of-day bin, which is silent whenever the patient sleeps in; the gap still resets
  the bin's detector memory),

and returns the state to store: the detector memory always moves on; the baseline itself
learns the value only when no detector says the reading is, or is part of, an anomaly
(beyond the warning threshold, a CUSUM signal, a raised night).
Heart and respiratory rate not known to be at rest or asleep (during activity, or in an
unknown context) are judged by clinical bands only (NEWS2 scores only their low bands then);
they neither use nor change a baseline.

The patient's care plan (:class:`pghd.care_plans.CarePlan`, or ``None``) is an argument:
its SpO2 scale goes to :mod:`.news2`, its limits to :mod:`.limits`, its detector overrides
set the deviation thresholds of the channel and drop the findings of detectors it switches
off (their memory still moves on, so switching one back on needs no warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from pghd.care_plans import CarePlan
from pghd.catalogue import ChannelSpec, Metric
from pghd.contracts import Context, Measurement
from processors.baseline import TIME_BINNED, BaselineParams, BaselineState, update
from processors.detectors import (
    Finding,
    cusum,
    deviation,
    gaps,
    glycaemia,
    hypertension,
    limits,
    news2,
    overnight,
)

__all__ = [
    "ChannelVerdict",
    "JudgeParams",
    "judge_channel",
]


@dataclass(frozen=True, slots=True)
class JudgeParams:
    """Baseline learning and every detector's thresholds (see each detector's module)."""

    baseline: BaselineParams = field(default_factory=BaselineParams)
    z_warning: float = 4.0
    z_critical: float = 6.0
    persist_needed: int = 2
    persist_window: int = 3
    cusum_k: float = 1.0
    cusum_h: float = 8.0
    overnight_z: float = 2.0
    overnight_min_delta: float = 5.0
    overnight_nights: int = 2
    news2_persist: int = 3
    gap_hours: float = 48.0
    gap_widen: float = 1.5
    daily_warmup: int = 7
    news2_window_hours: float = 1.0

    def learning(self, spec: ChannelSpec) -> BaselineParams:
        """The baseline parameters of a channel: channels read once a day
        (:attr:`ChannelSpec.daily`) warm up on ``daily_warmup`` readings (a week) rather than
        ``baseline.warmup``."""
        if spec.daily and self.daily_warmup < self.baseline.warmup:
            return replace(self.baseline, warmup=self.daily_warmup)
        return self.baseline

    def __post_init__(self) -> None:
        if not 0 < self.z_warning <= self.z_critical:
            raise ValueError("need 0 < z_warning <= z_critical")
        if not 1 <= self.persist_needed <= self.persist_window:
            raise ValueError("need 1 <= persist_needed <= persist_window")
        if self.cusum_k < 0 or self.cusum_h <= 0:
            raise ValueError("need cusum_k >= 0 and cusum_h > 0")
        if self.overnight_nights < 1 or self.news2_persist < 1:
            raise ValueError("overnight_nights and news2_persist must be at least 1")
        if self.daily_warmup < 2:
            raise ValueError("daily_warmup must be at least 2 readings")
        if self.gap_hours <= 0 or self.gap_widen < 1:
            raise ValueError("need gap_hours > 0 and gap_widen >= 1")
        if self.news2_window_hours <= 0:
            raise ValueError("news2_window_hours must be positive")


@dataclass(frozen=True, slots=True)
class ChannelVerdict:
    """Findings on one channel value, the state to store (``None``: unchanged), whether
    the baseline learnt the value, and the baseline the value was judged against."""

    findings: list[Finding]
    state: BaselineState | None
    learned: bool
    judged_against: BaselineState | None


def _clinical(
    reading: Measurement,
    *,
    channel: str,
    value: float,
    spec: ChannelSpec,
    confirmed: bool,
    plan: CarePlan | None,
    exercising: bool = False,
    repeated: bool = True,
) -> list[Finding]:
    unit = reading.unit
    scale = 1 if plan is None else plan.spo2_scale
    found = (
        news2.news2(
            value,
            spec=spec,
            unit=unit,
            context=reading.context,
            confirmed=confirmed,
            spo2_scale=scale,
            repeated=repeated,
        ),
        glycaemia.glycaemia(value, metric=reading.metric, unit=unit),
        hypertension.hypertension(value, channel=channel, unit=unit),
    )
    return limits.apply_limits(
        [f for f in found if f is not None],
        value,
        limits=None if plan is None else plan.limits_for(channel),
        unit=unit,
        exercising=exercising,
    )


def _switched_on(findings: list[Finding], *, channel: str, plan: CarePlan | None) -> list[Finding]:
    """``findings`` without those of the detectors the care plan switches off on ``channel``."""
    if plan is None:
        return findings
    return [f for f in findings if not plan.is_off(channel, f.detector)]


def judge_channel(
    reading: Measurement,
    *,
    channel: str,
    value: float,
    spec: ChannelSpec,
    state: BaselineState | None,
    params: JudgeParams,
    plan: CarePlan | None = None,
) -> ChannelVerdict:
    """Judge ``value`` (``reading``'s value on ``channel``) against its bucket's ``state``,
    with the patient's care ``plan`` (``None``: no plan)."""
    exercising = spec.exercise_sensitive and reading.context not in news2.AT_REST
    if spec.direction is None or exercising:
        found = _clinical(
            reading,
            channel=channel,
            value=value,
            spec=spec,
            confirmed=False,
            plan=plan,
            exercising=exercising,
        )
        return ChannelVerdict(found, None, False, None)
    time, unit = reading.effective_time, reading.unit
    learning = params.learning(spec)
    binned = channel in TIME_BINNED and reading.context is not Context.SLEEP
    findings: list[Finding] = []
    judged, widened = state, None
    if state is not None:
        gap = gaps.data_gap(
            last_time=state.last_time, time=time, after=timedelta(hours=params.gap_hours)
        )
        if gap is not None:
            if not binned:  # a time-of-day bin is silent whenever the patient sleeps in
                findings.append(gap)
            judged = replace(state, hits=(), cusum_hi=0.0, cusum_lo=0.0, streak=0, band_streak=0)
            widened = state.spread * params.gap_widen
        elif reading.metric is Metric.BLOOD_GLUCOSE:
            fall = glycaemia.glucose_fall(
                value, last_value=state.last_value, last_time=state.last_time, time=time, unit=unit
            )
            findings += [fall] if fall is not None else []
    base = judged or BaselineState()
    z_warning, z_critical = params.z_warning, params.z_critical
    override = None if plan is None else plan.detector_override(channel)
    if override is not None:
        z_warning, z_critical = override.thresholds(z_warning=z_warning, z_critical=z_critical)
    dev = deviation.assess(
        value,
        state=judged,
        spec=spec,
        unit=unit,
        params=learning,
        z_warning=z_warning,
        z_critical=z_critical,
        needed=params.persist_needed,
        window=params.persist_window,
        spread=widened,
        critical_needed=params.persist_needed if spec.sampled else 1,
    )
    hold = dev.exceeded
    memory: dict[str, Any] = {"hits": dev.hits, "last_value": value}
    if dev.finding is not None:
        findings.append(dev.finding)
    if dev.z is not None and not spec.sampled:
        shift = cusum.cusum(
            dev.z, state=base, spec=spec, unit=unit, k=params.cusum_k, h=params.cusum_h
        )
        memory.update(cusum_hi=shift.hi, cusum_lo=shift.lo)
        hold = hold or shift.signalling()
        findings += [shift.finding] if shift.finding is not None else []
    if channel in overnight.CHANNELS:
        night = overnight.overnight(
            value,
            state=judged,
            time=time,
            unit=unit,
            params=learning,
            z=params.overnight_z,
            min_delta=params.overnight_min_delta,
            nights=params.overnight_nights,
        )
        memory["streak"] = night.streak
        hold = hold or night.raised
        findings += [night.finding] if night.finding is not None else []
    scale = 1 if plan is None else plan.spo2_scale
    scored = news2.news2_score(value, spec=spec, context=reading.context, spo2_scale=scale) >= 2
    memory["band_streak"] = base.band_streak + 1 if scored else 0
    # A lone spike of a sampled channel confirms nothing: its deviation must have persisted.
    exceeded = dev.finding is not None if spec.sampled else dev.exceeded
    confirmed = exceeded or (dev.z is None and memory["band_streak"] >= params.news2_persist)
    repeated = not spec.sampled or memory["band_streak"] >= 2
    findings += _clinical(
        reading,
        channel=channel,
        value=value,
        spec=spec,
        confirmed=confirmed,
        plan=plan,
        repeated=repeated,
    )
    findings = _switched_on(findings, channel=channel, plan=plan)
    if hold:
        last = base.last_time
        memory["last_time"] = time if last is None or time > last else last
        return ChannelVerdict(findings, replace(base, **memory), False, judged)
    learnt = update(
        replace(base, **memory), value, time=time, params=learning, min_spread=spec.min_spread
    )
    return ChannelVerdict(findings, learnt, True, judged)
