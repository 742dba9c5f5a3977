"""A patient's own normal for one channel: a robust, slowly moving baseline.

Pure state and pure update, no Kafka. During warm-up (the first ``warmup`` readings) the
baseline is the median and the scaled median absolute deviation (MAD) of the readings so
far, so one wild value among them barely moves it. After warm-up it follows the patient
with an exponentially weighted moving average whose update is clipped at ``±clip``
spreads, so a single outlier moves it by at most ``alpha * clip`` spreads. The spread is
floored at the channel's ``ChannelSpec.min_spread``. Callers do not feed readings that a
detector found far from the baseline (see :mod:`processors.judge`).

States are stored in a Faust table as plain dicts (:meth:`BaselineState.to_dict`).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["MAD_TO_SIGMA", "BaselineParams", "BaselineState", "update"]

logger = logging.getLogger(__name__)

#: Scales a median absolute deviation to a normal distribution's standard deviation.
MAD_TO_SIGMA = 1.4826
#: Scales a mean absolute deviation to a normal distribution's standard deviation.
_MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2)


@dataclass(frozen=True, slots=True)
class BaselineParams:
    """How baselines learn: warm-up length, EWMA weight and update clipping."""

    warmup: int = 20
    alpha: float = 0.05
    clip: float = 3.0

    def __post_init__(self) -> None:
        if self.warmup < 2:
            raise ValueError("warmup must be at least 2 readings")
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must be in (0, 1)")
        if self.clip <= 0:
            raise ValueError("clip must be positive")


@dataclass(frozen=True, slots=True)
class BaselineState:
    """Baseline of one patient's channel.

    ``n`` counts the readings that shaped it; ``mean`` is its centre (a median during
    warm-up) and ``spread`` its robust scale. ``warm`` holds the warm-up readings and is
    emptied once the baseline is ready.
    """

    n: int = 0
    mean: float = 0.0
    spread: float = 0.0
    last_time: datetime | None = None
    warm: tuple[float, ...] = field(default=())

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaselineState:
        """Inverse of :meth:`to_dict`."""
        last = data.get("last_time")
        return cls(
            n=int(data["n"]),
            mean=float(data["mean"]),
            spread=float(data["spread"]),
            last_time=None if last is None else datetime.fromisoformat(last),
            warm=tuple(float(v) for v in data.get("warm", ())),
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
    """The baseline after taking ``value`` (observed at ``time``) into account."""
    state = state or BaselineState()
    last_time = _later(state.last_time, time)
    if state.n < params.warmup:
        warm = (*state.warm, value)
        mean, spread = _robust(warm, min_spread)
        n = state.n + 1
        return BaselineState(
            n=n,
            mean=mean,
            spread=spread,
            last_time=last_time,
            warm=() if n >= params.warmup else warm,
        )
    limit = params.clip * state.spread
    residual = min(max(value - state.mean, -limit), limit)
    mean = state.mean + params.alpha * residual
    spread = (1 - params.alpha) * state.spread + params.alpha * abs(residual) * _MEAN_ABS_TO_SIGMA
    return BaselineState(
        n=state.n + 1,
        mean=mean,
        spread=max(spread, min_spread),
        last_time=last_time,
    )
