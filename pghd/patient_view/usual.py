"""A patient's usual ranges, and which of them a reading is compared with. Pure.

**The ranges.** The processors keep one baseline per channel per *context bucket*
(:func:`processors.baseline.bucket_of`): ``sleep`` for a reading taken asleep, otherwise
``awake``, and for the heart rate ``awake-00`` ... ``awake-18`` (six-hour bins of the
reading's UTC time). Whenever a bucket's baseline learns a reading they write a
``baselines`` point (:mod:`processors.judge`) at the reading's time: its centre (``mean``),
its robust spread, and ``low``/``high`` = centre ∓ ``z_warning`` spreads, the band outside
which the deviation detector calls a reading far from the patient's usual. The newest point
of each bucket is that bucket's usual range (:func:`usual_ranges`). The stored band uses the
service-wide ``z_warning``; where the patient's care plan sets its own ``z_warning`` for the
channel (:meth:`pghd.care_plans.CarePlanSettings.detector_override`), which is what the
detector then uses, the band is rebuilt as centre ∓ that z times the spread.

**Which range a reading is compared with** (:meth:`UsualRanges.for_reading`). A stored
reading (``vitals``) carries no context: what the patient was doing is inferred by the
processors and not kept with it. So:

1. when the processors learned that very reading (a ``baselines`` point of its channel at
   its time), it is the range of that point's bucket;
2. otherwise, for a channel the processors judge whatever the context, the range of the
   bucket a reading at that time falls in when its context is not known, as the processors
   bucket it (``bucket_of(None, channel, time)``: ``awake``, or ``awake-HH``): a reading
   taken asleep is then compared with the awake range, as the processors judge one they
   cannot tell was taken asleep (before that night's sleep session reaches them);
3. a channel the processors judge only at rest or asleep (heart and respiratory rate, which
   rise with exercise: a reading during activity is neither judged nor learned) has no
   usual range, since the view cannot tell rest from activity; nor has a channel never
   judged against a baseline (steps, weight).

**Findings** (:meth:`UsualRanges.for_finding`): a finding was judged in some bucket the view
cannot name either; it is described against every bucket it may have been judged in that
has a range: the awake bucket of its time, and ``sleep``.

:func:`processors_bucket` mirrors the processors' ``bucket_of`` (and :data:`TIME_BINNED`
theirs); the tests hold the two together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pghd.care_plans import CarePlan
from pghd.catalogue import CATALOGUE, ChannelSpec
from pghd.contracts import channel_key
from pghd.patient_view.models import StoredBaseline, UsualRange

__all__ = [
    "AWAKE",
    "SLEEP",
    "TIME_BINNED",
    "UsualRanges",
    "judged",
    "judged_without_context",
    "plan_z",
    "processors_bucket",
    "usual_ranges",
    "window_bucket",
]

SLEEP = "sleep"
AWAKE = "awake"
TIME_BINNED: dict[str, int] = {"heart_rate": 6}
"""Channels whose awake baseline is kept per UTC time-of-day bin, and the bin width (hours):
:data:`processors.baseline.TIME_BINNED`."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPECS: dict[str, ChannelSpec] = {
    channel_key(metric, channel.name): channel
    for metric, spec in CATALOGUE.items()
    for channel in spec.channels
}


def processors_bucket(channel: str, at: datetime, *, asleep: bool = False) -> str:
    """The baseline bucket the processors put a reading of ``channel`` at ``at`` in:
    ``sleep`` when taken asleep, else (at rest, or context unknown) ``awake`` or, for a
    time-binned channel, ``awake-HH`` (the UTC bin of ``at``)."""
    if asleep:
        return SLEEP
    hours = TIME_BINNED.get(channel)
    if hours is None:
        return AWAKE
    return f"{AWAKE}-{at.astimezone(UTC).hour // hours * hours:02d}"


def judged(channel: str) -> bool:
    """Whether the processors judge ``channel`` against a baseline at all."""
    spec = _SPECS.get(channel)
    return spec is not None and spec.direction is not None


def judged_without_context(channel: str) -> bool:
    """Whether the processors judge a reading of ``channel`` whose context is not known
    (heart and respiratory rate only at rest or asleep: they rise with exercise)."""
    return judged(channel) and not _SPECS[channel].exercise_sensitive


def window_bucket(channel: str, at: datetime, every: timedelta | None) -> str | None:
    """The bucket every reading of ``channel`` in the window at ``at`` (a reading alone
    when ``every`` is None; windows are aligned on the epoch, as InfluxDB's) falls in when
    its context is not known; None when the processors would not judge such a reading, or
    the window spans several buckets."""
    if not judged_without_context(channel):
        return None
    bucket = processors_bucket(channel, at)
    if every is not None:
        start = _EPOCH + (at - _EPOCH) // every * every
        last = start + every - timedelta(microseconds=1)
        if processors_bucket(channel, last) != bucket:
            return None
    return bucket


def plan_z(plan: CarePlan | None, channel: str) -> float | None:
    """The care plan's ``z_warning`` for ``channel``, if it sets one."""
    override = None if plan is None else plan.detector_override(channel)
    return None if override is None else override.z_warning


@dataclass(frozen=True, slots=True)
class UsualRanges:
    """A patient's usual ranges: channel -> context bucket -> range."""

    by_channel: Mapping[str, Mapping[str, UsualRange]] = field(default_factory=dict)

    def of(self, channel: str, context: str) -> UsualRange | None:
        """The range of ``channel`` in ``context``, if it has one."""
        return self.by_channel.get(channel, {}).get(context)

    def every(self, channel: str) -> list[UsualRange]:
        """Every context's range of ``channel``, by context (awake..., sleep)."""
        bands = self.by_channel.get(channel, {})
        return [bands[context] for context in sorted(bands)]

    def for_reading(self, channel: str, at: datetime) -> UsualRange | None:
        """The range a reading of ``channel`` taken at ``at`` is compared with (see the
        module docstring); None when it cannot be told or there is none."""
        learned = [b for b in self.every(channel) if b.updated_at == at]
        if len(learned) == 1:
            return learned[0]
        if not judged_without_context(channel):
            return None
        return self.of(channel, processors_bucket(channel, at))

    def for_finding(self, channel: str, at: datetime) -> list[UsualRange]:
        """The ranges a finding on ``channel`` at ``at`` may have been judged against: the
        awake bucket of its time and ``sleep``, those that exist."""
        if not judged(channel):
            return []
        contexts = dict.fromkeys((processors_bucket(channel, at), SLEEP))
        return [band for c in contexts if (band := self.of(channel, c)) is not None]

    def widest_spread(self, channel: str) -> float | None:
        """The largest spread among the channel's ranges; None without any."""
        return max((b.spread for b in self.every(channel)), default=None)


def usual_ranges(
    baselines: Iterable[StoredBaseline], *, plan: CarePlan | None = None
) -> UsualRanges:
    """The newest baseline of each channel and context as its usual range, its band
    rebuilt with the care ``plan``'s ``z_warning`` where that sets one for the channel."""
    newest: dict[tuple[str, str], StoredBaseline] = {}
    for point in baselines:
        key = (point.channel, point.context)
        if key not in newest or point.at > newest[key].at:
            newest[key] = point
    by_channel: dict[str, dict[str, UsualRange]] = {}
    for (channel, context), p in sorted(newest.items()):
        z = plan_z(plan, channel)
        low, high = (p.low, p.high) if z is None else (p.mean - z * p.spread, p.mean + z * p.spread)
        by_channel.setdefault(channel, {})[context] = UsualRange(
            centre=p.mean,
            spread=p.spread,
            low=low,
            high=high,
            context=context,
            readings=p.n,
            updated_at=p.at,
        )
    return UsualRanges(by_channel)
