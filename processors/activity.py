"""A patient's activity, inferred from the step counts devices send beside heart rate.

Devices deliver steps as counts per interval (Fitbit intraday 1/5/15-minute buckets, Garmin
15-minute epochs, Withings slices, Apple and Open mHealth samples with a start and an end),
separately from heart rate, often late (a phone syncs hours afterwards) and out of order.
:class:`StepTimeline` keeps one patient's steps per minute and answers, for any instant,
how still the patient was before it (:meth:`StepTimeline.state_at`):

- **Per minute, per device.** An interval's count is spread evenly over the minutes it
  covers (by overlap, so a 15-minute bucket gives each minute a fifteenth). A device that
  sends an interval with the same start again overwrites it (a re-sync is not more steps);
  several short samples within one minute add up. Two devices
  counting the same walk (a phone in the pocket and a watch) are not added up: a minute's
  steps are the largest count any device gave it.
- **Known up to a watermark.** Apple Health and many apps send step samples only when there
  were steps; a minute with no sample is a minute without steps *if* the device has reported
  a later interval (its watermark, the latest interval end it sent). After every device's
  watermark nothing is known: the state is ``None`` (unknown), never assumed to be rest,
  and a reading judged then may be judged again when the steps arrive.
- **At rest** (:attr:`Context.REST`) means no steps in the trailing ``rest_window`` (12
  minutes by default: the resting heart-rate definition of Mishra et al. 2020, "Pre-symptomatic
  detection of COVID-19 from smartwatch data", Nat. Biomed. Eng. 4:1208, as implemented in
  the authors' code: heart rate with zero steps in that minute and the 11 before it). Any step
  in it makes the patient :attr:`Context.ACTIVITY` (not settled), with the cadence (steps
  per minute over the last ``cadence_window``) for judging heart rate against effort.
- **Known from the first interval.** Before a device's first interval nothing is known
  either: ``still_for`` counts back at most to the earliest interval any device sent, so a
  patient whose steps began 10 minutes ago has been still for at most 10 minutes.
- **Short intervals only.** An interval longer than :data:`MAX_SPAN` (a daily total, an
  hourly summary) says nothing about which minutes were still: it is not recorded.
- **Bounded.** Minutes older than ``keep`` before the newest known minute are dropped
  (late batches older than that cannot change a judgement any more).

Pure: no I/O, state in and out as plain dicts (:meth:`StepTimeline.to_dict`).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pghd.contracts import Context

__all__ = ["ActivityState", "StepInterval", "StepTimeline"]

MINUTE_S = 60
REST_WINDOW = timedelta(minutes=12)
CADENCE_WINDOW = timedelta(minutes=5)
KEEP = timedelta(hours=36)
#: Longest step interval that tells which minutes had steps (longer ones are not recorded).
MAX_SPAN = timedelta(hours=1)
_MAX_SPAN_S = int(MAX_SPAN.total_seconds())
#: How far the keep cut-off moves before intervals behind it are dropped (at most this much
#: more than ``KEEP`` is held; nothing that old changes a judgement).
PRUNE_EVERY_S = 3600


@dataclass(frozen=True)
class StepInterval:
    """``count`` steps taken in ``[start, end)`` as counted by ``device``."""

    start: datetime
    end: datetime
    count: float
    device: str = ""


@dataclass(frozen=True)
class ActivityState:
    """How still the patient was before an instant (see :meth:`StepTimeline.state_at`)."""

    context: Context | None
    """REST (no steps for the whole rest window), ACTIVITY, or None: not known (yet)."""
    cadence: float | None
    """Steps per minute over the cadence window before the instant (None: unknown)."""
    still_for: timedelta | None
    """Time since the last minute with steps, as far as known (None: unknown)."""


@dataclass
class StepTimeline:
    """One patient's step intervals per device, with each device's watermark."""

    intervals: dict[str, dict[int, tuple[int, float]]] = field(default_factory=dict)
    """device -> interval start (epoch s) -> (end (epoch s), count); a repeat overwrites."""
    watermark: dict[str, int] = field(default_factory=dict)
    """device -> the end (epoch s) of the latest interval it reported."""
    first: dict[str, int] = field(default_factory=dict)
    """device -> the start (epoch s) of the earliest interval it reported."""
    _starts: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)
    """device -> its interval starts, sorted (a cache, rebuilt when an interval is added)."""
    _moving: dict[str, list[int]] = field(default_factory=dict, repr=False, compare=False)
    """device -> the starts of its intervals with steps, sorted (a cache like ``_starts``):
    a still night is hundreds of zero-step minutes the search for the last step skips."""
    _longest: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    """device -> the longest interval (s) it reported (a cache like ``_starts``): how far
    before a window an interval can start and still reach into it."""
    _pruned_to: int = field(default=0, repr=False, compare=False)
    """The cut-off (epoch s) of the last prune: the next one waits until it moved on by
    :data:`PRUNE_EVERY_S` (a prune scans every interval)."""

    def add(self, interval: StepInterval) -> bool:
        """Record one interval (in any order; the same start again overwrites); False when
        it is longer than :data:`MAX_SPAN` and so not recorded."""
        start = int(interval.start.timestamp())
        end = max(int(interval.end.timestamp()), start + 1)
        if end - start > _MAX_SPAN_S:
            return False
        device = interval.device
        spans = self.intervals.setdefault(device, {})
        starts = self._starts.get(device)
        if starts is not None:
            before = spans.get(start)
            if before is None:
                bisect.insort(starts, start)
            moving = self._moving[device]
            if interval.count > 0 and (before is None or before[1] <= 0):
                bisect.insort(moving, start)
            elif interval.count <= 0 and before is not None and before[1] > 0:
                moving.remove(start)
            self._longest[device] = max(self._longest[device], end - start)
        spans[start] = (end, interval.count)
        self.watermark[device] = max(self.watermark.get(device, end), end)
        self.first[device] = min(self.first.get(device, start), start)
        self._prune()
        return True

    def known_from(self) -> int | None:
        """The start (epoch s) of the earliest interval of any device (None: no steps)."""
        return min(self.first.values()) if self.first else None

    def known_until(self) -> datetime | None:
        """The end of what any device has reported (None: no steps at all yet)."""
        return datetime.fromtimestamp(max(self.watermark.values()), UTC) if self.watermark else None

    def _per_minute(self, first: int, last: int) -> list[float]:
        """Steps in each minute of ``[first, last)``: the largest count of any device, each
        device's intervals spread over the minutes they overlap."""
        lo_s, hi_s = first * MINUTE_S, last * MINUTE_S
        best: list[float] | None = None
        for device, spans in self.intervals.items():
            mine = [0.0] * (last - first)
            starts, _, longest = self._index(device)
            lo_i = bisect.bisect_left(starts, lo_s - longest)
            hi_i = bisect.bisect_left(starts, hi_s)
            for start in starts[lo_i:hi_i]:
                end, count = spans[start]
                if end <= lo_s or count <= 0:
                    continue
                lo_m = (start if start > lo_s else lo_s) // MINUTE_S
                hi_m = ((end if end < hi_s else hi_s) - 1) // MINUTE_S
                if lo_m == hi_m:  # inside one minute: the usual 1-minute bucket
                    mine[lo_m - first] += (
                        count
                        * ((end if end < hi_s else hi_s) - (start if start > lo_s else lo_s))
                        / (end - start)
                    )
                    continue
                rate = count / (end - start)
                for minute in range(lo_m, hi_m + 1):
                    m_lo, m_hi = minute * MINUTE_S, (minute + 1) * MINUTE_S
                    mine[minute - first] += rate * (min(end, m_hi) - max(start, m_lo))
            if best is None:
                best = mine
            else:
                best = [a if a >= b else b for a, b in zip(best, mine, strict=True)]
        return best if best is not None else [0.0] * (last - first)

    def state_at(
        self,
        at: datetime,
        *,
        rest_window: timedelta = REST_WINDOW,
        cadence_window: timedelta = CADENCE_WINDOW,
        look_back: timedelta = timedelta(hours=2),
    ) -> ActivityState:
        """Activity before ``at`` (the minute of ``at`` included); ``still_for`` is measured
        up to ``look_back`` (longer stillness reads as ``look_back``)."""
        end = int(at.timestamp()) // MINUTE_S + 1
        known = max(self.watermark.values(), default=None)
        if known is None or known < end * MINUTE_S:
            return ActivityState(context=None, cadence=None, still_for=None)
        rest_n = max(1, int(rest_window.total_seconds()) // MINUTE_S)
        cadence_n = max(1, int(cadence_window.total_seconds()) // MINUTE_S)
        span = max(rest_n, cadence_n, int(look_back.total_seconds()) // MINUTE_S)
        minutes = self._per_minute(end - max(rest_n, cadence_n), end)
        still = span
        for i in range(len(minutes) - 1, -1, -1):
            if minutes[i] > 0:
                still = len(minutes) - 1 - i
                break
        else:  # still for the whole short window: when did the last step fall?
            moved = self._last_moving_minute(end - span, end - len(minutes))
            if moved is not None:
                still = end - 1 - moved
        since = self.known_from()
        if since is not None:  # nothing is known before the first interval
            still = max(0, min(still, end - since // MINUTE_S))
        settled = sum(minutes[-rest_n:]) == 0 and still >= rest_n
        return ActivityState(
            context=Context.REST if settled else Context.ACTIVITY,
            cadence=sum(minutes[-cadence_n:]) / cadence_n,
            still_for=timedelta(minutes=still),
        )

    def _last_moving_minute(self, first: int, last: int) -> int | None:
        """The latest minute in ``[first, last)`` in which any device counted steps."""
        lo_s, hi_s = first * MINUTE_S, last * MINUTE_S
        found: int | None = None
        for device, spans in self.intervals.items():
            _, starts, longest = self._index(device)  # only intervals with steps
            lo_i = bisect.bisect_left(starts, lo_s - longest)
            for index in range(bisect.bisect_left(starts, hi_s) - 1, lo_i - 1, -1):
                start = starts[index]
                end = spans[start][0]
                if end <= lo_s:
                    continue
                minute = (min(end, hi_s) - 1) // MINUTE_S
                if found is None or minute > found:
                    found = minute
                # starts only fall from here; an interval that starts before the latest
                # moving minute found can still end after it (they overlap), so keep going
                # until the starts are a whole span behind it
                if start < found * MINUTE_S - longest:
                    break
        return found

    def _index(self, device: str) -> tuple[list[int], list[int], int]:
        """``device``'s sorted starts, sorted starts with steps, and longest interval (s),
        rebuilt from its intervals when a prune dropped them."""
        starts = self._starts.get(device)
        if starts is None:
            spans = self.intervals[device]
            starts = self._starts[device] = sorted(spans)
            self._moving[device] = [s for s in starts if spans[s][1] > 0]
            self._longest[device] = max((e - s for s, (e, _) in spans.items()), default=0)
        return starts, self._moving[device], self._longest[device]

    def steps_between(self, lo: datetime, hi: datetime) -> bool | None:
        """Whether any device counted steps in ``[lo, hi)`` as far as known (None: nothing
        in it is known yet, or it lies before the first interval)."""
        known = max(self.watermark.values(), default=None)
        since = self.known_from()
        if known is None or since is None:
            return None
        first = max(int(lo.timestamp()), since) // MINUTE_S
        last = min(int(hi.timestamp()), known) // MINUTE_S
        if last <= first:
            return None
        return any(steps > 0 for steps in self._per_minute(first, last))

    def _prune(self) -> None:
        oldest = max(self.watermark.values()) - int(KEEP.total_seconds())
        if oldest < self._pruned_to + PRUNE_EVERY_S:
            return
        self._pruned_to = oldest
        for device, spans in self.intervals.items():
            stale = [s for s, (end, _) in spans.items() if end < oldest]
            for start in stale:
                del spans[start]
            if stale:
                self._starts.pop(device, None)  # and so the other caches are rebuilt

    def to_dict(self) -> dict[str, Any]:
        return {
            "intervals": {
                d: [[s, e, c] for s, (e, c) in sorted(spans.items())]
                for d, spans in self.intervals.items()
            },
            "watermark": dict(self.watermark),
            "first": dict(self.first),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StepTimeline:
        return cls(
            intervals={
                d: {int(s): (int(e), float(c)) for s, e, c in spans}
                for d, spans in raw.get("intervals", {}).items()
            },
            watermark={d: int(w) for d, w in raw.get("watermark", {}).items()},
            first={d: int(f) for d, f in raw.get("first", {}).items()},
        )
