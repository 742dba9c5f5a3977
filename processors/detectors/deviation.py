"""Departure from the patient's own baseline, as a robust z-score.

``z = (value - mean) / spread`` against the baseline *before* the reading. Only judged once
the baseline is warmed up, and only in the direction that matters for the channel
(``ChannelSpec.direction``: ``high``, ``low`` or ``both``; ``None`` is never judged).
"""

from __future__ import annotations

import logging

from pghd.catalogue import ChannelSpec
from pghd.contracts import Severity
from processors.baseline import BaselineParams, BaselineState
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["DETECTOR", "deviation", "robust_z"]

logger = logging.getLogger(__name__)

DETECTOR = "deviation"


def robust_z(value: float, state: BaselineState) -> float:
    """How many spreads ``value`` lies from the baseline centre (signed)."""
    return (value - state.mean) / state.spread


def _counts(direction: str | None, z: float) -> bool:
    if direction == "both":
        return True
    if direction == "high":
        return z > 0
    if direction == "low":
        return z < 0
    return False


def deviation(
    value: float,
    *,
    state: BaselineState | None,
    spec: ChannelSpec,
    unit: str,
    params: BaselineParams,
    z_warning: float,
    z_critical: float,
) -> Finding | None:
    """A finding when ``value`` is at least ``z_warning`` spreads off the baseline."""
    if spec.direction is None or state is None or not state.is_ready(params):
        return None
    z = robust_z(value, state)
    if not _counts(spec.direction, z) or abs(z) < z_warning:
        return None
    critical = abs(z) >= z_critical
    how = "far" if critical else "well"
    side = "above" if z > 0 else "below"
    shown = display_unit(unit)
    clause = (
        f"{how} {side} this patient's usual {fmt_number(state.mean)} {shown}"
        f" (typical spread {fmt_number(state.spread)})"
    )
    return Finding(
        detector=DETECTOR,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        score=round(abs(z), 3),
        clause=clause,
        uses_baseline=True,
    )
