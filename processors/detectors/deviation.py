"""Departure from the patient's own baseline, as a robust z-score, with persistence.

``z = (value - mean) / spread`` against the context baseline *before* the reading. Only
judged once the baseline is warmed up, and only in the direction that matters for the
channel (``ChannelSpec.direction``: ``high``, ``low`` or ``both``; ``None`` is never
judged).

:func:`deviation` is the single-reading rule (warning at ``z_warning``, critical at
``z_critical``). :func:`assess` adds persistence, which is what the judge uses:

- a *critical* finding needs one reading at least ``z_critical`` (6) spreads off: a value
  that far from this patient's normal is worth a look at once, and noise almost never
  gets there (a normal tail beyond 6 sigma is one in 10^9);
- a *warning* needs ``needed`` (2) of the last ``window`` (3) readings of the same bucket
  beyond ``z_warning`` (4). A single reading at 4-6 spreads is usually a motion artefact
  or a sensor slip; real deterioration persists. Wearables read every few minutes, so
  the delay this costs is one reading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pghd.catalogue import ChannelSpec
from pghd.contracts import Severity
from processors.baseline import BaselineParams, BaselineState
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["DETECTOR", "Assessment", "assess", "counts", "deviation", "robust_z"]

logger = logging.getLogger(__name__)

DETECTOR = "deviation"


def robust_z(value: float, state: BaselineState, spread: float | None = None) -> float:
    """How many spreads ``value`` lies from the baseline centre (signed)."""
    return (value - state.mean) / (spread or state.spread)


def counts(direction: str | None, z: float) -> bool:
    """Whether a departure of sign ``z`` matters for a channel of ``direction``."""
    if direction == "both":
        return True
    if direction == "high":
        return z > 0
    if direction == "low":
        return z < 0
    return False


def _clause(state: BaselineState, z: float, *, critical: bool, unit: str, spread: float) -> str:
    how = "far" if critical else "well"
    side = "above" if z > 0 else "below"
    return (
        f"{how} {side} this patient's usual {fmt_number(state.mean)} {display_unit(unit)}"
        f" (typical spread {fmt_number(spread)})"
    )


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
    """A finding when ``value`` alone is at least ``z_warning`` spreads off the baseline."""
    if spec.direction is None or state is None or not state.is_ready(params):
        return None
    z = robust_z(value, state)
    if not counts(spec.direction, z) or abs(z) < z_warning:
        return None
    critical = abs(z) >= z_critical
    return Finding(
        detector=DETECTOR,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        score=round(abs(z), 3),
        clause=_clause(state, z, critical=critical, unit=unit, spread=state.spread),
        uses_baseline=True,
    )


@dataclass(frozen=True, slots=True)
class Assessment:
    """What :func:`assess` made of one value: the finding (if any) and the memory to keep.

    ``z`` is ``None`` when the value was not judged (no ready baseline, or a channel never
    judged); ``exceeded`` says whether it lies beyond ``z_warning`` in a direction that
    matters; ``hits`` is the updated window of exceedance flags.
    """

    finding: Finding | None
    z: float | None
    exceeded: bool
    hits: tuple[int, ...]


def assess(
    value: float,
    *,
    state: BaselineState | None,
    spec: ChannelSpec,
    unit: str,
    params: BaselineParams,
    z_warning: float,
    z_critical: float,
    needed: int = 2,
    window: int = 3,
    spread: float | None = None,
    critical_needed: int = 1,
) -> Assessment:
    """Judge ``value`` with persistence (see the module docstring).

    ``spread`` overrides the baseline's spread for this one reading (the judge widens it
    after a data gap). ``critical_needed`` > 1 makes a critical finding, too, need that many
    of the last ``window`` readings beyond the warning threshold (a channel sampled every
    few minutes, whose lone spikes are motion artefacts).
    """
    if spec.direction is None or state is None or not state.is_ready(params):
        return Assessment(None, None, False, ())
    scale = spread or state.spread
    z = robust_z(value, state, scale)
    exceeded = counts(spec.direction, z) and abs(z) >= z_warning
    hits = (*state.hits, int(exceeded))[-window:]
    if not exceeded:
        return Assessment(None, z, False, hits)
    critical = abs(z) >= z_critical and sum(hits) >= critical_needed
    if not critical and sum(hits) < needed:
        return Assessment(None, z, True, hits)
    clause = _clause(state, z, critical=critical, unit=unit, spread=scale)
    if not critical:
        clause += f" for {sum(hits)} of the last {len(hits)} readings"
    finding = Finding(
        detector=DETECTOR,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        score=round(abs(z), 3),
        clause=clause,
        uses_baseline=True,
    )
    return Assessment(finding, z, True, hits)
