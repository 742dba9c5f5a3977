"""Blood pressure in the severe-hypertension range (mm[Hg], the canonical unit).

NEWS2 scores only low systolic pressure (and ≥220), so a hypertensive reading needs its own
band. Thresholds follow ESH grade 3 hypertension (systolic ≥180 or diastolic ≥110: warning)
and the hypertensive-crisis range (systolic ≥200 or diastolic ≥120: critical). Per-patient
overrides belong to care plans.
"""

from __future__ import annotations

from pghd.contracts import Severity
from processors.detectors import Finding, display_unit, fmt_number

__all__ = ["DETECTOR", "THRESHOLDS", "hypertension"]

DETECTOR = "hypertension"

# channel key -> (warning at or above, critical at or above)
THRESHOLDS: dict[str, tuple[float, float]] = {
    "blood_pressure.systolic": (180.0, 200.0),
    "blood_pressure.diastolic": (110.0, 120.0),
}

_SCORE = {Severity.CRITICAL: 3.0, Severity.WARNING: 2.0}


def hypertension(value: float, *, channel: str, unit: str) -> Finding | None:
    """A finding for a severely raised systolic or diastolic pressure, else ``None``."""
    limits = THRESHOLDS.get(channel)
    if limits is None:
        return None
    warning, critical = limits
    shown = display_unit(unit)
    if value >= critical:
        severity, clause = Severity.CRITICAL, f"at or above {fmt_number(critical)} {shown}"
        clause += " (hypertensive crisis range)"
    elif value >= warning:
        severity, clause = Severity.WARNING, f"at or above {fmt_number(warning)} {shown}"
        clause += " (severe hypertension)"
    else:
        return None
    return Finding(detector=DETECTOR, severity=severity, score=_SCORE[severity], clause=clause)
