"""Score the detectors on a labelled synthetic cohort: sensitivity and false alert-days.

:func:`evaluate_cohort` replays a cohort (:mod:`pghd.simulation`) patient by patient
through :func:`processors.replay.judge_patient` (the processors' own canonicalization and
judging) and scores detection per episode kind and false alert-days per patient-month;
:class:`Evaluation` is the table ``pghd evaluate`` prints.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from pghd.contracts import Anomaly, Severity
from pghd.simulation import Cohort, EpisodeKind
from processors.judge import JudgeParams
from processors.replay import default_params, judge_patient

__all__ = [
    "DEFAULT_GRACE",
    "Evaluation",
    "FalseAlertSource",
    "FalseAlerts",
    "KindScore",
    "evaluate_cohort",
]

logger = logging.getLogger(__name__)

#: How long after an episode's end an anomaly still counts as detecting it.
DEFAULT_GRACE = timedelta(hours=12)
_DAY = timedelta(days=1)


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
