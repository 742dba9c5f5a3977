"""What the judging remembers about one patient beyond the per-channel baselines.

One record per patient (the ``patients`` table, key = patient id), so a batch writes at most
one record per patient whatever it held:

- ``steps`` and ``sleep``: the timelines context is inferred from
  (:mod:`processors.activity`, :mod:`processors.context`);
- ``episode``: the patient's open episode, if any (:mod:`processors.episodes`);
- ``tachy``: the current run of heart rates at or above 120 /min
  (:mod:`processors.detectors.resting_tachycardia`);
- ``provisional``: findings raised before the steps that could confirm them arrived, by
  episode id, re-checked when steps arrive;
- ``heart``: recent heart rates (epoch s, /min), from which the nightly resting heart rate is
  computed once the night's sleep session is known;
- ``nights``: the nightly resting heart rates and their two-night rule
  (:class:`processors.resting_hr.NightSignal`);
- ``days``: per UTC day, the sum and count of heart rates taken at rest (the daily resting
  heart rate is their mean);
- ``through``: the Kafka position (partition, offset) of the last reading the state holds,
  so that a replay after a crash neither counts a reading twice nor skips one whose effect
  was lost (:func:`processors.dedup.is_repeat`).

Pure data with plain-dict round trips (:meth:`PatientState.to_dict`).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from processors.activity import StepTimeline
from processors.context import SleepTimeline
from processors.detectors.resting_tachycardia import Run
from processors.episodes import Episode
from processors.resting_hr import NightSignal

__all__ = ["HEART_KEEP", "PatientState", "Provisional"]

HEART_KEEP = timedelta(hours=36)
"""How long heart rates are kept for a night's resting heart rate (a session arrives late)."""
DAYS_KEEP = 3


@dataclass(frozen=True, slots=True)
class Provisional:
    """A finding raised before the steps were known, to re-check when they arrive."""

    at: datetime
    channel: str
    metric: str
    value: float
    unit: str
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "channel": self.channel,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "event_id": self.event_id,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Provisional:
        return cls(
            at=datetime.fromisoformat(raw["at"]),
            channel=str(raw["channel"]),
            metric=str(raw["metric"]),
            value=float(raw["value"]),
            unit=str(raw["unit"]),
            event_id=str(raw["event_id"]),
        )


def _episode(raw: Mapping[str, Any] | None) -> Episode | None:
    return None if raw is None else Episode.from_dict(dict(raw))


@dataclass
class PatientState:
    steps: StepTimeline = field(default_factory=StepTimeline)
    sleep: SleepTimeline = field(default_factory=SleepTimeline)
    episode: Episode | None = None
    tachy: Run | None = None
    provisional: dict[str, Provisional] = field(default_factory=dict)
    heart: list[tuple[int, float]] = field(default_factory=list)
    nights: NightSignal = field(default_factory=NightSignal)
    days: dict[str, tuple[float, int]] = field(default_factory=dict)
    # (partition, offset) of the last measurements message whose effect this state holds;
    # set by the processors app, which skips readings up to it (processors.dedup.is_repeat)
    through: tuple[int, int] | None = None

    def remember_heart_rate(self, at: datetime, bpm: float) -> None:
        """Keep a heart rate for the nightly resting heart rate (:data:`HEART_KEEP`)."""
        moment = int(at.timestamp())
        self.heart.append((moment, bpm))
        if len(self.heart) > 1 and self.heart[-2][0] > moment:
            self.heart.sort()
        newest = self.heart[-1][0]
        cut = newest - int(HEART_KEEP.total_seconds())
        if self.heart[0][0] < cut:
            del self.heart[: bisect.bisect_left(self.heart, (cut,))]

    def add_rest_heart_rate(self, day: str, bpm: float) -> tuple[float, int]:
        """Count a heart rate taken at rest on ``day`` (ISO date); the day's mean and count."""
        total, count = self.days.get(day, (0.0, 0))
        total, count = total + bpm, count + 1
        self.days[day] = (total, count)
        for old in sorted(self.days)[:-DAYS_KEEP]:
            del self.days[old]
        return total / count, count

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps.to_dict(),
            "sleep": self.sleep.to_dict(),
            "episode": None if self.episode is None else self.episode.to_dict(),
            "tachy": None if self.tachy is None else self.tachy.to_list(),
            "provisional": {eid: p.to_dict() for eid, p in self.provisional.items()},
            "heart": [[t, v] for t, v in self.heart],
            "nights": self.nights.to_dict(),
            "days": {d: [total, n] for d, (total, n) in self.days.items()},
            "through": None if self.through is None else list(self.through),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PatientState:
        tachy = raw.get("tachy")
        through = raw.get("through")
        return cls(
            steps=StepTimeline.from_dict(raw.get("steps", {})),
            sleep=SleepTimeline.from_dict(raw.get("sleep", {})),
            episode=_episode(raw.get("episode")),
            tachy=None if tachy is None else Run.from_list(tachy),
            provisional={
                eid: Provisional.from_dict(p) for eid, p in raw.get("provisional", {}).items()
            },
            heart=[(int(t), float(v)) for t, v in raw.get("heart", [])],
            nights=NightSignal.from_dict(raw.get("nights", {})),
            days={d: (float(total), int(n)) for d, (total, n) in raw.get("days", {}).items()},
            through=None if through is None else (int(through[0]), int(through[1])),
        )
