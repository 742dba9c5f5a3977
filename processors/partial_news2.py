"""The partial NEWS2 aggregate of a patient, as :mod:`processors.judge` runs it per reading.

Pure: the patient's :class:`~processors.detectors.news2_aggregate.News2State` and a reading
in, the new state, the ``news2`` point and (when a trigger level is reached for the first
time in an episode) the ``news2_aggregate`` anomaly out. The anomaly's ``metric`` is that of
the reading that completed the aggregate (the contract has no metric for a score), its
``channel`` is ``news2``, its ``value`` and ``score`` the aggregate, and its ``event_ids``
the readings the aggregate is made of; its id is derived from the reading's event id, so a
replay yields the same id.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pghd.care_plans import CarePlan
from pghd.catalogue import CATALOGUE
from pghd.contracts import Anomaly, Measurement, Severity
from processors.detectors import news2, news2_aggregate
from processors.detectors.news2_aggregate import Aggregate, News2State, Vital
from processors.points import InfluxPoint, anomaly_id, news2_point

__all__ = ["News2Outcome", "judge_news2", "news2_vitals"]

logger = logging.getLogger(__name__)

News2Outcome = tuple[News2State | None, InfluxPoint | None, Anomaly | None]


def news2_vitals(reading: Measurement, *, spo2_scale: int = 1) -> list[tuple[str, Vital]]:
    """The NEWS2 parameters ``reading`` gives, with their sub-scores (a high pulse or
    respiration rate not known to be at rest is not scored, so it gives none)."""
    found: list[tuple[str, Vital]] = []
    channels = CATALOGUE[reading.metric].channels
    for spec, (_, value) in zip(channels, reading.channels(), strict=True):
        name = spec.news2_parameter
        if name not in news2_aggregate.PARAMETERS:
            continue
        if news2.exempt(value, spec=spec, context=reading.context):
            continue
        score = news2.news2_score(value, spec=spec, context=reading.context, spo2_scale=spo2_scale)
        found.append((name, Vital(value, score, reading.effective_time, reading.event_id)))
    return found


def _anomaly(
    reading: Measurement, found: Aggregate, *, severity: Severity, now: datetime
) -> Anomaly:
    return Anomaly(
        anomaly_id=anomaly_id(
            patient_id=reading.patient_id,
            channel=news2_aggregate.CHANNEL,
            event_id=reading.event_id,
            source=f"{reading.source.vendor}|{reading.source.device_id or ''}",
        ),
        patient_id=reading.patient_id,
        metric=reading.metric,
        channel=news2_aggregate.CHANNEL,
        detector=news2_aggregate.DETECTOR,
        severity=severity,
        score=float(found.score),
        value=float(found.score),
        unit=news2_aggregate.UNIT,
        observed_at=found.at,
        detected_at=now,
        explanation=news2_aggregate.explain(found),
        event_ids=list(found.event_ids),
    )


def judge_news2(
    state: News2State | None,
    reading: Measurement,
    *,
    plan: CarePlan | None,
    window: timedelta,
    now: datetime,
) -> News2Outcome:
    """Update the patient's latest vitals with ``reading`` and judge the partial aggregate.

    Returns ``(state, point, anomaly)``; all ``None`` when the reading gives no NEWS2
    vital newer than those held.
    """
    scale = 1 if plan is None else plan.spo2_scale
    vitals = news2_vitals(reading, spo2_scale=scale)
    if not vitals:
        return None, None, None
    new, found, severity = news2_aggregate.observe(state, vitals, window=window, spo2_scale=scale)
    if new is None or found is None:
        return None, None, None
    point = news2_point(reading.patient_id, found)
    if severity is None:
        return new, point, None
    return new, point, _anomaly(reading, found, severity=severity, now=now)
