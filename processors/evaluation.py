"""Score the detectors on a labelled synthetic cohort, at two levels.

:func:`evaluate_cohort` replays a cohort (:mod:`pghd.simulation`) patient by patient in the
order its readings *arrive* (late batches included), as ingest and the processors would see
them: each arrival canonicalized as ingest does (:func:`pghd.readings.canonicalize`, received
at its arrival time) and judged by the processors' own pass (:func:`processors.judging.judge`,
``now`` = the arrival time), steps and sleep sessions included. It then scores:

- **anomalies** (what the processors publish): an *alert* is an anomaly of at least
  ``min_severity`` that opens or raises an episode (resolutions and withdrawals are not
  alerts; a provisional finding later withdrawn still was one);
- **notifications** (what care teams see): the same anomalies go through the alerts
  service's own lifecycle (:func:`alerts.state.on_anomaly` and, every 15 minutes of event
  time, :func:`alerts.state.on_tick`) with the shipped example routing
  (``deploy/alerts/routing.example.json``: its grouping, per-patient budget and digest), and
  a notification is one delivery it plans.

Per episode kind: sensitivity (an episode is detected by an alert, or a notification, on one
of its metrics in ``[start, end + grace]``), the median delay from its start, and how many
anomalies were published about it in that window (every phase and channel of the patient's
episodes its alerts belong to). Per group of patients: false alert-days, UTC days with an
alert (or a notification) outside every episode window, per 30 patient-days of exposure.
Exposure and false alerts count only after ``warmup`` (a new patient's baselines form
first), so ``days`` is the scored period and the cohort is generated ``warmup`` longer.
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alerts import state as alert_state
from alerts.lifecycle import problem_of
from alerts.routing import load_routing_config
from pghd.alerting import RoutingConfig
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, Measurement, Phase, Severity
from pghd.readings import ReadingIn, ReadingRejected, canonicalize
from pghd.simulation import Cohort, EpisodeKind
from processors.baseline import BaselineState
from processors.detectors.news2_aggregate import News2State
from processors.judge import JudgeParams
from processors.judging import judge
from processors.patient_state import PatientState
from processors.replay import REPLAY_VENDOR, default_params

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_WARMUP",
    "ROUTING_EXAMPLE",
    "Evaluation",
    "FalseAlertSource",
    "FalseAlerts",
    "KindScore",
    "Level",
    "PatientReplay",
    "evaluate_cohort",
    "notifications",
    "replay_arrivals",
]

logger = logging.getLogger(__name__)

#: How long after an episode's end an anomaly still counts as detecting it.
DEFAULT_GRACE = timedelta(hours=12)
#: Days before the scored period: baselines and the nightly rule (14 nights) form first.
DEFAULT_WARMUP = timedelta(days=14)
ROUTING_EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "alerts" / "routing.example.json"
TICK = timedelta(minutes=15)
_DAY = timedelta(days=1)
_ENDINGS = (Phase.RESOLVED, Phase.WITHDRAWN)


@dataclass(frozen=True, slots=True)
class KindScore:
    """Detection of one episode kind: sensitivity, median delay to the first alert, and
    the anomalies published about each labelled episode (median and most): every anomaly,
    of any phase and channel, of the published episodes its alerts belong to, observed in
    its window ``[start, end + grace]``."""

    kind: str
    episodes: int
    detected: int
    sensitivity: float | None
    median_delay_min: float | None
    first_detectors: dict[str, int]
    anomalies_median: float | None = None
    anomalies_max: int | None = None


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
class Level:
    """The scores at one level: anomalies, or notifications after the alert lifecycle."""

    name: str
    kinds: list[KindScore]
    healthy: FalseAlerts
    outside_episodes: FalseAlerts


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The evaluation table of one cohort replay."""

    patients: int
    days: float
    warmup_days: float
    seed: int
    labels: bool
    min_severity: str
    grace_hours: float
    readings: int
    rejected: int
    kinds: list[KindScore]
    healthy: FalseAlerts
    outside_episodes: FalseAlerts
    sources: list[FalseAlertSource]
    care: Level
    episodes_emitted: int
    anomalies_per_episode: float | None
    """Mean anomalies per published episode (onset, updates and ending), all patients."""
    anomalies_per_episode_p95: int | None
    """The 95th percentile of anomalies per published episode."""
    anomalies_per_episode_max: int | None
    """The most anomalies one published episode emitted (from onset to end, or to the end of
    the cohort)."""
    withdrawn: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class PatientReplay:
    """One patient's replay: the anomalies published, readings judged and refused."""

    anomalies: list[Anomaly] = field(default_factory=list)
    judged: int = 0
    rejected: int = 0


def _canonical(raw: Mapping[str, Any], *, arrived: datetime) -> Measurement:
    return canonicalize(ReadingIn.model_validate(raw), vendor=REPLAY_VENDOR, received_at=arrived)


def replay_arrivals(
    arrivals: Iterable[tuple[datetime, Mapping[str, Any]]],
    *,
    params: JudgeParams,
) -> PatientReplay:
    """Judge one patient's posted readings in arrival order; readings arriving at the same
    instant are one batch (a phone's sync), judged with ``now`` = their arrival."""
    out = PatientReplay()
    states: dict[str, BaselineState] = {}
    news2: dict[str, News2State] = {}
    patients: dict[str, PatientState] = {}
    batch: list[Measurement] = []
    batch_at: datetime | None = None

    def flush() -> None:
        if not batch or batch_at is None:
            return
        result = judge(
            states, batch, params=params, now=batch_at, news2_states=news2, patients=patients
        )
        states.update(result.states)
        news2.update(result.news2)
        patients.update(result.patients)
        out.anomalies += result.anomalies
        out.judged += len(batch) - len(result.failed) - len(result.duplicates)
        batch.clear()

    for arrived, raw in arrivals:
        try:
            reading = _canonical(raw, arrived=arrived)
        except (ValidationError, ReadingRejected):
            out.rejected += 1
            continue
        if batch_at is not None and arrived != batch_at:
            flush()
        batch.append(reading)
        batch_at = arrived
    flush()
    return out


@dataclass(frozen=True, slots=True)
class Notification:
    """One delivery the alert lifecycle planned: when, and for which problem."""

    at: datetime
    problem: str
    severity: Severity


def notifications(
    patient_id: str, anomalies: Sequence[Anomaly], *, config: RoutingConfig
) -> list[Notification]:
    """The deliveries the alerts service would plan for ``anomalies`` (one patient), replayed
    on event time: each anomaly at its detection time, the timer every :data:`TICK`."""
    policy = config.grouping
    state = alert_state.PatientState(patient_id=patient_id, partition=0)
    out: list[Notification] = []
    ordered = sorted(anomalies, key=lambda a: a.detected_at)
    if not ordered:
        return out
    tick = ordered[0].detected_at + TICK

    def collect(step: alert_state.Step, now: datetime) -> alert_state.PatientState:
        problems = {a.alert_id: a.problem for a in step.state.alerts.values()}
        out.extend(
            Notification(now, problems.get(d.alert_id, ""), d.severity) for d in step.deliveries
        )
        return step.state

    end = ordered[-1].detected_at + timedelta(hours=6)
    pending = list(ordered)
    while pending or tick <= end:
        if pending and pending[0].detected_at < tick:
            anomaly = pending.pop(0)
            step = alert_state.on_anomaly(
                state, anomaly, config=config, policy=policy, now=anomaly.detected_at
            )
            state = collect(step, anomaly.detected_at)
        else:
            state = collect(
                alert_state.on_tick(state, config=config, policy=policy, now=tick), tick
            )
            tick += TICK
    return out


def _problem(metric: Metric) -> str:
    return problem_of(metric.value)


def _per_month(alert_days: int, patient_days: float) -> float | None:
    return round(alert_days / patient_days * 30, 3) if patient_days > 0 else None


@dataclass
class _Tally:
    """Running counts of one level; ``days`` holds alert-days per group (and per
    ``(channel, detector)`` at the anomaly level)."""

    episodes: Counter[str] = field(default_factory=Counter)
    delays: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    first: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    emitted: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
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

    def kinds(self) -> list[KindScore]:
        scores = []
        for kind in EpisodeKind:
            episodes, delays = self.episodes[kind.value], self.delays[kind.value]
            emitted = self.emitted[kind.value]
            scores.append(
                KindScore(
                    kind=kind.value,
                    episodes=episodes,
                    detected=len(delays),
                    sensitivity=round(len(delays) / episodes, 3) if episodes else None,
                    median_delay_min=round(statistics.median(delays), 1) if delays else None,
                    first_detectors=dict(self.first[kind.value].most_common()),
                    anomalies_median=float(statistics.median(emitted)) if emitted else None,
                    anomalies_max=max(emitted) if emitted else None,
                )
            )
        return scores

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


@dataclass(frozen=True, slots=True)
class _Event:
    """An alert or a notification, as scored: when, on which problem, and its source."""

    at: datetime
    problem: str
    severity: Severity
    channel: str = ""
    detector: str = ""
    episode_id: str | None = None


def _score(
    tally: _Tally,
    *,
    cohort: Cohort,
    scored_from: datetime,
    patient_id: str,
    events: Sequence[_Event],
    grace: timedelta,
    emitted: Mapping[str, Sequence[datetime]] | None = None,
) -> None:
    episodes = cohort.episodes_of(patient_id)
    windows = [(e.start, e.end + grace) for e in episodes]
    for episode, (lo, hi) in zip(episodes, windows, strict=True):
        kind = episode.kind.value
        tally.episodes[kind] += 1
        problems = {_problem(m) for m in episode.metrics}
        hits = [e for e in events if e.problem in problems and lo <= e.at <= hi]
        if hits:
            first = min(hits, key=lambda e: e.at)
            tally.delays[kind].append((first.at - lo) / timedelta(minutes=1))
            tally.first[kind][first.detector or first.severity.value] += 1
        if emitted is not None:
            ids = {e.episode_id for e in hits if e.episode_id is not None}
            times = (t for i in ids for t in emitted.get(i, ()))
            tally.emitted[kind].append(sum(lo <= t <= hi for t in times))
    group = "outside" if episodes else "healthy"
    covered = sum(
        (max(timedelta(0), min(hi, cohort.end) - max(lo, scored_from)) for lo, hi in windows),
        timedelta(0),
    )
    tally.patients[group] += 1
    tally.exposure[group] += (cohort.end - scored_from - covered) / _DAY
    for event in events:
        if event.at < scored_from or any(lo <= event.at <= hi for lo, hi in windows):
            continue
        day = (patient_id, event.at.date())
        tally.days[group].add(day)
        if event.detector:
            tally.days[(event.channel, event.detector)].add(day)
            tally.alerts[(event.channel, event.detector, event.severity)] += 1


_COHORT: Cohort | None = None
"""The cohort a worker process replays (set before the pool forks)."""


def _replay_patient(
    index: int, *, params: JudgeParams, config: RoutingConfig
) -> tuple[PatientReplay, list[Notification]]:
    assert _COHORT is not None
    patient = _COHORT.patients[index]
    replay = replay_arrivals(_COHORT.patient_arrivals(patient), params=params)
    return replay, notifications(patient.patient_id, replay.anomalies, config=config)


def _outcomes(
    cohort: Cohort, *, params: JudgeParams, config: RoutingConfig, workers: int
) -> Iterator[tuple[PatientReplay, list[Notification]]]:
    """Each patient's replay and notifications, in cohort order (``workers`` processes)."""
    global _COHORT
    _COHORT = cohort
    job = partial(_replay_patient, params=params, config=config)
    indices = range(len(cohort.patients))
    if workers <= 1:
        yield from map(job, indices)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(job, indices, chunksize=4)


def evaluate_cohort(
    cohort: Cohort,
    *,
    params: JudgeParams | None = None,
    min_severity: Severity = Severity.WARNING,
    grace: timedelta = DEFAULT_GRACE,
    warmup: timedelta = DEFAULT_WARMUP,
    labels: bool = False,
    workers: int = 1,
    on_patient: Callable[[int], None] | None = None,
) -> Evaluation:
    """Replay ``cohort`` patient by patient and score it against its episode labels (see
    the module docstring). ``warmup`` is the start of the cohort left out of the scores;
    ``labels`` only records whether the cohort carried oracle context labels; ``workers``
    processes replay patients side by side (the result is the same).
    ``on_patient`` is called after each patient with the number of readings judged."""
    params = params or default_params()
    config = load_routing_config(ROUTING_EXAMPLE)
    scored_from = cohort.start + warmup
    anomaly_level, care_level = _Tally(), _Tally()
    readings = rejected = withdrawn = 0
    per_episode: Counter[str] = Counter()
    outcomes = _outcomes(cohort, params=params, config=config, workers=workers)
    for patient, (replay, sent) in zip(cohort.patients, outcomes, strict=True):
        pid = patient.patient_id
        readings, rejected = readings + replay.judged, rejected + replay.rejected
        emitted: defaultdict[str, list[datetime]] = defaultdict(list)
        for a in replay.anomalies:
            if a.episode_id is not None:
                emitted[a.episode_id].append(a.observed_at)
        per_episode.update({i: len(times) for i, times in emitted.items()})
        withdrawn += sum(a.phase is Phase.WITHDRAWN for a in replay.anomalies)
        alerts = [
            _Event(
                a.observed_at, _problem(a.metric), a.severity, a.channel, a.detector, a.episode_id
            )
            for a in replay.anomalies
            if a.severity.rank >= min_severity.rank and a.phase not in _ENDINGS
        ]
        _score(
            anomaly_level,
            cohort=cohort,
            scored_from=scored_from,
            patient_id=pid,
            events=alerts,
            grace=grace,
            emitted=emitted,
        )
        _score(
            care_level,
            cohort=cohort,
            scored_from=scored_from,
            patient_id=pid,
            events=[_Event(n.at, n.problem, n.severity) for n in sent],
            grace=grace,
        )
        if on_patient is not None:
            on_patient(replay.judged)
    counts = list(per_episode.values())
    return Evaluation(
        patients=len(cohort.patients),
        days=round((cohort.end - scored_from) / _DAY, 3),
        warmup_days=round(warmup / _DAY, 3),
        seed=cohort.seed,
        labels=labels,
        min_severity=min_severity.value,
        grace_hours=grace / timedelta(hours=1),
        readings=readings,
        rejected=rejected,
        kinds=anomaly_level.kinds(),
        healthy=anomaly_level.false_alerts("healthy"),
        outside_episodes=anomaly_level.false_alerts("outside"),
        sources=anomaly_level.sources(),
        care=Level(
            name="notifications",
            kinds=care_level.kinds(),
            healthy=care_level.false_alerts("healthy"),
            outside_episodes=care_level.false_alerts("outside"),
        ),
        episodes_emitted=len(counts),
        anomalies_per_episode=round(statistics.fmean(counts), 2) if counts else None,
        anomalies_per_episode_p95=sorted(counts)[int(0.95 * (len(counts) - 1))] if counts else None,
        anomalies_per_episode_max=max(counts) if counts else None,
        withdrawn=withdrawn,
    )
