"""What the patient was doing at a reading: the device's word, else inferred from the data.

Order of evidence (:func:`infer_context`):

1. **The device's own context** wins where a format carries one (Apple Health's
   ``HKMetadataKeyHeartRateMotionContext``: ``sedentary`` is "still for at least 5 minutes
   before the sample", ``active``; Open mHealth ``temporal_relationship_to_physical_activity``
   ``at rest`` / ``active`` / ``during exercise``): the ingest adapters map it onto
   :class:`~pghd.contracts.Context`.
2. **A sleep session** covering the instant (:class:`SleepTimeline`: Open mHealth sleep
   episodes, Apple sleep analysis stages, FHIR sleep observations), stages of sleep only:
   time in bed awake is not sleep.
3. **The steps** (:class:`processors.activity.StepTimeline`): at rest after a still
   period, activity otherwise. At rest inside the patient's **habitual sleep window**
   (learnt from their last sessions, :meth:`SleepTimeline.habitual`) and after the last
   session known, the patient is taken to be asleep: tonight's session is sent only after
   waking, and a sleeping heart rate judged against the awake baseline would look like a
   fall (the night-time pattern, until the session confirms it).
4. Otherwise **unknown** (``None``): never assumed to be rest.

Pure: no I/O; state as plain dicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pghd.contracts import Context
from processors.activity import ActivityState, StepTimeline

__all__ = ["Evidence", "Inferred", "SleepTimeline", "infer_context"]

KEEP = timedelta(hours=36)
DAY_S = 86400
HABIT_NIGHTS = 14
"""Sessions the habitual sleep window is learnt from (the latest main sleeps)."""
HABIT_MIN_NIGHTS = 3
MAIN_SLEEP = timedelta(hours=3)
"""A session at least this long is a main sleep (naps do not shape the habit)."""
HABIT_MARGIN_S = 45 * 60
"""The window is the habit's mean bedtime to mean wake time, shrunk by this at each end."""


class Evidence(StrEnum):
    """Where an inferred context came from (kept with the judgement, for audit)."""

    DEVICE = "device"
    SLEEP = "sleep"
    HABIT = "habit"
    STEPS = "steps"
    NONE = "none"


@dataclass(frozen=True)
class Inferred:
    context: Context | None
    evidence: Evidence
    activity: ActivityState | None = None


@dataclass
class SleepTimeline:
    """Asleep intervals of one patient, per device; a session sent again overwrites."""

    asleep: dict[str, dict[int, int]] = field(default_factory=dict)
    """device -> start (epoch s) -> end (epoch s) of a period asleep."""
    nights: list[tuple[int, int]] = field(default_factory=list)
    """The latest main sleeps (start, end in epoch s), oldest first: the habit."""

    def add(self, start: datetime, end: datetime, *, device: str = "") -> None:
        begin = int(start.timestamp())
        finish = max(int(end.timestamp()), begin + 1)
        self.asleep.setdefault(device, {})[begin] = finish
        if end - start >= MAIN_SLEEP:
            kept = {s: e for s, e in self.nights if abs(s - begin) > DAY_S // 2}
            kept[begin] = finish
            self.nights = sorted(kept.items())[-HABIT_NIGHTS:]
        newest = max(e for spans in self.asleep.values() for e in spans.values())
        oldest = newest - int(KEEP.total_seconds())
        for spans in self.asleep.values():
            for s in [s for s, e in spans.items() if e < oldest]:
                del spans[s]

    def is_asleep(self, at: datetime) -> bool:
        moment = at.timestamp()
        return any(s <= moment < e for spans in self.asleep.values() for s, e in spans.items())

    def habitual(self, at: datetime) -> bool:
        """Whether ``at`` falls in the patient's habitual sleep window (the circular mean
        bedtime and wake time of the last main sleeps, shrunk by :data:`HABIT_MARGIN_S`)
        after the end of the last session known (a known night speaks for itself)."""
        if len(self.nights) < HABIT_MIN_NIGHTS:
            return False
        moment = int(at.timestamp())
        if moment < self.nights[-1][1]:
            return False
        bed = _circular_mean([s % DAY_S for s, _ in self.nights]) + HABIT_MARGIN_S
        wake = _circular_mean([e % DAY_S for _, e in self.nights]) - HABIT_MARGIN_S
        span = (wake - bed) % DAY_S
        return span < DAY_S // 2 and (moment - bed) % DAY_S < span

    def to_dict(self) -> dict[str, Any]:
        devices = {
            d: [[s, e] for s, e in sorted(spans.items())] for d, spans in self.asleep.items()
        }
        return {"devices": devices, "nights": [[s, e] for s, e in self.nights]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SleepTimeline:
        devices = raw.get("devices", {}) if "nights" in raw or "devices" in raw else raw
        return cls(
            asleep={d: {int(s): int(e) for s, e in spans} for d, spans in devices.items()},
            nights=[(int(s), int(e)) for s, e in raw.get("nights", [])],
        )


def _circular_mean(seconds: list[int]) -> int:
    """The mean of times of day (seconds after midnight) on the 24-hour circle."""
    angles = [2 * math.pi * s / DAY_S for s in seconds]
    x = sum(math.cos(a) for a in angles)
    y = sum(math.sin(a) for a in angles)
    return round(math.atan2(y, x) / (2 * math.pi) * DAY_S) % DAY_S


def infer_context(
    at: datetime,
    *,
    device: Context | None,
    sleep: SleepTimeline,
    steps: StepTimeline,
) -> Inferred:
    """The context of a reading taken at ``at`` (see the module docstring for the order)."""
    if device is not None:
        return Inferred(device, Evidence.DEVICE)
    if sleep.is_asleep(at.astimezone(UTC)):
        return Inferred(Context.SLEEP, Evidence.SLEEP)
    state = steps.state_at(at)
    if state.context is Context.REST and sleep.habitual(at):
        return Inferred(Context.SLEEP, Evidence.HABIT, state)
    if state.context is not None:
        return Inferred(state.context, Evidence.STEPS, state)
    return Inferred(None, Evidence.NONE, state)
