"""Replay readings through the judging code the Faust agents run, and score it on a cohort.

Pure-ish: no files, no Kafka, no clock. Every reading goes the way a posted one goes:
:func:`pghd.readings.canonicalize` (units, possible range, event id), then
:func:`processors.judge.judge_batch` with the baselines the patient's earlier readings left,
as the ``measurements`` agent does. Only the judging parameters come from here
(:func:`default_params`, equal to :class:`processors.settings.ProcessorSettings`' defaults),
since the settings need an InfluxDB token from the environment.

:func:`replay_rows` judges one patient's rows (``timestamp``, ``value`` or ``systolic`` and
``diastolic``, optional ``context`` and ``event_id``) and returns one :class:`RowFlag` per
row; :func:`judge_patient` judges one patient's posted readings. Both take the patient's
care plan (:class:`pghd.care_plans.CarePlan`, ``None`` for none), passed to the judging
exactly as the worker passes the plan it holds. Scoring a labelled cohort is
:mod:`processors.evaluation`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from pghd.care_plans import CarePlan
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Anomaly, Measurement
from pghd.readings import ReadingIn, canonicalize
from processors.baseline import BaselineParams, BaselineState
from processors.detectors.news2_aggregate import News2State
from processors.judge import JudgeParams, judge_batch

__all__ = ["REPLAY_VENDOR", "RowFlag", "default_params", "judge_patient", "replay_rows"]

logger = logging.getLogger(__name__)

#: Vendor recorded on replayed readings (part of derived event ids).
REPLAY_VENDOR = "pghd-replay"


def default_params() -> JudgeParams:
    """The judging parameters of ``ProcessorSettings``' defaults (:class:`JudgeParams`')."""
    return JudgeParams(baseline=BaselineParams())


@dataclass(frozen=True, slots=True)
class RowFlag:
    """The verdict on one input row; ``error`` says why a row was not judged.

    ``score`` is the deciding finding's score on its detector's scale (|z| for ``deviation``,
    the band score for ``news2``), 0 when the row is not an anomaly.
    """

    anomaly: bool = False
    score: float = 0.0
    detector: str = ""
    severity: str = ""
    channel: str = ""
    error: str = ""


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is taken as UTC."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _reading(row: Mapping[str, str], *, metric: Metric, unit: str, patient_id: str) -> Measurement:
    """Canonicalize one CSV row; raises ``ValueError`` saying what is wrong with it."""
    raw: dict[str, Any] = {"patient_id": patient_id, "metric": metric.value, "unit": unit}
    names = ("systolic", "diastolic") if CATALOGUE[metric].is_composite else ("value",)
    for name in names:
        text = (row.get(name) or "").strip()
        if not text:
            raise ValueError(f"{name} is missing")
        raw[name] = text
    timestamp = (row.get("timestamp") or "").strip()
    if not timestamp:
        raise ValueError("timestamp is missing")
    try:
        raw["effective_time"] = _parse_time(timestamp)
    except ValueError:
        raise ValueError(f"timestamp {timestamp!r} is not an ISO 8601 time") from None
    for name in ("context", "event_id"):
        if (row.get(name) or "").strip():
            raw[name] = row[name].strip()
    try:
        reading = ReadingIn.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(problems) from None
    return canonicalize(reading, vendor=REPLAY_VENDOR, received_at=reading.effective_time)


def _flag(anomalies: Sequence[Anomaly]) -> RowFlag:
    """One row's flag from its channels' anomalies: the most severe (first channel on a tie)."""
    if not anomalies:
        return RowFlag()
    top = max(anomalies, key=lambda a: a.severity.rank)
    return RowFlag(True, top.score, top.detector, top.severity.value, top.channel)


def replay_rows(
    rows: Sequence[Mapping[str, str]],
    *,
    metric: Metric,
    unit: str | None = None,
    patient_id: str = "replay",
    params: JudgeParams | None = None,
    plan: CarePlan | None = None,
) -> list[RowFlag]:
    """Judge one patient's rows of ``metric`` (values in ``unit``, canonical by default).

    Rows are judged in time order (ties in input order), each against the baselines the
    earlier rows left, one :func:`judge_batch` call per reading as if each arrived on its
    own; the flags come back in input order. A row that ingest would reject, or that repeats
    an earlier row's event, gets an ``error`` and is not judged.
    """
    params = params or default_params()
    unit = unit or CATALOGUE[metric].unit
    flags = [RowFlag()] * len(rows)
    readings: list[tuple[int, Measurement]] = []
    for index, row in enumerate(rows):
        try:
            readings.append((index, _reading(row, metric=metric, unit=unit, patient_id=patient_id)))
        except ValueError as exc:  # ReadingRejected is one too
            flags[index] = RowFlag(error=str(exc))
    readings.sort(key=lambda item: item[1].effective_time)
    states: dict[str, BaselineState] = {}
    news2_states: dict[str, News2State] = {}
    plans = {} if plan is None else {patient_id: plan}
    first_row: dict[str, int] = {}
    for index, reading in readings:
        if reading.event_id in first_row:
            flags[index] = RowFlag(error=f"repeats data row {first_row[reading.event_id] + 1}")
            continue
        first_row[reading.event_id] = index
        result = judge_batch(
            states,
            [reading],
            params=params,
            now=reading.effective_time,
            plans=plans,
            news2_states=news2_states,
        )
        states.update(result.states)
        news2_states.update(result.news2)
        flags[index] = _flag(result.anomalies)
    return flags


def judge_patient(
    readings: Iterable[Mapping[str, Any]],
    *,
    params: JudgeParams,
    now: datetime,
    plan: CarePlan | None = None,
) -> tuple[list[Anomaly], int, int]:
    """Canonicalize and judge one patient's posted readings (dicts, in time order), with
    the patient's care ``plan`` (``None``: no plan).

    Returns the anomalies, the readings judged and the readings ingest would have rejected.
    """
    measurements: list[Measurement] = []
    rejected = 0
    for raw in readings:
        try:
            reading = ReadingIn.model_validate(raw)
            received = reading.effective_time
            measurements.append(canonicalize(reading, vendor=REPLAY_VENDOR, received_at=received))
        except ValueError:  # pydantic's ValidationError and ReadingRejected
            rejected += 1
    plans = {} if plan is None else {plan.patient_id: plan}
    result = judge_batch({}, measurements, params=params, now=now, plans=plans)
    return result.anomalies, len(measurements) - len(result.failed), rejected
