"""NEWS2 single-parameter sub-scores from the catalogue's clinical bands.

Royal College of Physicians NEWS2 (2017): a sub-score of 3 in any one parameter is a red
flag (critical); 2 is a warning; 0 and 1 are not reported on their own. Bands are defined
on the clinical resolution (whole beats, tenths of a degree); a value between two bands
goes to the nearer one, and a tie to the higher score. Pulse is not scored during activity:
exercise is not tachycardia.
"""

from __future__ import annotations

import logging
import math

from pghd.catalogue import Band, ChannelSpec
from pghd.contracts import Context, Severity
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["DETECTOR", "EXERCISE_EXEMPT", "band_for", "describe_band", "news2"]

logger = logging.getLogger(__name__)

DETECTOR = "news2"
#: NEWS2 parameters not scored when the reading was taken during activity.
EXERCISE_EXEMPT = frozenset({"pulse"})

EN_DASH = "\u2013"
_SEVERITY = {3: Severity.CRITICAL, 2: Severity.WARNING}


def _distance(value: float, band: Band) -> float:
    if value < band.low:
        return band.low - value
    if value > band.high:
        return value - band.high
    return 0.0


def band_for(value: float, bands: tuple[Band, ...]) -> Band | None:
    """The band ``value`` falls in (nearest band for values between two), or ``None``."""
    if not bands or math.isnan(value):
        return None
    return min(bands, key=lambda b: (_distance(value, b), -b.score))


def describe_band(band: Band, unit: str) -> str:
    """``≤91 %``, ``≥131 /min`` or ``111-130 /min`` (with an en dash)."""
    shown = display_unit(unit)
    if math.isinf(band.low):
        return f"≤{fmt_number(band.high)} {shown}"
    if math.isinf(band.high):
        return f"≥{fmt_number(band.low)} {shown}"
    return f"{fmt_number(band.low)}{EN_DASH}{fmt_number(band.high)} {shown}"


def news2(
    value: float, *, spec: ChannelSpec, unit: str, context: Context | None = None
) -> Finding | None:
    """A finding when ``value`` is in a NEWS2 band scoring 2 (warning) or 3 (critical)."""
    if not spec.news2:
        return None
    if context is Context.ACTIVITY and spec.news2_parameter in EXERCISE_EXEMPT:
        return None
    band = band_for(value, spec.news2)
    if band is None or band.score not in _SEVERITY:
        return None
    return Finding(
        detector=DETECTOR,
        severity=_SEVERITY[band.score],
        score=float(band.score),
        clause=f"in the NEWS2 score-{band.score} band ({describe_band(band, unit)})",
    )
