"""The judging pass, in one straight line:

    readings → context → channel baseline → detectors → episode → outputs

:func:`judge` takes a batch of readings with the state they need and returns what to
publish and what to store. Pure: no Kafka, InfluxDB or clock (``now`` is an argument).

1. **Companions first.** Steps with an interval (``effective_end``) go into the patient's
   :class:`~processors.activity.StepTimeline`, sleep sessions (``sleep_duration`` with an
   interval) into the :class:`~processors.context.SleepTimeline`, for the whole batch before
   any reading is judged: a phone's sync carries steps and heart rate together.
2. **Provisional findings re-checked.** A finding raised before the steps were known
   (:mod:`processors.detectors.resting_tachycardia`) is confirmed once steps show the patient
   still, or *withdrawn* (an anomaly of phase ``withdrawn`` on the topic) when they show
   movement.
3. **Each reading**: its context is the device's, else inferred from sleep sessions and steps,
   else unknown (:func:`processors.context.infer_context`); the channel baselines and the
   detectors judge it in that context (:func:`processors.judge.judge_reading`; heart rate also
   by :mod:`~processors.detectors.resting_tachycardia`); its findings step the patient's
   episode (:mod:`processors.episodes`: one per patient, whatever channels depart), and only
   what the episode emits (onset, a problem reaching a new severity, a slow reminder,
   resolution) becomes an anomaly.
4. **Resting heart rate in the stream**: heart rates at rest make a daily resting heart rate;
   heart rates inside a night's sleep session, without steps, make the night's resting heart
   rate (Alavi et al. 2022), judged by the two-night rule
   (:class:`processors.resting_hr.NightSignal`). Both are stored as ``vitals`` points of
   ``resting_heart_rate`` (device ``pghd-daily`` and ``pghd-nightly``).

The patients' :class:`~processors.patient_state.PatientState` objects are updated in place
and returned in :attr:`Outcome.patients`; ``states`` and ``news2_states`` are not modified.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from statistics import fmean

from pghd.alerting import problem_of
from pghd.care_plans import CarePlan
from pghd.catalogue import Metric
from pghd.contracts import Anomaly, Context, Measurement, Phase, Severity
from processors.activity import StepInterval
from processors.baseline import BaselineState
from processors.context import infer_context
from processors.dedup import first_occurrences
from processors.detectors import Finding, channel_label, display_unit, fmt_number, gaps
from processors.detectors import resting_tachycardia as tachycardia
from processors.detectors.news2 import AT_REST
from processors.detectors.news2_aggregate import CHANNEL as NEWS2_CHANNEL
from processors.detectors.news2_aggregate import News2State
from processors.detectors.pipeline import JudgeParams
from processors.episodes import Emission, Episode, EpisodePolicy, step
from processors.judge import judge_reading, spec_of
from processors.patient_state import PatientState, Provisional
from processors.points import InfluxPoint, anomaly_id, anomaly_point
from processors.resting_hr import NightlyRhr

__all__ = ["DAILY", "NIGHTLY", "RESTING_MEASUREMENT", "Outcome", "judge"]

logger = logging.getLogger(__name__)

RESTING_MEASUREMENT = "resting_heart_rate"
DAILY = "daily"
NIGHTLY = "nightly"
NIGHT_CHANNEL = "resting_heart_rate"
NIGHT_DETECTOR = "nightsignal"
EPISODE_DETECTOR = "episode"
MIN_NIGHT_SAMPLES = 6
PROVISIONAL_KEEP = timedelta(hours=36)
_NIGHT_SEVERITY = {"amber": Severity.INFO, "red": Severity.WARNING}


@dataclass
class Outcome:
    """What one batch produced: points and anomalies to publish, states to store."""

    states: dict[str, BaselineState] = field(default_factory=dict)
    news2: dict[str, News2State] = field(default_factory=dict)
    patients: dict[str, PatientState] = field(default_factory=dict)
    vitals: list[InfluxPoint] = field(default_factory=list)
    baselines: list[InfluxPoint] = field(default_factory=list)
    scores: list[InfluxPoint] = field(default_factory=list)
    resting: list[InfluxPoint] = field(default_factory=list)
    """Computed resting heart rates (measurement ``resting_heart_rate``)."""
    anomalies: list[Anomaly] = field(default_factory=list)
    """Only what the episodes emitted."""
    raw: list[Anomaly] = field(default_factory=list)
    """Every reading's findings (one anomaly per reading and channel), before the episodes
    fold them: what a per-reading view (``pghd replay``) shows; never published."""
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def points(self) -> list[InfluxPoint]:
        """Every point to write: vitals, baselines, NEWS2 scores, resting heart rates and
        emitted anomalies."""
        anomalies = (anomaly_point(a) for a in self.anomalies)
        return [*self.vitals, *self.baselines, *self.scores, *self.resting, *anomalies]


def _device(reading: Measurement) -> str:
    return f"{reading.source.vendor}|{reading.source.device_id or ''}"


def _take_companion(reading: Measurement, patient: PatientState) -> bool:
    """Record a steps interval or a sleep session; True when the step timeline changed."""
    end = reading.effective_end
    if end is None or reading.value is None:
        return False
    if reading.metric is Metric.STEPS:
        interval = StepInterval(reading.effective_time, end, reading.value, _device(reading))
        return patient.steps.add(interval)
    if reading.metric is Metric.SLEEP_DURATION:
        patient.sleep.add(reading.effective_time, end, device=_device(reading))
    return False


def _id(*parts: str) -> str:
    return hashlib.sha256("|".join(("pghd.anomaly.v1", *parts)).encode()).hexdigest()[:32]


def _closing(
    *,
    patient_id: str,
    metric: Metric,
    channel: str,
    value: float,
    unit: str,
    at: datetime,
    now: datetime,
    event_id: str,
    emission: Emission,
    phase: Phase,
    explanation: str,
) -> Anomaly:
    """The anomaly that ends an episode (resolved or withdrawn)."""
    return Anomaly(
        anomaly_id=_id(patient_id, channel, event_id, phase.value, emission.episode.episode_id),
        patient_id=patient_id,
        metric=metric,
        channel=channel,
        detector=EPISODE_DETECTOR,
        severity=Severity.INFO,
        score=0.0,
        value=value,
        unit=unit,
        observed_at=at,
        detected_at=now,
        explanation=explanation,
        event_ids=[event_id],
        episode_id=emission.episode.episode_id,
        phase=phase,
    )


def _emitted(
    raw: Anomaly | None,
    emission: Emission,
    *,
    reading: Measurement,
    channel: str,
    value: float,
    now: datetime,
) -> Anomaly:
    episode = emission.episode
    if emission.phase is Phase.RESOLVED or raw is None:
        since = episode.normal_since or reading.effective_time
        minutes = int((reading.effective_time - since).total_seconds() // 60)
        opened = episode.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return _closing(
            patient_id=reading.patient_id,
            metric=reading.metric,
            channel=channel,
            value=value,
            unit=reading.unit,
            at=reading.effective_time,
            now=now,
            event_id=reading.event_id,
            emission=emission,
            phase=Phase.RESOLVED,
            explanation=(
                f"{_labels(episode)} back within this patient's normal for {minutes} min "
                f"({episode.normal_readings} readings): the episode that began {opened} "
                f"({episode.departing} departing readings) is over."
            ),
        )
    return raw.model_copy(update={"episode_id": episode.episode_id, "phase": emission.phase})


def _labels(episode: Episode) -> str:
    """The channels of an episode, for a sentence: "Temperature and heart rate"."""
    names = [channel_label(ch).lower() for ch in sorted(episode.tracks)]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return text[:1].upper() + text[1:]


def _problem(channel: str, metric: Metric) -> str:
    """What a channel's findings are about, for the episode's announcements: the NEWS2
    aggregate is its own problem, every other channel that of its metric."""
    return NEWS2_CHANNEL if channel == NEWS2_CHANNEL else problem_of(metric.value)


def _data_quality_only(found: Anomaly) -> bool:
    """A finding that says only that data was missing (:mod:`processors.detectors.gaps`): a
    note published on its own, outside any episode, since the reading itself is within the
    patient's normal."""
    return found.detector == gaps.DETECTOR and not found.contributing


def _counts_as_normal(channel: str, context: Context | None) -> bool:
    """Whether a reading without findings shows the channel back within normal: heart and
    respiratory rate only at rest or asleep (during activity or unknown they are not judged
    against the patient's normal, so they say nothing about it)."""
    spec = spec_of(channel)
    return spec is None or not spec.exercise_sensitive or context in AT_REST


def _recheck(patient_id: str, patient: PatientState, *, now: datetime) -> list[Anomaly]:
    """Confirm or withdraw provisional findings whose steps are now known."""
    out: list[Anomaly] = []
    for eid, prov in sorted(patient.provisional.items(), key=lambda item: item[1].at):
        state = patient.steps.state_at(prov.at)
        if state.context is None:
            if now - prov.at > PROVISIONAL_KEEP:
                del patient.provisional[eid]  # no steps ever came: the finding stands
            continue
        del patient.provisional[eid]
        still = state.still_for or timedelta(0)
        if state.context is Context.REST and still >= tachycardia.STILL:
            continue  # confirmed
        if patient.episode is not None and patient.episode.episode_id == eid:
            patient.episode = patient.episode.without(prov.channel)
        cadence = state.cadence or 0.0
        out.append(
            Anomaly(
                anomaly_id=_id(patient_id, prov.channel, prov.event_id, "withdrawn", eid),
                patient_id=patient_id,
                metric=Metric(prov.metric),
                channel=prov.channel,
                detector=EPISODE_DETECTOR,
                severity=Severity.INFO,
                score=0.0,
                value=prov.value,
                unit=prov.unit,
                observed_at=prov.at,
                detected_at=now,
                explanation=(
                    f"Withdrawn: the steps that arrived since show the patient moving at "
                    f"{prov.at.astimezone(UTC).strftime('%H:%M UTC')} ({fmt_number(cadence)} "
                    f"steps/min over the 5 min before, last step {_ago(still)} earlier), so the "
                    f"{channel_label(prov.channel).lower()} of "
                    f"{fmt_number(prov.value)} {display_unit(prov.unit)} was exercise, "
                    "not resting tachycardia."
                ),
                event_ids=[prov.event_id],
                episode_id=eid,
                phase=Phase.WITHDRAWN,
                context=state.context,
            )
        )
    return out


def _ago(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} min"


def _night_rhr(patient: PatientState, start: datetime, end: datetime) -> NightlyRhr | None:
    """The resting heart rate of the sleep session ``[start, end)``: the mean heart rate in
    it at moments without steps (Alavi et al. 2022); None with too few samples."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    values = [
        bpm
        for moment, bpm in patient.heart
        if lo <= moment < hi
        and patient.steps.state_at(datetime.fromtimestamp(moment, UTC)).context
        is not Context.ACTIVITY
    ]
    if len(values) < MIN_NIGHT_SAMPLES:
        return None
    return NightlyRhr(night=end.astimezone(UTC).date(), rhr=fmean(values), samples=len(values))


def _rhr_point(
    patient_id: str, *, kind: str, at: datetime, value: float, samples: int
) -> InfluxPoint:
    """A computed resting heart rate: measurement ``resting_heart_rate`` (not ``vitals``,
    which holds only what was posted), tag ``kind`` nightly or daily."""
    tags = {"patient_id": patient_id, "kind": kind, "unit": "/min"}
    fields: dict[str, float | int | str] = {"value": round(value, 2), "samples": samples}
    return InfluxPoint(RESTING_MEASUREMENT, tags, fields, at)


@dataclass
class _Pass:
    """One batch's working state (the loop of :func:`judge`)."""

    params: JudgeParams
    now: datetime
    plans: Mapping[str, CarePlan]
    policy: EpisodePolicy
    states: dict[str, BaselineState]
    latest: dict[str, News2State]
    out: Outcome
    days: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def patient(self, patient_id: str) -> PatientState:
        if patient_id not in self.out.patients:
            self.out.patients[patient_id] = PatientState()
        return self.out.patients[patient_id]

    def episode(
        self,
        patient_id: str,
        patient: PatientState,
        *,
        channel: str,
        raw: Anomaly | None,
        reading: Measurement,
        value: float,
    ) -> None:
        """Step the patient's episode with this reading's finding on ``channel`` (or its
        absence)."""
        severity = None if raw is None else raw.severity
        patient.episode, emission = step(
            patient.episode,
            at=reading.effective_time,
            finding=severity,
            patient_id=patient_id,
            channel=channel,
            event_id=reading.event_id,
            problem=_problem(channel, reading.metric),
            policy=self.policy,
        )
        if emission is not None:
            anomaly = _emitted(
                raw, emission, reading=reading, channel=channel, value=value, now=self.now
            )
            self.out.anomalies.append(anomaly)

    def reading(self, reading: Measurement) -> None:
        pid, at = reading.patient_id, reading.effective_time
        patient = self.patient(pid)
        inferred = infer_context(
            at, device=reading.context, sleep=patient.sleep, steps=patient.steps
        )
        judged = (
            reading
            if inferred.context is reading.context
            else reading.model_copy(update={"context": inferred.context})
        )
        extra: dict[str, list[Finding]] = {}
        provisional = False
        if reading.metric is Metric.HEART_RATE and reading.value is not None:
            bpm = reading.value
            patient.tachy = tachycardia.extend(patient.tachy, at=at, bpm=bpm)
            activity = inferred.activity or patient.steps.state_at(at)
            verdict = tachycardia.assess(
                patient.tachy,
                at=at,
                bpm=bpm,
                unit=reading.unit,
                activity=activity,
                steps=patient.steps,
            )
            if verdict.finding is not None and judged.context is not Context.SLEEP:
                extra[reading.metric.value] = [verdict.finding]
                provisional = verdict.provisional
            patient.remember_heart_rate(at, bpm)
            if judged.context is Context.REST:
                self.rest_heart_rate(pid, patient, at=at, bpm=bpm)
        one = judge_reading(
            self.states,
            judged,
            params=self.params,
            now=self.now,
            plan=self.plans.get(pid),
            news2_state=self.latest.get(pid),
            extra=extra,
        )
        self.states.update(one.states)
        self.latest.update(one.news2)
        self.out.states.update(one.states)
        self.out.news2.update(one.news2)
        self.out.vitals.extend(one.vitals)
        self.out.baselines.extend(one.baselines)
        self.out.scores.extend(one.scores)
        self.out.raw.extend(one.anomalies)
        raw = {a.channel: a for a in one.anomalies}
        for channel, value in reading.channels():
            found = raw.get(channel)
            if found is not None and _data_quality_only(found):
                self.out.anomalies.append(found)  # a note on its own, no departure
                found = None
            if found is None and not _counts_as_normal(channel, judged.context):
                continue
            self.episode(pid, patient, channel=channel, raw=found, reading=judged, value=value)
            opened = patient.episode
            if provisional and found is not None and opened is not None:
                patient.provisional.setdefault(
                    opened.episode_id,
                    Provisional(
                        at, channel, reading.metric.value, value, reading.unit, reading.event_id
                    ),
                )
        if one.scores:  # a NEWS2 vital: the aggregate's episode moves on
            found = raw.get(NEWS2_CHANNEL)
            self.episode(
                pid,
                patient,
                channel=NEWS2_CHANNEL,
                raw=found,
                reading=judged,
                value=0.0 if found is None else found.value,
            )

    def rest_heart_rate(self, pid: str, patient: PatientState, *, at: datetime, bpm: float) -> None:
        day = at.astimezone(UTC).date().isoformat()
        self.days[(pid, day)] = patient.add_rest_heart_rate(day, bpm)

    def night(self, reading: Measurement) -> None:
        """A sleep session arrived: the night's resting heart rate, and its two-night rule."""
        end = reading.effective_end
        if end is None:
            return
        pid = reading.patient_id
        patient = self.patient(pid)
        found = _night_rhr(patient, reading.effective_time, end)
        if found is None:
            return
        tag = f"night-{found.night.isoformat()}"
        self.out.resting.append(
            _rhr_point(pid, kind=NIGHTLY, at=end, value=found.rhr, samples=found.samples)
        )
        baseline = patient.nights.baseline(found.night)
        level = patient.nights.judge(found)
        raw = None
        if level is not None and baseline is not None:
            before = patient.nights.nights.get(found.night - timedelta(days=1))
            previous = "" if before is None else f" (the night before: {fmt_number(before[0])})"
            raw = Anomaly(
                anomaly_id=anomaly_id(
                    patient_id=pid, channel=NIGHT_CHANNEL, event_id=tag, source="pghd|nightly"
                ),
                patient_id=pid,
                metric=Metric.RESTING_HEART_RATE,
                channel=NIGHT_CHANNEL,
                detector=NIGHT_DETECTOR,
                severity=_NIGHT_SEVERITY[level],
                score=found.rhr - baseline[0],
                value=round(found.rhr, 1),
                unit="/min",
                observed_at=end,
                detected_at=self.now,
                explanation=(
                    f"Resting heart rate overnight {fmt_number(found.rhr)} /min{previous} is "
                    f"above this patient's usual {fmt_number(baseline[0])} /min (median of "
                    f"{baseline[1]} nights) by {'4' if level == 'red' else '3'} /min or more "
                    "for two nights running."
                ),
                event_ids=[reading.event_id],
                context=Context.SLEEP,
            )
        night_reading = reading.model_copy(
            update={
                "effective_time": end,
                "effective_end": None,
                "metric": Metric.RESTING_HEART_RATE,
                "unit": "/min",
                "value": found.rhr,
            }
        )
        self.episode(
            pid, patient, channel=NIGHT_CHANNEL, raw=raw, reading=night_reading, value=found.rhr
        )

    def finish(self) -> None:
        for (pid, day), (mean, count) in sorted(self.days.items()):
            start = datetime.combine(datetime.fromisoformat(day).date(), time(0), UTC)
            self.out.resting.append(
                _rhr_point(pid, kind=DAILY, at=start, value=mean, samples=count)
            )


def judge(
    states: Mapping[str, BaselineState],
    readings: Sequence[Measurement],
    *,
    params: JudgeParams,
    now: datetime,
    plans: Mapping[str, CarePlan] | None = None,
    news2_states: Mapping[str, News2State] | None = None,
    patients: Mapping[str, PatientState] | None = None,
    policy: EpisodePolicy | None = None,
) -> Outcome:
    """Judge a batch of readings (see the module docstring for the pass).

    A repeated reading (same source, device and ``event_id``) is judged once and listed in
    ``duplicates``; a reading whose judging raises is listed in ``failed`` as ``(event_id,
    reason)`` and contributes nothing, so one bad reading cannot stop the stream.
    """
    run = _Pass(
        params=params,
        now=now,
        plans=plans or {},
        policy=policy or EpisodePolicy(),
        states=dict(states),
        latest=dict(news2_states or {}),
        out=Outcome(patients=dict(patients or {})),
    )
    unique, run.out.duplicates = first_occurrences(readings)
    stepped: set[str] = set()
    for reading in unique:
        if _take_companion(reading, run.patient(reading.patient_id)):
            stepped.add(reading.patient_id)
    for pid in sorted(stepped):
        run.out.anomalies += _recheck(pid, run.patient(pid), now=now)
    for reading in unique:
        try:
            run.reading(reading)
            if reading.metric is Metric.SLEEP_DURATION:
                run.night(reading)
        except Exception as exc:
            logger.exception("judging event %s failed", reading.event_id)
            run.out.failed.append((reading.event_id, f"judging failed: {exc!r}"))
    run.finish()
    return run.out
