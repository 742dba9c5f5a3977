"""Judge readings: baselines and detectors in, new baselines, points and anomalies out.

Pure functions, no Kafka or InfluxDB: the agent in :mod:`processors.app` loads the states,
calls :func:`judge_batch`, writes the points and sends the anomalies.

For each channel of a reading every detector runs, and all findings are merged into at
most one :class:`~pghd.contracts.Anomaly`: the most severe finding names the ``detector``
(a tie goes to ``deviation``, then ``news2``, then ``glycaemia``), the others are listed
in ``contributing``, and the explanation joins their clauses into one sentence. The
``anomaly_id`` is a hash of patient, channel and event id, so re-judging a reading after a
crash yields the same id and downstream can drop the repeat.

A reading the ``deviation`` detector flags does not update the baseline (an outlier must
not become the patient's normal). Clinical-band findings (NEWS2, glycaemia) do not stop the
update: they do not depend on the baseline, and a patient whose normal lies in a NEWS2
band still needs a baseline. Heart and respiratory rate taken during activity are neither
judged against nor added to the baseline, which describes the patient at rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pghd.catalogue import CATALOGUE, ChannelSpec
from pghd.contracts import Anomaly, BaselineSnapshot, Context, Measurement, channel_key
from processors.baseline import BaselineParams, BaselineState, update
from processors.detectors import Finding, deviation, glycaemia, hypertension, news2, sentence

__all__ = [
    "EXERCISE_SENSITIVE",
    "BatchResult",
    "InfluxPoint",
    "JudgeParams",
    "anomaly_id",
    "anomaly_point",
    "judge_batch",
    "judge_reading",
    "state_key",
    "state_keys",
]

logger = logging.getLogger(__name__)

#: Channels that rise with exercise: not judged against the resting baseline during activity.
EXERCISE_SENSITIVE = frozenset({"heart_rate", "respiratory_rate"})

_TIE_ORDER = {
    deviation.DETECTOR: 0,
    news2.DETECTOR: 1,
    glycaemia.DETECTOR: 2,
    hypertension.DETECTOR: 3,
}
_SPECS: dict[str, ChannelSpec] = {
    channel_key(metric, channel.name): channel
    for metric, spec in CATALOGUE.items()
    for channel in spec.channels
}


@dataclass(frozen=True, slots=True)
class JudgeParams:
    """Baseline learning and deviation thresholds (|z| for warning and critical)."""

    baseline: BaselineParams = field(default_factory=BaselineParams)
    z_warning: float = 4.0
    z_critical: float = 6.0

    def __post_init__(self) -> None:
        if not 0 < self.z_warning <= self.z_critical:
            raise ValueError("need 0 < z_warning <= z_critical")


@dataclass(frozen=True, slots=True)
class InfluxPoint:
    """One InfluxDB point, independent of the client library."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str]
    time: datetime


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What judging readings produced; ``states`` holds only the updated baselines."""

    states: dict[str, BaselineState]
    vitals: list[InfluxPoint]
    baselines: list[InfluxPoint]
    anomalies: list[Anomaly]
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def points(self) -> list[InfluxPoint]:
        """Every point to write: vitals, baselines and anomalies."""
        return [*self.vitals, *self.baselines, *(anomaly_point(a) for a in self.anomalies)]


def state_key(patient_id: str, channel: str) -> str:
    """Table key of one baseline: ``patient_id|channel`` (ids cannot contain ``|``)."""
    return f"{patient_id}|{channel}"


def state_keys(reading: Measurement) -> list[str]:
    """Keys of the baselines ``reading`` may need."""
    return [state_key(reading.patient_id, ch) for ch, _ in reading.channels()]


def anomaly_id(*, patient_id: str, channel: str, event_id: str) -> str:
    """Deterministic id of the (at most one) anomaly of a reading's channel."""
    raw = f"pghd.anomaly.v1|{patient_id}|{channel}|{event_id}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def _snapshot(state: BaselineState | None, params: JudgeParams) -> BaselineSnapshot | None:
    if state is None or not state.is_ready(params.baseline):
        return None
    low, high = state.band(params.z_warning)
    return BaselineSnapshot(mean=state.mean, spread=state.spread, low=low, high=high, n=state.n)


def _combine(
    reading: Measurement,
    *,
    channel: str,
    value: float,
    findings: list[Finding],
    state: BaselineState | None,
    params: JudgeParams,
    now: datetime,
) -> Anomaly:
    ordered = sorted(findings, key=lambda f: (-f.severity.rank, _TIE_ORDER.get(f.detector, 9)))
    primary = ordered[0]
    return Anomaly(
        anomaly_id=anomaly_id(
            patient_id=reading.patient_id, channel=channel, event_id=reading.event_id
        ),
        patient_id=reading.patient_id,
        metric=reading.metric,
        channel=channel,
        detector=primary.detector,
        severity=primary.severity,
        score=primary.score,
        value=value,
        unit=reading.unit,
        baseline=_snapshot(state, params),
        observed_at=reading.effective_time,
        detected_at=now,
        explanation=sentence(channel=channel, value=value, unit=reading.unit, findings=ordered),
        event_ids=[reading.event_id],
        contributing=[f.detector for f in ordered[1:]],
    )


def _baseline_point(
    reading: Measurement, *, channel: str, state: BaselineState, params: JudgeParams
) -> InfluxPoint:
    low, high = state.band(params.z_warning)
    return InfluxPoint(
        measurement="baselines",
        tags={"patient_id": reading.patient_id, "channel": channel},
        fields={
            "mean": float(state.mean),
            "spread": float(state.spread),
            "low": float(low),
            "high": float(high),
            "n": int(state.n),
        },
        time=reading.effective_time,
    )


def _vital_point(reading: Measurement, *, channel: str, value: float) -> InfluxPoint:
    tags = {
        "patient_id": reading.patient_id,
        "metric": reading.metric.value,
        "channel": channel,
        "source": reading.source.vendor,
        "unit": reading.unit,
    }
    fields: dict[str, float | int | str] = {"value": float(value), "event_id": reading.event_id}
    return InfluxPoint("vitals", tags, fields, reading.effective_time)


def _findings(
    reading: Measurement,
    *,
    channel: str,
    value: float,
    spec: ChannelSpec,
    state: BaselineState | None,
    params: JudgeParams,
    at_rest: bool,
) -> list[Finding]:
    unit = reading.unit
    personal = (
        deviation.deviation(
            value,
            state=state,
            spec=spec,
            unit=unit,
            params=params.baseline,
            z_warning=params.z_warning,
            z_critical=params.z_critical,
        )
        if at_rest
        else None
    )
    clinical = news2.news2(value, spec=spec, unit=unit, context=reading.context)
    sugar = glycaemia.glycaemia(value, metric=reading.metric, unit=unit)
    pressure = hypertension.hypertension(value, channel=channel, unit=unit)
    return [f for f in (personal, clinical, sugar, pressure) if f is not None]


def judge_reading(
    states: Mapping[str, BaselineState],
    reading: Measurement,
    *,
    params: JudgeParams,
    now: datetime,
) -> BatchResult:
    """Judge every channel of ``reading`` against ``states`` (keyed by :func:`state_key`)."""
    result = BatchResult(states={}, vitals=[], baselines=[], anomalies=[])
    for channel, value in reading.channels():
        spec = _SPECS[channel]
        key = state_key(reading.patient_id, channel)
        state = states.get(key)
        result.vitals.append(_vital_point(reading, channel=channel, value=value))
        at_rest = not (reading.context is Context.ACTIVITY and channel in EXERCISE_SENSITIVE)
        findings = _findings(
            reading,
            channel=channel,
            value=value,
            spec=spec,
            state=state,
            params=params,
            at_rest=at_rest,
        )
        if findings:
            anomaly = _combine(
                reading,
                channel=channel,
                value=value,
                findings=findings,
                state=state,
                params=params,
                now=now,
            )
            result.anomalies.append(anomaly)
        if spec.direction is None or not at_rest or any(f.uses_baseline for f in findings):
            continue  # never judged, exercising, or an outlier: the baseline stays as it was
        new_state = update(
            state,
            value,
            time=reading.effective_time,
            params=params.baseline,
            min_spread=spec.min_spread,
        )
        result.states[key] = new_state
        if new_state.is_ready(params.baseline):
            result.baselines.append(
                _baseline_point(reading, channel=channel, state=new_state, params=params)
            )
    return result


def judge_batch(
    states: Mapping[str, BaselineState],
    readings: Sequence[Measurement],
    *,
    params: JudgeParams,
    now: datetime,
) -> BatchResult:
    """Judge ``readings`` in order; a repeated ``event_id`` is judged once.

    Each reading sees the baselines as the readings before it in the batch left them.
    ``states`` is not modified. A reading whose judging raises is listed in ``failed``
    as ``(event_id, reason)`` and contributes nothing, so one bad reading cannot stop the
    stream.
    """
    working: dict[str, BaselineState] = dict(states)
    batch = BatchResult(states={}, vitals=[], baselines=[], anomalies=[])
    seen: set[str] = set()
    for reading in readings:
        if reading.event_id in seen:
            batch.duplicates.append(reading.event_id)
            continue
        seen.add(reading.event_id)
        try:
            one = judge_reading(working, reading, params=params, now=now)
        except Exception as exc:
            logger.exception("judging event %s failed", reading.event_id)
            batch.failed.append((reading.event_id, f"judging failed: {exc!r}"))
            continue
        working.update(one.states)
        batch.states.update(one.states)
        batch.vitals.extend(one.vitals)
        batch.baselines.extend(one.baselines)
        batch.anomalies.extend(one.anomalies)
    return batch


def anomaly_point(anomaly: Anomaly) -> InfluxPoint:
    """The ``anomalies`` point of ``anomaly``."""
    return InfluxPoint(
        measurement="anomalies",
        tags={
            "patient_id": anomaly.patient_id,
            "metric": anomaly.metric.value,
            "channel": anomaly.channel,
            "detector": anomaly.detector,
            "severity": anomaly.severity.value,
        },
        fields={
            "score": float(anomaly.score),
            "value": float(anomaly.value),
            "explanation": anomaly.explanation,
            "anomaly_id": anomaly.anomaly_id,
        },
        time=anomaly.observed_at,
    )
