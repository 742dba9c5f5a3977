"""Overnight resting heart rate raised night after night (in the spirit of NightSignal).

Wearables report one resting heart rate per night or morning. An infection or another
acute illness raises it by several beats for days, often before symptoms (Alavi et al.,
Nature Medicine 2022, "NightSignal"). A night is *raised* when its value is at least
``max(z * spread, min_delta)`` above the patient's baseline (the baseline before the
night, which does not learn raised nights). ``nights`` consecutive raised nights (each
within ``max_apart`` of the previous reading) give a warning, e.g. ``Resting heart rate 88
/min is 14 /min above this patient's usual 74 /min for the 2nd night running``. One raised
night alone is a bad night's sleep or a glass of wine; two in a row is a pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pghd.contracts import Severity
from processors.baseline import BaselineParams, BaselineState
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["CHANNELS", "DETECTOR", "Overnight", "ordinal", "overnight"]

DETECTOR = "overnight"
#: Channels with one resting reading a night.
CHANNELS = frozenset({"resting_heart_rate"})


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ... ``11th``, ``21st``."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


@dataclass(frozen=True, slots=True)
class Overnight:
    """The finding (if any), the new streak of raised nights, and whether this one is."""

    finding: Finding | None
    streak: int
    raised: bool


def overnight(
    value: float,
    *,
    state: BaselineState | None,
    time: datetime,
    unit: str,
    params: BaselineParams,
    z: float,
    min_delta: float,
    nights: int,
    max_apart: timedelta = timedelta(hours=36),
) -> Overnight:
    """Judge one nightly resting value against ``state`` and its streak."""
    if state is None or not state.is_ready(params):
        return Overnight(None, 0, False)
    above = value - state.mean
    if above < max(z * state.spread, min_delta):
        return Overnight(None, 0, False)
    recent = state.last_time is not None and time - state.last_time <= max_apart
    streak = state.streak + 1 if recent else 1
    if streak < nights:
        return Overnight(None, streak, True)
    shown = display_unit(unit)
    clause = (
        f"{fmt_number(above)} {shown} above this patient's usual {fmt_number(state.mean)}"
        f" {shown} for the {ordinal(streak)} night running"
    )
    finding = Finding(
        detector=DETECTOR,
        severity=Severity.WARNING,
        score=round(above / state.spread, 3),
        clause=clause,
        uses_baseline=True,
    )
    return Overnight(finding, streak, True)
