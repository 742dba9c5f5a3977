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
   period, activity otherwise.
4. Otherwise **unknown** (``None``): never assumed to be rest.

Pure: no I/O; state as plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pghd.contracts import Context
from processors.activity import ActivityState, StepTimeline

__all__ = ["Evidence", "Inferred", "SleepTimeline", "infer_context"]

KEEP = timedelta(hours=36)


class Evidence(StrEnum):
    """Where an inferred context came from (kept with the judgement, for audit)."""

    DEVICE = "device"
    SLEEP = "sleep"
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

    def add(self, start: datetime, end: datetime, *, device: str = "") -> None:
        begin = int(start.timestamp())
        self.asleep.setdefault(device, {})[begin] = max(int(end.timestamp()), begin + 1)
        newest = max(e for spans in self.asleep.values() for e in spans.values())
        oldest = newest - int(KEEP.total_seconds())
        for spans in self.asleep.values():
            for s in [s for s, e in spans.items() if e < oldest]:
                del spans[s]

    def is_asleep(self, at: datetime) -> bool:
        moment = at.timestamp()
        return any(s <= moment < e for spans in self.asleep.values() for s, e in spans.items())

    def to_dict(self) -> dict[str, Any]:
        return {d: [[s, e] for s, e in sorted(spans.items())] for d, spans in self.asleep.items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SleepTimeline:
        return cls(asleep={d: {int(s): int(e) for s, e in spans} for d, spans in raw.items()})


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
    if state.context is not None:
        return Inferred(state.context, Evidence.STEPS, state)
    return Inferred(None, Evidence.NONE, state)
