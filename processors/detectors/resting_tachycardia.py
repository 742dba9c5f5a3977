"""Resting tachycardia: a high heart rate while the patient has not moved for half an hour.

A heart rate of 150 /min is normal on a run and alarming on a sofa, and heart rate arrives
without a word about which (:mod:`processors.context`). This detector raises a critical
finding when the heart rate has stayed at or above ``THRESHOLD`` (120 /min) for at least
``SUSTAINED`` (10 minutes: a motion artefact is one reading, not ten minutes of them) and
the steps show no step for ``STILL`` (30 minutes), long after any exercise would have let
the heart rate fall back (recovery takes minutes, not half an hour). The 120 /min and the
"inactive for a while" rule follow the high heart-rate notification of consumer watches
(Apple: above 120 /min for 10 minutes while seemingly inactive); the clinical literature
calls a resting heart rate above 100 /min tachycardia, and NEWS2 scores 111-130 /min 2 and
≥131 /min 3 (at rest, :mod:`.news2`).

**Provisional findings.** Steps often arrive after the heart rate (a phone syncs later).
When the steps of the last 30 minutes are not known yet, the same high heart rate cannot
wait for them: if it has lasted the whole ``STILL`` period and no step is known in it, the
finding is raised as *provisional*. The judge keeps it and re-checks it when the steps
arrive (:mod:`processors.judge`): steps in the period withdraw it, a still period confirms
it. A patient without any step data is judged the same way, on heart rate alone after 30
minutes. Known limitation: exercise without steps (cycling, rowing, swimming) reads as still;
a device's workout session context, where it sends one, prevents that.

Pure: the run of high readings is the caller's state (:class:`Run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pghd.contracts import Severity
from processors.activity import ActivityState, StepTimeline
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["DETECTOR", "STILL", "SUSTAINED", "THRESHOLD", "Run", "Verdict", "assess", "extend"]

DETECTOR = "resting_tachycardia"
THRESHOLD = 120.0
STILL = timedelta(minutes=30)
SUSTAINED = timedelta(minutes=10)
MAX_GAP = timedelta(minutes=15)
"""Readings further apart than this do not make one run (the watch was off in between)."""


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive heart-rate readings at or above :data:`THRESHOLD`, from ``since``."""

    since: datetime
    last: datetime

    def to_list(self) -> list[str]:
        return [self.since.isoformat(), self.last.isoformat()]

    @classmethod
    def from_list(cls, raw: list[str]) -> Run:
        return cls(datetime.fromisoformat(raw[0]), datetime.fromisoformat(raw[1]))


def extend(run: Run | None, *, at: datetime, bpm: float) -> Run | None:
    """The run after a reading of ``bpm`` at ``at`` (None: the reading ends it)."""
    if bpm < THRESHOLD:
        return None
    if run is None or at - run.last > MAX_GAP or at < run.since:
        return Run(at, at)
    return Run(run.since, max(run.last, at))


@dataclass(frozen=True, slots=True)
class Verdict:
    finding: Finding | None
    provisional: bool = False


def _finding(bpm: float, *, unit: str, high_for: timedelta, clause: str) -> Finding:
    minutes = int(high_for.total_seconds() // 60)
    shown = display_unit(unit)
    return Finding(
        detector=DETECTOR,
        severity=Severity.CRITICAL,
        score=bpm,
        clause=(
            f"at or above {fmt_number(THRESHOLD)} {shown} for {minutes} min {clause} "
            "(resting tachycardia)"
        ),
    )


def assess(
    run: Run | None,
    *,
    at: datetime,
    bpm: float,
    unit: str,
    activity: ActivityState,
    steps: StepTimeline,
) -> Verdict:
    """Judge a heart rate ``bpm`` at ``at`` (``run`` already extended by it), with the
    activity known at ``at`` and the patient's steps (for what is known of the last 30 min)."""
    if run is None:
        return Verdict(None)
    high_for = at - run.since
    if activity.context is not None:  # the steps up to ``at`` are known
        still = activity.still_for or timedelta(0)
        if still >= STILL and high_for >= SUSTAINED:
            minutes = int(still.total_seconds() // 60)
            clause = f"with no steps for {minutes} min"
            return Verdict(_finding(bpm, unit=unit, high_for=high_for, clause=clause))
        return Verdict(None)
    if steps.steps_between(at - STILL, at) or high_for < STILL:
        return Verdict(None)
    clause = "and no steps known in that time (provisional: the steps have not arrived yet)"
    return Verdict(_finding(bpm, unit=unit, high_for=high_for, clause=clause), provisional=True)
