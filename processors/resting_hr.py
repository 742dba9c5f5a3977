"""Overnight resting heart rate and its two-night rule (NightSignal).

Alavi et al. 2022, "Real-time alerting system for COVID-19 and other stress events using
wearable data" (Nat. Med. 28:175), compute a resting heart rate per night from the heart
rate of the hours 00:00-06:59 (local time) taken while there were no steps, and raise an
alert when two consecutive nights are above the patient's baseline by a margin (their
code: +3 bpm amber, +4 bpm red). They report alerts for 80 % of infections, a median of
3 days before symptoms.

- :func:`nightly_rhr` takes a night's heart-rate samples (local times) with the activity
  inferred for each (:mod:`processors.activity`): only samples at rest or asleep count;
  moving or unknown ones are left out; a night with fewer than ``min_samples`` has no value
  (the watch was off).
- :class:`NightSignal` keeps the recent nights. The baseline is the median of up to
  ``window`` (28) earlier nights that were not elevated themselves (an illness must not
  raise its own baseline; the same rule as the CuSum baseline of Mishra et al. 2020, which
  learns only from days without an alarm), and needs ``min_nights`` of them before it judges.

Pure: no I/O; state as plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import fmean, median
from typing import Any, Literal

from pghd.contracts import Context

__all__ = ["Level", "NightSignal", "NightlyRhr", "nightly_rhr"]

Level = Literal["amber", "red"]
NIGHT_START_HOUR = 0
NIGHT_END_HOUR = 7  # exclusive: 00:00-06:59
RESTING = (Context.REST, Context.SLEEP)


@dataclass(frozen=True)
class NightlyRhr:
    """The resting heart rate of the night that ends on ``night`` (its morning's date)."""

    night: date
    rhr: float
    samples: int


def nightly_rhr(
    samples: Iterable[tuple[datetime, float, Context | None]], *, min_samples: int = 6
) -> dict[date, NightlyRhr]:
    """Mean resting heart rate per night from ``(local time, bpm, activity)`` samples."""
    by_night: dict[date, list[float]] = {}
    for at, bpm, context in samples:
        if context in RESTING and NIGHT_START_HOUR <= at.hour < NIGHT_END_HOUR:
            by_night.setdefault(at.date(), []).append(bpm)
    return {
        night: NightlyRhr(night=night, rhr=fmean(values), samples=len(values))
        for night, values in sorted(by_night.items())
        if len(values) >= min_samples
    }


@dataclass
class NightSignal:
    """One patient's recent nights: resting heart rate and whether each was elevated."""

    nights: dict[date, tuple[float, bool]] = field(default_factory=dict)
    """night -> (resting heart rate, elevated above the baseline by the amber margin)."""

    def baseline(self, before: date, *, window: int = 28) -> tuple[float, int] | None:
        """Median of the last ``window`` nights before ``before`` that were not elevated,
        and how many there were (None: none)."""
        earlier = [
            (night, rhr)
            for night, (rhr, elevated) in sorted(self.nights.items())
            if night < before and not elevated
        ][-window:]
        return (median(r for _, r in earlier), len(earlier)) if earlier else None

    def judge(
        self,
        night: NightlyRhr,
        *,
        amber_bpm: float = 3.0,
        red_bpm: float = 4.0,
        min_nights: int = 14,
        window: int = 28,
    ) -> Level | None:
        """Record ``night`` and say whether it and the night before are both above the
        baseline by ``red_bpm`` (red) or ``amber_bpm`` (amber). A night judged again (a
        late sync changed it) replaces its earlier value."""
        found = self.baseline(night.night, window=window)
        self.nights.pop(night.night, None)
        if found is None or found[1] < min_nights:
            self.nights[night.night] = (night.rhr, False)
            self._prune(night.night, keep=window + 2)
            return None
        base = found[0]
        self.nights[night.night] = (night.rhr, night.rhr >= base + amber_bpm)
        self._prune(night.night, keep=window + 2)
        previous = self.nights.get(night.night - timedelta(days=1))
        if previous is None:
            return None
        pair = min(night.rhr, previous[0])
        if pair >= base + red_bpm:
            return "red"
        if pair >= base + amber_bpm:
            return "amber"
        return None

    def _prune(self, newest: date, *, keep: int) -> None:
        for night in [n for n in self.nights if (newest - n).days >= keep * 2]:
            del self.nights[night]

    def to_dict(self) -> dict[str, Any]:
        return {n.isoformat(): [rhr, up] for n, (rhr, up) in sorted(self.nights.items())}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NightSignal:
        return cls(nights={date.fromisoformat(n): (float(r), bool(u)) for n, (r, u) in raw.items()})
