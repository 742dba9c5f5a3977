"""Judge readings against their baselines and detectors: the middle of the judging pass.

Pure functions, no Kafka or InfluxDB. :func:`judge_reading` is the "channel baseline →
detectors" stage of :func:`processors.judging.judge` (which the agent in
:mod:`processors.app` runs: context first, episodes after); it takes the reading with its
context already settled. :func:`judge_batch` judges readings one after another with these
stages alone (no context inference, no episodes): every finding of every reading, which is
what the detectors' own tests look at.

Each channel keeps one state per context bucket (``sleep`` / ``awake``, see
:mod:`processors.baseline`) under the key ``patient_id|channel|bucket``; it holds the
baseline and the detectors' memory. :mod:`processors.detectors.pipeline` runs every
detector on a channel value and decides whether the baseline learns it (not when the
value is, or is part of, an anomaly).

For each channel of a reading all findings are merged into at most one
:class:`~pghd.contracts.Anomaly`: the most severe finding names the ``detector`` (a tie
goes to ``deviation``, then ``overnight``, ``cusum``, ``news2``, ``glycaemia``,
``hypertension``, ``data_gap``), the others are listed in ``contributing``, and the
explanation joins their clauses into one sentence. The ``anomaly_id`` is a hash of
patient, channel and event id, so re-judging a reading after a crash yields the same id
and downstream can drop the repeat.

Per patient, judging takes the patient's care plan (:class:`~pghd.care_plans.CarePlan`, or
none) and the latest NEWS2 vitals (:class:`~processors.detectors.news2_aggregate.
News2State`): after each reading of a NEWS2 vital the partial aggregate is computed
(:mod:`processors.partial_news2`), written as a ``news2`` point and, at a trigger level,
raised as one more anomaly (channel ``news2``, detector ``news2_aggregate``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pghd.care_plans import CarePlan
from pghd.catalogue import CATALOGUE, ChannelSpec
from pghd.contracts import Anomaly, BaselineSnapshot, Measurement, channel_key
from processors.baseline import BaselineState, bucket_of
from processors.dedup import first_occurrences
from processors.detectors import (
    Finding,
    cusum,
    deviation,
    gaps,
    glycaemia,
    hypertension,
    news2,
    overnight,
    sentence,
)
from processors.detectors.news2 import AT_REST
from processors.detectors.news2_aggregate import News2State
from processors.detectors.pipeline import JudgeParams, judge_channel
from processors.partial_news2 import judge_news2
from processors.points import InfluxPoint, anomaly_id, anomaly_point, vital_point

__all__ = [
    "BatchResult",
    "InfluxPoint",
    "JudgeParams",
    "anomaly_id",
    "anomaly_point",
    "judge_batch",
    "judge_reading",
    "spec_of",
    "state_key",
    "state_keys",
]

logger = logging.getLogger(__name__)

_TIE_ORDER = {
    deviation.DETECTOR: 0,
    overnight.DETECTOR: 1,
    cusum.DETECTOR: 2,
    news2.DETECTOR: 3,
    glycaemia.DETECTOR: 4,
    hypertension.DETECTOR: 5,
    gaps.DETECTOR: 6,
    "resting_tachycardia": 0.5,
    "nightsignal": 1.5,
}
_SPECS: dict[str, ChannelSpec] = {
    channel_key(metric, channel.name): channel
    for metric, spec in CATALOGUE.items()
    for channel in spec.channels
}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What judging readings produced; ``states`` holds only the updated baselines and
    ``news2`` only the updated NEWS2 states (by patient id)."""

    states: dict[str, BaselineState]
    vitals: list[InfluxPoint]
    baselines: list[InfluxPoint]
    anomalies: list[Anomaly]
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    news2: dict[str, News2State] = field(default_factory=dict)
    scores: list[InfluxPoint] = field(default_factory=list)

    def points(self) -> list[InfluxPoint]:
        """Every point to write: vitals, baselines, NEWS2 scores and anomalies."""
        anomalies = (anomaly_point(a) for a in self.anomalies)
        return [*self.vitals, *self.baselines, *self.scores, *anomalies]


def source_of(reading: Measurement) -> str:
    """The source part of a reading's identity (vendor and device), for anomaly ids."""
    return f"{reading.source.vendor}|{reading.source.device_id or ''}"


def spec_of(channel: str) -> ChannelSpec | None:
    """The catalogue's spec of a channel key (``heart_rate``, ``blood_pressure.systolic``);
    None for a channel no metric has (the NEWS2 aggregate)."""
    return _SPECS.get(channel)


def state_key(patient_id: str, channel: str, bucket: str) -> str:
    """Table key of one state: ``patient_id|channel|bucket`` (ids cannot contain ``|``)."""
    return f"{patient_id}|{channel}|{bucket}"


def _key(reading: Measurement, channel: str) -> str | None:
    """The state key ``reading`` needs for ``channel``; ``None`` when it needs none."""
    if _SPECS[channel].direction is None:
        return None
    if _SPECS[channel].exercise_sensitive and reading.context not in AT_REST:
        return None
    bucket = bucket_of(reading.context, channel=channel, time=reading.effective_time)
    return state_key(reading.patient_id, channel, bucket)


def state_keys(reading: Measurement) -> list[str]:
    """Keys of every state judging ``reading`` reads (and may write)."""
    keys = (_key(reading, ch) for ch, _ in reading.channels())
    return [k for k in keys if k is not None]


def _snapshot(
    state: BaselineState | None, *, channel: str, params: JudgeParams
) -> BaselineSnapshot | None:
    """The baseline a value was judged against, as the anomaly carries it (once ready)."""
    if state is None or not state.is_ready(params.learning(_SPECS[channel])):
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
            patient_id=reading.patient_id,
            channel=channel,
            event_id=reading.event_id,
            source=source_of(reading),
        ),
        patient_id=reading.patient_id,
        metric=reading.metric,
        channel=channel,
        detector=primary.detector,
        severity=primary.severity,
        score=primary.score,
        value=value,
        unit=reading.unit,
        baseline=_snapshot(state, channel=channel, params=params),
        observed_at=reading.effective_time,
        detected_at=now,
        explanation=sentence(channel=channel, value=value, unit=reading.unit, findings=ordered),
        event_ids=[reading.event_id],
        contributing=[f.detector for f in ordered[1:]],
        context=reading.context,
    )


def _baseline_point(
    reading: Measurement, *, channel: str, state: BaselineState, params: JudgeParams
) -> InfluxPoint:
    low, high = state.band(params.z_warning)
    tags = {
        "patient_id": reading.patient_id,
        "channel": channel,
        "context": bucket_of(reading.context, channel=channel, time=reading.effective_time),
    }
    return InfluxPoint(
        measurement="baselines",
        tags=tags,
        fields={
            "mean": float(state.mean),
            "spread": float(state.spread),
            "low": float(low),
            "high": float(high),
            "n": int(state.n),
        },
        time=reading.effective_time,
    )


def judge_reading(
    states: Mapping[str, BaselineState],
    reading: Measurement,
    *,
    params: JudgeParams,
    now: datetime,
    plan: CarePlan | None = None,
    news2_state: News2State | None = None,
    extra: Mapping[str, Sequence[Finding]] | None = None,
) -> BatchResult:
    """Judge every channel of ``reading`` against ``states`` (keyed by :func:`state_key`),
    with the patient's care ``plan`` and latest NEWS2 vitals ``news2_state``; ``extra``
    adds findings made elsewhere (by channel) to those of the channel's detectors."""
    result = BatchResult(states={}, vitals=[], baselines=[], anomalies=[])
    for channel, value in reading.channels():
        result.vitals.append(vital_point(reading, channel=channel, value=value))
        key = _key(reading, channel)
        verdict = judge_channel(
            reading,
            channel=channel,
            value=value,
            spec=_SPECS[channel],
            state=None if key is None else states.get(key),
            params=params,
            plan=plan,
        )
        findings = [*verdict.findings, *(extra or {}).get(channel, ())]
        if plan is not None:
            findings = [f for f in findings if not plan.is_off(channel, f.detector)]
        if findings:
            anomaly = _combine(
                reading,
                channel=channel,
                value=value,
                findings=findings,
                state=verdict.judged_against,
                params=params,
                now=now,
            )
            result.anomalies.append(anomaly)
        if key is None or verdict.state is None:
            continue
        result.states[key] = verdict.state
        if verdict.learned and verdict.state.is_ready(params.learning(_SPECS[channel])):
            result.baselines.append(
                _baseline_point(reading, channel=channel, state=verdict.state, params=params)
            )
    window = timedelta(hours=params.news2_window_hours)
    latest, point, aggregate = judge_news2(news2_state, reading, plan=plan, window=window, now=now)
    if latest is not None:
        result.news2[reading.patient_id] = latest
    result.scores.extend([point] if point is not None else [])
    result.anomalies.extend([aggregate] if aggregate is not None else [])
    return result


def judge_batch(
    states: Mapping[str, BaselineState],
    readings: Sequence[Measurement],
    *,
    params: JudgeParams,
    now: datetime,
    plans: Mapping[str, CarePlan] | None = None,
    news2_states: Mapping[str, News2State] | None = None,
) -> BatchResult:
    """Judge ``readings`` in order; a repeated reading (same source, device and ``event_id``,
    :func:`~processors.dedup.reading_identity`) is judged once and listed in
    ``duplicates`` by its identity.

    ``plans`` and ``news2_states`` hold the care plans and latest NEWS2 vitals of the
    patients, by patient id (a patient without one has none). Each reading sees the
    baselines and NEWS2 vitals as the readings before it in the batch left them.
    ``states`` and ``news2_states`` are not modified. A reading whose judging raises is
    listed in ``failed`` as ``(event_id, reason)`` and contributes nothing, so one bad
    reading cannot stop the stream.
    """
    working: dict[str, BaselineState] = dict(states)
    latest: dict[str, News2State] = dict(news2_states or {})
    plans = plans or {}
    unique, repeats = first_occurrences(readings)
    batch = BatchResult(states={}, vitals=[], baselines=[], anomalies=[], duplicates=repeats)
    for reading in unique:
        try:
            one = judge_reading(
                working,
                reading,
                params=params,
                now=now,
                plan=plans.get(reading.patient_id),
                news2_state=latest.get(reading.patient_id),
            )
        except Exception as exc:
            logger.exception("judging event %s failed", reading.event_id)
            batch.failed.append((reading.event_id, f"judging failed: {exc!r}"))
            continue
        working.update(one.states)
        latest.update(one.news2)
        batch.states.update(one.states)
        batch.news2.update(one.news2)
        batch.scores.extend(one.scores)
        batch.vitals.extend(one.vitals)
        batch.baselines.extend(one.baselines)
        batch.anomalies.extend(one.anomalies)
    return batch
