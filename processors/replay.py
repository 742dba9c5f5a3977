"""Replay readings through the judging code the Faust agents run, and score it on a cohort.

Pure-ish: no files, no Kafka, no clock. Every reading goes the way a posted one goes:
:func:`pghd.readings.canonicalize` (units, possible range, event id), then
:func:`processors.judge.judge_batch` with the baselines the patient's earlier readings left,
as the ``measurements`` agent does. Only the judging parameters come from here
(:func:`default_params`, equal to :class:`processors.settings.ProcessorSettings`' defaults),
since the settings need an InfluxDB token from the environment.

:func:`replay_rows` judges one patient's rows (``timestamp``, ``value`` or ``systolic`` and
``diastolic``, optional ``context`` and ``event_id``) and returns one :class:`RowFlag` per
row. :func:`evaluate_cohort` replays a labelled synthetic cohort patient by patient and
scores detection per episode kind and false alert-days; :class:`Evaluation` is the table.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from pghd.catalogue import CATALOGUE, Metric
from pghd.contracts import Anomaly, Measurement, Severity
from pghd.readings import ReadingIn, canonicalize
from pghd.simulation import Cohort, EpisodeKind
from processors.baseline import BaselineParams, BaselineState
from processors.judge import JudgeParams, judge_batch

__all__ = [
    "DEFAULT_GRACE",
    "REPLAY_VENDOR",
    "Evaluation",
    "FalseAlertSource",
    "FalseAlerts",
    "KindScore",
    "RowFlag",
    "default_params",
    "evaluate_cohort",
    "judge_patient",
    "replay_rows",
]

logger = logging.getLogger(__name__)

#: Vendor recorded on replayed readings (part of derived event ids).
REPLAY_VENDOR = "pghd-replay"
#: How long after an episode's end an anomaly still counts as detecting it.
DEFAULT_GRACE = timedelta(hours=12)
_DAY = timedelta(days=1)


def default_params() -> JudgeParams:
    """The judging parameters of ``ProcessorSettings``' defaults (warm-up 20, z 4 / 6)."""
    baseline = BaselineParams(warmup=20, alpha=0.05, clip=3.0)
    return JudgeParams(baseline=baseline, z_warning=4.0, z_critical=6.0)


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
    first_row: dict[str, int] = {}
    for index, reading in readings:
        if reading.event_id in first_row:
            flags[index] = RowFlag(error=f"repeats data row {first_row[reading.event_id] + 1}")
            continue
        first_row[reading.event_id] = index
        result = judge_batch(states, [reading], params=params, now=reading.effective_time)
        states.update(result.states)
        flags[index] = _flag(result.anomalies)
    return flags


def judge_patient(
    readings: Iterable[Mapping[str, Any]], *, params: JudgeParams, now: datetime
) -> tuple[list[Anomaly], int, int]:
    """Canonicalize and judge one patient's posted readings (dicts, in time order).

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
    result = judge_batch({}, measurements, params=params, now=now)
    return result.anomalies, len(measurements) - len(result.failed), rejected


@dataclass(frozen=True, slots=True)
class KindScore:
    """Detection of one episode kind: sensitivity and median delay to the first anomaly."""

    kind: str
    episodes: int
    detected: int
    sensitivity: float | None
    median_delay_min: float | None
    first_detectors: dict[str, int]


@dataclass(frozen=True, slots=True)
class FalseAlerts:
    """Alert-days (UTC days with an alert) where no episode was going on."""

    patients: int
    patient_days: float
    alert_days: int
    per_patient_month: float | None


@dataclass(frozen=True, slots=True)
class FalseAlertSource:
    """False alerts of one channel and detector (healthy patients and outside episodes)."""

    channel: str
    detector: str
    anomalies: int
    critical: int
    alert_days: int
    per_patient_month: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The evaluation table of one cohort replay."""

    patients: int
    days: float
    seed: int
    min_severity: str
    grace_hours: float
    readings: int
    rejected: int
    kinds: list[KindScore]
    healthy: FalseAlerts
    outside_episodes: FalseAlerts
    sources: list[FalseAlertSource]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _per_month(alert_days: int, patient_days: float) -> float | None:
    return round(alert_days / patient_days * 30, 3) if patient_days > 0 else None


@dataclass
class _Tally:
    """Running counts; ``days`` holds the alert-days of a group and of a ``(channel, detector)``."""

    episodes: Counter[str] = field(default_factory=Counter)
    delays: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    first: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    patients: Counter[str] = field(default_factory=Counter)
    exposure: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    days: defaultdict[object, set[tuple[str, date]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    alerts: Counter[tuple[str, str, Severity]] = field(default_factory=Counter)

    def false_alerts(self, group: str) -> FalseAlerts:
        days, exposure = len(self.days[group]), self.exposure[group]
        return FalseAlerts(
            self.patients[group], round(exposure, 3), days, _per_month(days, exposure)
        )

    def sources(self) -> list[FalseAlertSource]:
        exposure = self.exposure["healthy"] + self.exposure["outside"]
        counts: Counter[tuple[str, str]] = Counter()
        for (channel, detector, _), n in self.alerts.items():
            counts[(channel, detector)] += n
        sources = [
            FalseAlertSource(
                channel=channel,
                detector=detector,
                anomalies=n,
                critical=self.alerts[(channel, detector, Severity.CRITICAL)],
                alert_days=len(self.days[(channel, detector)]),
                per_patient_month=_per_month(len(self.days[(channel, detector)]), exposure),
            )
            for (channel, detector), n in counts.items()
        ]
        return sorted(sources, key=lambda s: (-s.alert_days, -s.anomalies, s.channel, s.detector))


def _score_patient(
    tally: _Tally,
    *,
    cohort: Cohort,
    patient_id: str,
    alerts: Sequence[Anomaly],
    grace: timedelta,
) -> None:
    episodes = cohort.episodes_of(patient_id)
    windows = [(e.start, e.end + grace) for e in episodes]
    for episode, (lo, hi) in zip(episodes, windows, strict=True):
        tally.episodes[episode.kind.value] += 1
        hits = [a for a in alerts if a.metric in episode.metrics and lo <= a.observed_at <= hi]
        if hits:
            first = min(hits, key=lambda a: a.observed_at)
            tally.delays[episode.kind.value].append((first.observed_at - lo) / timedelta(minutes=1))
            tally.first[episode.kind.value][first.detector] += 1
    group = "outside" if episodes else "healthy"
    covered = sum(
        (max(timedelta(0), min(hi, cohort.end) - max(lo, cohort.start)) for lo, hi in windows),
        timedelta(0),
    )
    tally.patients[group] += 1
    tally.exposure[group] += (cohort.end - cohort.start - covered) / _DAY
    for alert in alerts:
        if any(lo <= alert.observed_at <= hi for lo, hi in windows):
            continue
        day = (patient_id, alert.observed_at.date())
        tally.days[group].add(day)
        tally.days[(alert.channel, alert.detector)].add(day)
        tally.alerts[(alert.channel, alert.detector, alert.severity)] += 1


def evaluate_cohort(
    cohort: Cohort,
    *,
    params: JudgeParams | None = None,
    min_severity: Severity = Severity.WARNING,
    grace: timedelta = DEFAULT_GRACE,
    on_patient: Callable[[int], None] | None = None,
) -> Evaluation:
    """Replay ``cohort`` patient by patient and score it against its episode labels.

    An alert is an anomaly of at least ``min_severity``. An episode is detected when its
    patient has an alert on one of the episode's metrics in ``[start, end + grace]``; the
    delay runs from its start to the first such alert. A false alert-day is a UTC calendar
    day with an alert outside every episode window, counted per 30 patient-days of exposure
    (the period minus the patient's episode windows). ``on_patient`` is called after each
    patient with the number of readings judged (for a progress bar).
    """
    params = params or default_params()
    tally = _Tally()
    readings = rejected = 0
    for patient in cohort.patients:
        anomalies, judged, refused = judge_patient(
            cohort.patient_readings(patient), params=params, now=cohort.end
        )
        readings, rejected = readings + judged, rejected + refused
        alerts = [a for a in anomalies if a.severity.rank >= min_severity.rank]
        _score_patient(
            tally, cohort=cohort, patient_id=patient.patient_id, alerts=alerts, grace=grace
        )
        if on_patient is not None:
            on_patient(judged)
    kinds = []
    for kind in EpisodeKind:
        episodes, delays = tally.episodes[kind.value], tally.delays[kind.value]
        kinds.append(
            KindScore(
                kind=kind.value,
                episodes=episodes,
                detected=len(delays),
                sensitivity=round(len(delays) / episodes, 3) if episodes else None,
                median_delay_min=round(statistics.median(delays), 1) if delays else None,
                first_detectors=dict(tally.first[kind.value].most_common()),
            )
        )
    return Evaluation(
        patients=len(cohort.patients),
        days=round((cohort.end - cohort.start) / _DAY, 3),
        seed=cohort.seed,
        min_severity=min_severity.value,
        grace_hours=grace / timedelta(hours=1),
        readings=readings,
        rejected=rejected,
        kinds=kinds,
        healthy=tally.false_alerts("healthy"),
        outside_episodes=tally.false_alerts("outside"),
        sources=tally.sources(),
    )
