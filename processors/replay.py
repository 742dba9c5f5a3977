"""Replay readings through the judging code the Faust agents run, and score it on a cohort.

Pure-ish: no files, no Kafka, no clock. Every reading goes the way a posted one goes:
:func:`pghd.readings.canonicalize` (units, possible range, interval, event id), then
:func:`processors.judging.judge` with the state the patient's earlier readings left, as the
``measurements`` agent does. Only the judging parameters come from here
(:func:`default_params`, equal to :class:`processors.settings.ProcessorSettings`' defaults),
since the settings need an InfluxDB token from the environment.

:func:`replay_rows` judges one patient's rows and returns one :class:`RowFlag` per row. The
rows are either of one metric (``timestamp``, ``value`` or ``systolic`` and ``diastolic``,
optional ``context``, ``event_id`` and ``end``, and the companion columns ``steps`` and
``sleep``, see :func:`rows_to_readings`) or a long CSV naming each row's metric
(``timestamp``, ``metric``, ``value``, optional ``unit``, ``end``, ``context``,
``event_id``, see :func:`long_rows_to_readings`). Turning rows into readings is pure and
separate from the judging loop. Replaying a posted stream in arrival order (a cohort) is
:func:`processors.evaluation.replay_arrivals`, which also scores a labelled cohort.
:func:`replay_rows` takes the patient's care plan (:class:`pghd.care_plans.CarePlan`,
``None`` for none), passed to the judging exactly as the worker passes the plan it holds.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from pydantic import ValidationError

from pghd.care_plans import CarePlan
from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Anomaly, Measurement, channel_key
from pghd.readings import ReadingIn, canonicalize
from processors.baseline import BaselineParams, BaselineState
from processors.detectors.news2_aggregate import News2State
from processors.judge import JudgeParams
from processors.judging import judge
from processors.patient_state import PatientState

__all__ = [
    "COMPANION_COLUMNS",
    "REPLAY_VENDOR",
    "ParsedRows",
    "RowFlag",
    "RowReading",
    "default_params",
    "long_rows_to_readings",
    "replay_rows",
    "rows_to_readings",
]

logger = logging.getLogger(__name__)

#: Vendor recorded on replayed readings (part of derived event ids).
REPLAY_VENDOR = "pghd-replay"

#: Columns of a one-metric CSV that become readings of another metric (the companions).
COMPANION_COLUMNS: dict[str, Metric] = {"steps": Metric.STEPS, "sleep": Metric.SLEEP_DURATION}

_BP_HALVES = {
    channel_key(Metric.BLOOD_PRESSURE, c.name): c.name
    for c in CATALOGUE[Metric.BLOOD_PRESSURE].channels
}


def default_params() -> JudgeParams:
    """The judging parameters of ``ProcessorSettings``' defaults (:class:`JudgeParams`')."""
    return JudgeParams(baseline=BaselineParams())


@dataclass(frozen=True, slots=True)
class RowFlag:
    """The verdict on one input row; ``error`` says why a row was not judged.

    ``score`` is the deciding finding's score on its detector's scale (|z| for ``deviation``,
    the band score for ``news2``), 0 when the row is not an anomaly. ``note`` says what was
    wrong with the row's companion cells (``steps``, ``sleep``): they were not replayed, the
    row itself was judged unless ``error`` says otherwise.
    """

    anomaly: bool = False
    score: float = 0.0
    detector: str = ""
    severity: str = ""
    channel: str = ""
    error: str = ""
    note: str = ""

    @property
    def problems(self) -> str:
        """``error`` and ``note`` in one text (the ``error`` column of ``pghd replay``)."""
        return "; ".join(text for text in (self.error, self.note) if text)


@dataclass(frozen=True, slots=True)
class RowReading:
    """One reading to replay and the input rows that report its verdict.

    ``rows`` is empty for a companion reading (steps or a sleep session derived from a
    one-metric CSV's companion columns): it is judged in the stream but its findings are
    reported nowhere. A blood-pressure pair of a long CSV has two rows.
    """

    reading: Measurement
    rows: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedRows:
    """CSV rows as the readings ingest would have taken, in the order to judge them.

    ``errors``: rows whose own reading was refused (by row index). ``notes``: rows whose
    companion cells could not be replayed (the row's own reading may still be judged).
    """

    readings: list[RowReading] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    notes: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is taken as UTC."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _cell_time(row: Mapping[str, str | None], name: str) -> datetime | None:
    """The time in cell ``name`` (``None`` when empty); ``ValueError`` saying what is wrong."""
    text = (row.get(name) or "").strip()
    if not text:
        return None
    try:
        return _parse_time(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 time") from None


def _row_time(row: Mapping[str, str | None]) -> datetime | None:
    """A row's timestamp, ``None`` when it is missing or not a time."""
    try:
        return _cell_time(row, "timestamp")
    except ValueError:
        return None


def _arrival(reading: Measurement) -> datetime:
    """When a device could have sent ``reading``: the end of its interval, else its time."""
    return reading.effective_end or reading.effective_time


def _canonical(raw: dict[str, Any]) -> Measurement:
    """``raw`` validated and canonicalized as ingest does, received when it could be sent;
    raises ``ValueError`` saying what is wrong with it."""
    try:
        reading = ReadingIn.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(problems) from None
    received = reading.effective_end or reading.effective_time
    return canonicalize(reading, vendor=REPLAY_VENDOR, received_at=received)


def _reading(
    row: Mapping[str, str | None], *, metric: Metric, unit: str, patient_id: str
) -> Measurement:
    """Canonicalize one CSV row; raises ``ValueError`` saying what is wrong with it."""
    raw: dict[str, Any] = {"patient_id": patient_id, "metric": metric.value, "unit": unit}
    names = ("systolic", "diastolic") if CATALOGUE[metric].is_composite else ("value",)
    for name in names:
        text = (row.get(name) or "").strip()
        if not text:
            raise ValueError(f"{name} is missing")
        raw[name] = text
    when = _cell_time(row, "timestamp")
    if when is None:
        raise ValueError("timestamp is missing")
    raw["effective_time"] = when
    end = _cell_time(row, "end")
    if end is not None:
        raw["effective_end"] = end
    for name in ("context", "event_id"):
        text = (row.get(name) or "").strip()
        if text:
            raw[name] = text
    return _canonical(raw)


def _feed_order(readings: list[RowReading]) -> list[RowReading]:
    """``readings`` in the order the processors would see them: by when each could have been
    sent (an interval at its end); at the same instant an interval that ends then comes
    before an instant reading, so a row sees the steps counted up to it; else input order."""
    return sorted(readings, key=lambda r: (_arrival(r.reading), r.reading.effective_end is None))


def _median_spacing(times: Sequence[datetime]) -> timedelta | None:
    """The median gap between consecutive ``times`` (sorted); ``None`` if there is none."""
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    gaps = [gap for gap in gaps if gap > 0]
    return timedelta(seconds=statistics.median(gaps)) if gaps else None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(start: datetime, end: datetime) -> str:
    return f"{_iso(start)} to {_iso(end)}"


def _steps_readings(
    rows: Sequence[Mapping[str, str | None]],
    times: Mapping[int, datetime],
    *,
    patient_id: str,
    notes: dict[int, list[str]],
) -> list[RowReading]:
    """A ``steps`` reading per non-empty ``steps`` cell, over the interval since the row
    before it in time (the first row: since its time minus the median spacing)."""
    distinct = sorted(set(times.values()))
    spacing = _median_spacing(distinct)
    previous = {later: earlier for earlier, later in pairwise(distinct)}
    out: list[RowReading] = []
    for index, end in times.items():
        text = (rows[index].get("steps") or "").strip()
        if not text:
            continue
        start = previous.get(end, None if spacing is None else end - spacing)
        if start is None:
            notes[index].append(
                "steps not replayed: the interval has no start (the first row, and the"
                " spacing of the rows is unknown)"
            )
            continue
        _add_interval(out, notes, index, Metric.STEPS, text, start, end, patient_id=patient_id)
    return out


def _sleep_readings(
    rows: Sequence[Mapping[str, str | None]],
    times: Mapping[int, datetime],
    *,
    patient_id: str,
    notes: dict[int, list[str]],
) -> list[RowReading]:
    """A ``sleep_duration`` reading per run of consecutive rows (in time) with ``sleep`` 1,
    from the first row of the run to the next row after it (after the last row: the
    median spacing after it). An empty cell counts as 0."""
    order = sorted(times, key=lambda i: (times[i], i))
    spacing = _median_spacing(sorted(set(times.values())))
    runs: list[tuple[int, datetime | None]] = []  # (first row of a run, its end)
    run: list[int] = []
    for index in order:
        text = (rows[index].get("sleep") or "").strip()
        if text not in ("", "0", "1"):
            notes[index].append(f"sleep must be 0 or 1, not {text!r} (taken as 0)")
        if text == "1":
            run.append(index)
        elif run:
            runs.append((run[0], times[index]))
            run = []
    if run:
        runs.append((run[0], None if spacing is None else times[run[-1]] + spacing))
    out: list[RowReading] = []
    for index, end in runs:
        start = times[index]
        if end is None:
            notes[index].append(
                "sleep not replayed: the session has no end (no row after it, and the"
                " spacing of the rows is unknown)"
            )
            continue
        hours = round((end - start).total_seconds() / 3600, 4)
        _add_interval(
            out, notes, index, Metric.SLEEP_DURATION, hours, start, end, patient_id=patient_id
        )
    return out


def _add_interval(
    out: list[RowReading],
    notes: dict[int, list[str]],
    index: int,
    metric: Metric,
    value: str | float,
    start: datetime,
    end: datetime,
    *,
    patient_id: str,
) -> None:
    """Append the companion reading of ``metric`` over ``[start, end)``, or note on row
    ``index`` why ingest would refuse it."""
    raw = {
        "patient_id": patient_id,
        "metric": metric.value,
        "unit": CATALOGUE[metric].unit,
        "value": value,
        "effective_time": start,
        "effective_end": end,
    }
    try:
        out.append(RowReading(_canonical(raw)))
    except ValueError as exc:  # ReadingRejected is one too
        what = "steps" if metric is Metric.STEPS else "sleep"
        notes[index].append(f"{what} not replayed ({_span(start, end)}): {exc}")


def rows_to_readings(
    rows: Sequence[Mapping[str, str | None]],
    *,
    metric: Metric,
    unit: str | None = None,
    patient_id: str = "replay",
) -> ParsedRows:
    """The readings one patient's rows of ``metric`` (values in ``unit``, canonical by
    default) stand for, in the order to judge them.

    Each row is one reading of ``metric`` (``rows`` = its index). Two optional companion
    columns add readings of other metrics, with no row of their own:

    * ``steps``: the step count in the interval ending at the row's timestamp, from the
      previous row's timestamp (the first row: its timestamp minus the median spacing of
      the rows). Each non-empty cell is a ``steps`` reading over that interval.
    * ``sleep``: 0/1 per row. Each run of consecutive 1-rows is one ``sleep_duration``
      reading from the run's first row to the first row after it (after the last row: its
      timestamp plus the median spacing), valued at that span in hours.

    A companion that ingest would refuse (e.g. an interval over
    :data:`pghd.catalogue.MAX_INTERVAL`) is left out and noted on its row.
    """
    companions = [name for name in COMPANION_COLUMNS if rows and name in rows[0]]
    clash = [name for name in companions if COMPANION_COLUMNS[name] is metric]
    if clash:
        raise ValueError(
            f"a {clash[0]} column is a companion of another metric; for {metric.value} give"
            " the values in the value column"
        )
    unit = unit or CATALOGUE[metric].unit
    parsed = ParsedRows()
    times: dict[int, datetime] = {}
    for index, row in enumerate(rows):
        try:
            parsed.readings.append(
                RowReading(_reading(row, metric=metric, unit=unit, patient_id=patient_id), (index,))
            )
        except ValueError as exc:  # ReadingRejected is one too
            parsed.errors[index] = str(exc)
        when = _row_time(row)
        if when is not None:
            times[index] = when
    if "steps" in companions:
        parsed.readings.extend(
            _steps_readings(rows, times, patient_id=patient_id, notes=parsed.notes)
        )
    if "sleep" in companions:
        parsed.readings.extend(
            _sleep_readings(rows, times, patient_id=patient_id, notes=parsed.notes)
        )
    parsed.readings[:] = _feed_order(parsed.readings)
    return parsed


def _pair_problem(
    systolic: Mapping[str, str | None], diastolic: Mapping[str, str | None], name: str
) -> str | None:
    a, b = ((row.get(name) or "").strip() for row in (systolic, diastolic))
    if a and b and a != b:
        return f"the systolic and diastolic rows differ in {name} ({a!r}, {b!r})"
    return None


def _pair(
    systolic: Mapping[str, str | None], diastolic: Mapping[str, str | None], *, patient_id: str
) -> Measurement:
    """One blood-pressure reading from its two rows; ``ValueError`` saying what is wrong."""
    spec = CATALOGUE[Metric.BLOOD_PRESSURE]
    units = {(row.get("unit") or "").strip() or spec.unit for row in (systolic, diastolic)}
    if len(units) > 1:
        raise ValueError(
            f"the systolic and diastolic rows differ in unit ({', '.join(sorted(units))})"
        )
    for name in ("context", "event_id", "end"):
        problem = _pair_problem(systolic, diastolic, name)
        if problem is not None:
            raise ValueError(problem)
    merged = {
        "timestamp": systolic.get("timestamp"),
        "systolic": systolic.get("value"),
        "diastolic": diastolic.get("value"),
        **{
            name: (systolic.get(name) or "").strip() or diastolic.get(name)
            for name in ("context", "event_id", "end")
        },
    }
    return _reading(merged, metric=Metric.BLOOD_PRESSURE, unit=units.pop(), patient_id=patient_id)


def long_rows_to_readings(
    rows: Sequence[Mapping[str, str | None]], *, patient_id: str = "replay"
) -> ParsedRows:
    """The readings a long CSV stands for (one row per reading: ``timestamp``, ``metric``,
    ``value``, optional ``unit`` (default: the metric's canonical one), ``end`` (an interval
    metric's ``effective_end``), ``context``, ``event_id``), in the order to judge them.

    Blood pressure takes two rows, ``blood_pressure.systolic`` and
    ``blood_pressure.diastolic`` at the same timestamp (the n-th of each at a time pair up);
    both rows report the pair's verdict, and a row without its partner gets an error.
    """
    if rows and any(name in rows[0] for name in COMPANION_COLUMNS):
        raise ValueError(
            "a long CSV takes steps and sleep as rows of their own (metric steps or"
            " sleep_duration, with an end), not as steps/sleep columns"
        )
    parsed = ParsedRows()
    halves: dict[datetime, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, row in enumerate(rows):
        name = (row.get("metric") or "").strip()
        if name in _BP_HALVES:
            try:
                when = _cell_time(row, "timestamp")
            except ValueError as exc:
                parsed.errors[index] = str(exc)
                continue
            if when is None:
                parsed.errors[index] = "timestamp is missing"
                continue
            halves[when][_BP_HALVES[name]].append(index)
            continue
        try:
            metric = Metric(name)
        except ValueError:
            singles = (m.value for m in Metric if not CATALOGUE[m].is_composite)
            known = ", ".join([*singles, *_BP_HALVES])
            parsed.errors[index] = (
                f"metric is missing; use one of: {known}"
                if not name
                else f"metric {name!r} is not in the catalogue; use one of: {known}"
            )
            continue
        if CATALOGUE[metric].is_composite:
            parsed.errors[index] = (
                f"{name} takes two rows: {' and '.join(_BP_HALVES)} at the same timestamp"
            )
            continue
        unit = (row.get("unit") or "").strip() or CATALOGUE[metric].unit
        try:
            reading = _reading(row, metric=metric, unit=unit, patient_id=patient_id)
        except ValueError as exc:  # ReadingRejected is one too
            parsed.errors[index] = str(exc)
            continue
        parsed.readings.append(RowReading(reading, (index,)))
    for when, sides in halves.items():
        systolic, diastolic = sides["systolic"], sides["diastolic"]
        for s, d in zip(systolic, diastolic, strict=False):
            try:
                reading = _pair(rows[s], rows[d], patient_id=patient_id)
            except ValueError as exc:  # ReadingRejected is one too
                parsed.errors[s] = parsed.errors[d] = str(exc)
                continue
            parsed.readings.append(RowReading(reading, (s, d)))
        paired = min(len(systolic), len(diastolic))
        for side, other in (("systolic", "diastolic"), ("diastolic", "systolic")):
            for index in sides[side][paired:]:
                parsed.errors[index] = (
                    f"blood_pressure.{side} at {_iso(when)} has no blood_pressure.{other}"
                    " row at the same timestamp to pair with"
                )
    parsed.readings.sort(key=lambda r: min(r.rows))  # input order before the feed order
    parsed.readings[:] = _feed_order(parsed.readings)
    return parsed


def _flag(anomalies: Sequence[Anomaly]) -> RowFlag:
    """One row's flag from its channels' anomalies: the most severe (first channel on a tie)."""
    if not anomalies:
        return RowFlag()
    top = max(anomalies, key=lambda a: a.severity.rank)
    return RowFlag(True, top.score, top.detector, top.severity.value, top.channel)


def replay_rows(
    rows: Sequence[Mapping[str, str | None]],
    *,
    metric: Metric | None,
    unit: str | None = None,
    patient_id: str = "replay",
    params: JudgeParams | None = None,
    plan: CarePlan | None = None,
) -> list[RowFlag]:
    """Judge one patient's rows: of ``metric`` (values in ``unit``, canonical by default,
    with optional ``steps``/``sleep`` companion columns, :func:`rows_to_readings`) or, with
    ``metric=None``, a long CSV whose rows name their metric (:func:`long_rows_to_readings`;
    ``unit`` must then be ``None``: each row gives its own).

    Readings are judged in the order the processors would see them (by time, an interval at
    its end; ties in input order), each against the state the earlier ones left (baselines,
    steps, sleep sessions, episodes), one :func:`~processors.judging.judge` call per reading
    as if each arrived on its own; a row is flagged when any detector finds it departing
    (inside an episode too, where the processors publish nothing new); the flags come back
    in input order. Companion readings are judged in the same stream, their findings are
    not reported. A row that ingest would reject, or that repeats an earlier row's event,
    gets an ``error`` and is not judged; a companion cell that could not be replayed gets a
    ``note``. Raises ``ValueError`` on columns that do not fit together.
    """
    if metric is None:
        if unit is not None:
            raise ValueError("a long CSV gives each row's unit in its unit column")
        parsed = long_rows_to_readings(rows, patient_id=patient_id)
    else:
        parsed = rows_to_readings(rows, metric=metric, unit=unit, patient_id=patient_id)
    params = params or default_params()
    flags = [RowFlag()] * len(rows)
    errors = dict(parsed.errors)
    states: dict[str, BaselineState] = {}
    news2_states: dict[str, News2State] = {}
    patients: dict[str, PatientState] = {}
    plans = {} if plan is None else {patient_id: plan}
    first_rows: dict[str, tuple[int, ...]] = {}
    for item in parsed.readings:
        reading = item.reading
        if reading.event_id in first_rows:
            first = first_rows[reading.event_id]
            for index in item.rows:
                errors[index] = (
                    f"repeats data row {first[0] + 1}"
                    if first
                    else f"repeats event {reading.event_id} of a companion reading"
                )
            continue
        first_rows[reading.event_id] = item.rows
        now = _arrival(reading)
        result = judge(
            states,
            [reading],
            params=params,
            now=now,
            plans=plans,
            news2_states=news2_states,
            patients=patients,
        )
        states.update(result.states)
        news2_states.update(result.news2)
        patients.update(result.patients)
        for index in item.rows:
            flags[index] = _flag(result.raw)
    for index, error in errors.items():
        flags[index] = RowFlag(error=error)
    for index, notes in parsed.notes.items():
        flags[index] = replace(flags[index], note="; ".join(notes))
    return flags
