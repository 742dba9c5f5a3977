"""NEWS2 single-parameter sub-scores from the catalogue's clinical bands.

Royal College of Physicians NEWS2 (2017): a sub-score of 3 in any one parameter is a red
flag and triggers an urgent review on its own (critical). A sub-score of 2 does not: in
NEWS2 it only adds to the aggregate score, and an aggregate of 1-4 is "low risk". Many
people live in a score-2 band (a systolic of 91-100 mmHg is normal for a small young
woman), so a sub-score of 2 is reported as a warning only when it is *confirmed*: the reading
is also beyond the warning threshold of this patient's own baseline (:mod:`.deviation`)
or, while no baseline is ready yet, it persists (the judge counts consecutive readings
in a band scoring 2 or more; three by default). Once the patient's normal is known, a
score-2 value that is ordinary for them stays ``info`` however often it recurs; a slow
slide into the band is the job of :mod:`.cusum`. Unconfirmed, a score of 2 is ``info``:
shown on the dashboard, never an alert. 0 and 1 are not reported. Bands are defined
on the clinical resolution (whole beats, tenths of a degree); a value between two bands
goes to the nearer one, and a tie to the higher score.

Pulse and respiration rate rise with exercise, so their *high* bands apply only to readings
taken at rest or asleep (the context the device gave, or the one inferred from the steps and
sleep sessions, :mod:`processors.context`): a workout at 150 /min is not a score of 3. Their
low bands (≤40 /min, ≤8 /min) apply whatever the patient was doing: exercise never lowers
them. A high pulse of unknown context is the job of :mod:`.resting_tachycardia`.

SpO2 is scored on scale 1 unless the patient's care plan sets scale 2 (hypercapnic
respiratory failure, :data:`pghd.catalogue.NEWS2_SPO2_SCALE2`, taken on air): 89 % scores 3
on scale 1 and 0 on scale 2.
"""

from __future__ import annotations

import logging
import math

from pghd.catalogue import NEWS2_SPO2_SCALE2, Band, ChannelSpec
from pghd.contracts import Context, Severity
from processors.detectors import Finding, display_unit, fmt_number

__all__ = [
    "AT_REST",
    "DETECTOR",
    "EXERCISE_EXEMPT",
    "band_for",
    "bands_of",
    "describe_band",
    "exempt",
    "news2",
    "news2_score",
]

logger = logging.getLogger(__name__)

DETECTOR = "news2"
#: NEWS2 parameters whose high bands are scored only at rest or asleep.
EXERCISE_EXEMPT = frozenset({"pulse", "respiration_rate"})
#: Contexts in which the high bands of :data:`EXERCISE_EXEMPT` parameters apply.
AT_REST = frozenset({Context.REST, Context.SLEEP})

#: The NEWS2 parameter whose bands depend on the SpO2 scale.
SPO2_PARAMETER = "spo2_scale1"

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
    inside = [b for b in bands if b.low <= value <= b.high]
    if len(inside) == 1:  # the usual case; bands only touch at their ends
        return inside[0]
    return min(bands, key=lambda b: (_distance(value, b), -b.score))


def describe_band(band: Band, unit: str) -> str:
    """``≤91 %``, ``≥131 /min`` or ``111-130 /min`` (with an en dash)."""
    shown = display_unit(unit)
    if math.isinf(band.low):
        return f"≤{fmt_number(band.high)} {shown}"
    if math.isinf(band.high):
        return f"≥{fmt_number(band.low)} {shown}"
    return f"{fmt_number(band.low)}{EN_DASH}{fmt_number(band.high)} {shown}"


def bands_of(spec: ChannelSpec, *, spo2_scale: int = 1) -> tuple[Band, ...]:
    """The NEWS2 bands of a channel: SpO2 on scale 2 when ``spo2_scale`` is 2."""
    if spo2_scale == 2 and spec.news2_parameter == SPO2_PARAMETER:
        return NEWS2_SPO2_SCALE2
    return spec.news2


def exempt(value: float, *, spec: ChannelSpec, context: Context | None) -> bool:
    """Whether ``value`` is above the normal band of a parameter that rises with exercise,
    in a reading not known to be taken at rest or asleep (so it is not scored)."""
    if spec.news2_parameter not in EXERCISE_EXEMPT or context in AT_REST:
        return False
    normal = [b for b in spec.news2 if b.score == 0]
    return bool(normal) and value > normal[0].high


def news2_score(
    value: float, *, spec: ChannelSpec, context: Context | None = None, spo2_scale: int = 1
) -> int:
    """The NEWS2 sub-score of ``value`` (0 when the channel is not scored or exempt)."""
    if not spec.news2 or exempt(value, spec=spec, context=context):
        return 0
    band = band_for(value, bands_of(spec, spo2_scale=spo2_scale))
    return 0 if band is None else band.score


def news2(
    value: float,
    *,
    spec: ChannelSpec,
    unit: str,
    context: Context | None = None,
    confirmed: bool = True,
    spo2_scale: int = 1,
    repeated: bool = True,
) -> Finding | None:
    """A finding when ``value`` is in a NEWS2 band scoring 2 or 3.

    Score 3 is critical; score 2 a warning when ``confirmed``, else ``info``. SpO2 is
    scored on ``spo2_scale`` (the patient's care plan; 1 without one). ``repeated`` False
    (a lone reading of a channel sampled every few minutes, whose single spikes are motion
    artefacts) holds a score 3 *above* the normal band back until the next reading repeats
    it; a score 3 below it (a slow pulse) is critical at once.
    """
    if not spec.news2 or exempt(value, spec=spec, context=context):
        return None
    scale2 = spo2_scale == 2 and spec.news2_parameter == SPO2_PARAMETER
    band = band_for(value, bands_of(spec, spo2_scale=spo2_scale))
    if band is None or band.score not in _SEVERITY:
        return None
    normal = [b for b in spec.news2 if b.score == 0]
    high = bool(normal) and value > normal[0].high
    if band.score == 3 and not repeated and high:
        return None
    severity = _SEVERITY[band.score]
    where = f"{describe_band(band, unit)}{', SpO2 scale 2' if scale2 else ''}"
    clause = f"in the NEWS2 score-{band.score} band ({where})"
    if band.score == 2 and not confirmed:
        severity = Severity.INFO
        clause += " but not far from this patient's usual level"
    return Finding(detector=DETECTOR, severity=severity, score=float(band.score), clause=clause)
