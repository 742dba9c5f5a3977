"""Overnight resting heart rate and its two-night rule (NightSignal).

Alavi et al. 2022, "Real-time alerting system for COVID-19 and other stress events using
wearable data" (Nat. Med. 28:175), compute a resting heart rate per night from the heart
rate of the night hours (00:00-06:59 local time) taken while there were no steps, and raise
an alert when two consecutive nights are above the patient's baseline by a margin (their
code: +3 bpm amber, +4 bpm red). They report alerts for 80 % of infections, a median of
3 days before symptoms. Here the night is the patient's own sleep session, where one is
known (:func:`processors.judging` computes a night's resting heart rate from the heart rates
inside it without steps, and needs 6 of them), which needs no time zone.

- :class:`NightlyRhr` is one night's value.
- :class:`NightSignal` keeps the recent nights. The baseline is the median of up to
  ``window`` (28) earlier nights that were not elevated themselves (an illness must not
  raise its own baseline; the same rule as the CuSum baseline of Mishra et al. 2020, which
  learns only from days without an alarm), and needs ``min_nights`` of them before it judges.

Pure: no I/O; state as plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from statistics import median
from typing import Any, Literal

__all__ = ["Level", "NightSignal", "NightlyRhr"]

Level = Literal["amber", "red"]


@dataclass(frozen=True)
class NightlyRhr:
    """The resting heart rate of the night that ends on ``night`` (its morning's date)."""

    night: date
    rhr: float
    samples: int


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
