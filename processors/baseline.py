"""A patient's own normal for one channel in one context: a robust, slowly moving baseline.

Pure state and pure update, no Kafka. During warm-up (the first ``warmup`` readings) the
baseline is the median and the scaled median absolute deviation (MAD) of the readings so
far, so one wild value among them barely moves it. After warm-up it follows the patient
with an exponentially weighted moving average whose update is clipped at ``±clip``
spreads, so a single outlier moves it by at most ``alpha * clip`` spreads. The spread is
floored at the channel's ``ChannelSpec.min_spread``. Callers do not feed readings that a
detector found far from the baseline, nor readings inside an ongoing anomaly (see
:mod:`processors.judge`).

Adaptation is slow in *time*, not in readings: the EWMA weight of a reading is
``min(alpha, max(1 / (n + 1), 1 - exp(-dt / tau)))`` with ``dt`` the time since the
previous reading of the bucket (counted up to ``max_step``) and ``tau`` a week. A watch
that reads every five minutes and a thermometer read twice a day thus both forget over
about a week; the ``1 / (n + 1)`` term makes the first readings after warm-up a plain
running mean, so a fresh baseline settles quickly.

Context buckets. A heart rate asleep and a heart rate sitting at a desk are different
normals (10-20 /min apart), so one baseline per channel mixes two populations and makes
either look abnormal. Every channel therefore keeps one baseline per *context bucket*:
``sleep`` (readings tagged ``sleep``) and ``awake`` (``rest`` or untagged). Readings
taken during ``activity`` are neither judged nor learned for the channels that rise with
exercise (heart and respiratory rate). The awake heart rate also follows the body clock
(several beats lower in the morning than mid-afternoon), which a detector summing small
residuals (CUSUM) would mistake for a shift; it alone is split further into four
six-hour bins of ``effective_time`` in UTC (``awake-00`` ... ``awake-18``). UTC bins do
not know the patient's time zone, but they need not: they only have to cut the patient's
day the same way every day. Only channels read many times a day are binned (a
thermometer read three times a day would need a week of warm-up per bin).

Each state also carries the small memory the detectors need between readings (recent
exceedances, CUSUM sums, streaks, the last value), so one table key per channel and bucket
holds everything. States are stored in a Faust table as plain dicts
(:meth:`BaselineState.to_dict`); keys missing from an older stored dict take defaults.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pghd.contracts import Context

__all__ = [
    "AWAKE",
    "MAD_TO_SIGMA",
    "SLEEP",
    "TIME_BINNED",
    "BaselineParams",
    "BaselineState",
    "bucket_of",
    "update",
]

logger = logging.getLogger(__name__)

#: Scales a median absolute deviation to a normal distribution's standard deviation.
MAD_TO_SIGMA = 1.4826
#: Scales a mean absolute deviation to a normal distribution's standard deviation.
_MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2)

#: Context buckets.
SLEEP = "sleep"
AWAKE = "awake"


#: Channels whose awake baseline is split into time-of-day bins, and the bin width (hours).
TIME_BINNED: dict[str, int] = {"heart_rate": 6}


def bucket_of(context: Context | None, *, channel: str = "", time: datetime | None = None) -> str:
    """The baseline bucket of a reading: ``sleep``, ``awake`` or ``awake-HH`` (UTC bins)."""
    if context is Context.SLEEP:
        return SLEEP
    hours = TIME_BINNED.get(channel)
    if hours is None or time is None:
        return AWAKE
    start = time.astimezone(UTC).hour // hours * hours
    return f"{AWAKE}-{start:02d}"


@dataclass(frozen=True, slots=True)
class BaselineParams:
    """How baselines learn: warm-up length, EWMA weight (at most ``alpha``, forgetting
    over ``tau_days``, a step counted up to ``max_step_hours``) and update clipping."""

    warmup: int = 20
    alpha: float = 0.05
    clip: float = 3.0
    tau_days: float = 7.0
    max_step_hours: float = 6.0

    def __post_init__(self) -> None:
        if self.warmup < 2:
            raise ValueError("warmup must be at least 2 readings")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.clip <= 0:
            raise ValueError("clip must be positive")
        if self.tau_days <= 0 or self.max_step_hours <= 0:
            raise ValueError("tau_days and max_step_hours must be positive")

    def weight(self, n: int, step: timedelta) -> float:
        """EWMA weight of the reading after ``n`` others, ``step`` after the previous one."""
        hours = min(max(step / timedelta(hours=1), 0.0), self.max_step_hours)
        forget = 1 - math.exp(-hours / (24 * self.tau_days))
        return min(self.alpha, max(1 / (n + 1), forget))


@dataclass(frozen=True, slots=True)
class BaselineState:
    """Baseline of one patient's channel in one context bucket, plus detector memory.

    ``n`` counts the readings that shaped it; ``mean`` is its centre (a median during
    warm-up) and ``spread`` its robust scale. ``warm`` holds the warm-up readings and is
    emptied once the baseline is ready. ``last_time`` and ``last_value`` are those of the
    last reading judged in this bucket (learnt or not). Detector memory: ``hits`` the
    last few exceedance flags (1 = beyond the warning threshold), ``cusum_hi`` and
    ``cusum_lo`` the CUSUM sums, ``streak`` consecutive raised nights, ``band_streak``
    consecutive readings in a NEWS2 band scoring 2 or more.
    """

    n: int = 0
    mean: float = 0.0
    spread: float = 0.0
    last_time: datetime | None = None
    warm: tuple[float, ...] = field(default=())
    last_value: float | None = None
    hits: tuple[int, ...] = field(default=())
    cusum_hi: float = 0.0
    cusum_lo: float = 0.0
    streak: int = 0
    band_streak: int = 0

    def is_ready(self, params: BaselineParams) -> bool:
        """Whether enough readings were seen to judge against this baseline."""
        return self.n >= params.warmup

    def band(self, z: float) -> tuple[float, float]:
        """``(mean - z*spread, mean + z*spread)``."""
        return self.mean - z * self.spread, self.mean + z * self.spread

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in the Faust table."""
        return {
            "n": self.n,
            "mean": self.mean,
            "spread": self.spread,
            "last_time": None if self.last_time is None else self.last_time.isoformat(),
            "warm": list(self.warm),
            "last_value": self.last_value,
            "hits": list(self.hits),
            "cusum_hi": self.cusum_hi,
            "cusum_lo": self.cusum_lo,
            "streak": self.streak,
            "band_streak": self.band_streak,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineState:
        """Inverse of :meth:`to_dict` (older dicts without detector memory are accepted)."""
        last = data.get("last_time")
        last_value = data.get("last_value")
        return cls(
            n=int(data["n"]),
            mean=float(data["mean"]),
            spread=float(data["spread"]),
            last_time=None if last is None else datetime.fromisoformat(last),
            warm=tuple(float(v) for v in data.get("warm", ())),
            last_value=None if last_value is None else float(last_value),
            hits=tuple(int(h) for h in data.get("hits", ())),
            cusum_hi=float(data.get("cusum_hi", 0.0)),
            cusum_lo=float(data.get("cusum_lo", 0.0)),
            streak=int(data.get("streak", 0)),
            band_streak=int(data.get("band_streak", 0)),
        )


def _robust(values: tuple[float, ...], min_spread: float) -> tuple[float, float]:
    centre = statistics.median(values)
    mad = statistics.median(abs(v - centre) for v in values)
    return centre, max(MAD_TO_SIGMA * mad, min_spread)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def update(
    state: BaselineState | None,
    value: float,
    *,
    time: datetime,
    params: BaselineParams,
    min_spread: float,
) -> BaselineState:
    """The baseline after learning ``value`` (observed at ``time``); detector memory is kept."""
    state = state or BaselineState()
    last_time = _later(state.last_time, time)
    if state.n < params.warmup:
        warm = (*state.warm, value)
        mean, spread = _robust(warm, min_spread)
        n = state.n + 1
        return replace(
            state,
            n=n,
            mean=mean,
            spread=spread,
            last_time=last_time,
            warm=() if n >= params.warmup else warm,
        )
    step = time - state.last_time if state.last_time is not None else timedelta(0)
    alpha = params.weight(state.n, step)
    limit = params.clip * state.spread
    residual = min(max(value - state.mean, -limit), limit)
    mean = state.mean + alpha * residual
    spread = (1 - alpha) * state.spread + alpha * abs(residual) * _MEAN_ABS_TO_SIGMA
    return replace(
        state,
        n=state.n + 1,
        mean=mean,
        spread=max(spread, min_spread),
        last_time=last_time,
        warm=(),
    )
