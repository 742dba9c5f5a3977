"""Sustained shift: a tabular CUSUM on the standardised residual against the baseline.

A slow rise (a temperature creeping up over a week, a resting pulse a few beats higher
every day) never produces one reading far enough off to trip :mod:`.deviation`. Page's
CUSUM accumulates the standardised residual ``z`` (clipped at ``±clip`` so that a single
spike, which :mod:`.deviation` judges, cannot trip it alone) minus an allowance ``k``::

    hi = max(0, hi + z - k)        lo = max(0, lo - z - k)

and signals when a sum reaches ``h``. With ``k = 1`` (half of a 2-spread shift) and
``h = 8`` an in-control stream practically never signals (the average run length is
millions of readings) while a shift of 2 spreads is found in about 8 readings and one of 3
spreads in 4. Sums are capped at ``h`` so that a signal clears with the first normal
reading once the shift is over (a thermometer read twice a day must not keep alarming for
a week after a fever). Only the side(s) that matter for the channel
(``ChannelSpec.direction``) are judged. The judge stops the baseline learning while a
sum is at ``h``, so a slow rise cannot be absorbed into the patient's "normal" while it is
being signalled.
"""

from __future__ import annotations

from dataclasses import dataclass

from pghd.catalogue import ChannelSpec
from pghd.contracts import Severity
from processors.baseline import BaselineState
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["DETECTOR", "Cusum", "cusum"]

DETECTOR = "cusum"


@dataclass(frozen=True, slots=True)
class Cusum:
    """The finding (if any) and the new sums."""

    finding: Finding | None
    hi: float
    lo: float

    def signalling(self) -> bool:
        """Whether a sum reached its limit (learning should pause)."""
        return self.finding is not None


def cusum(
    z: float,
    *,
    state: BaselineState,
    spec: ChannelSpec,
    unit: str,
    k: float,
    h: float,
    clip: float = 4.0,
) -> Cusum:
    """Step the CUSUM of ``state`` with the standardised residual ``z``."""
    z = max(-clip, min(clip, z))
    hi = min(h, max(0.0, state.cusum_hi + z - k)) if spec.direction in ("high", "both") else 0.0
    lo = min(h, max(0.0, state.cusum_lo - z - k)) if spec.direction in ("low", "both") else 0.0
    top = max(hi, lo)
    if top < h:
        return Cusum(None, hi, lo)
    side = "above" if hi >= lo else "below"
    clause = (
        f"part of a sustained shift {side} this patient's usual"
        f" {fmt_number(state.mean)} {display_unit(unit)} over recent readings"
    )
    finding = Finding(
        detector=DETECTOR,
        severity=Severity.WARNING,
        score=round(top / h, 3),
        clause=clause,
        uses_baseline=True,
    )
    return Cusum(finding, hi, lo)
