"""Blood glucose outside fixed clinical thresholds (mg/dL, the canonical unit).

Hypoglycaemia levels follow the ADA/International Hypoglycaemia Study Group: below
70 mg/dL is level 1 (warning), below 54 mg/dL level 2 (critical). Hyperglycaemia: above
250 mg/dL is a warning, above 300 mg/dL critical.

Rate of change (:func:`glucose_fall`) matters where a meter or CGM reads often: a fall of
at least ``FALL_RATE`` (2 mg/dL a minute, the "rapidly falling" arrow of CGMs) between
two readings at most ``FALL_WITHIN`` (1 h) apart, ending below ``FALL_BELOW``
(100 mg/dL), is a warning: hypoglycaemia is minutes away. Readings hours apart (meals)
are never compared.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pghd.catalogue import Metric
from pghd.contracts import Severity
from processors.detectors import Finding, display_unit, fmt_number

__all__ = [
    "DETECTOR",
    "HYPER_CRITICAL",
    "HYPER_WARNING",
    "HYPO_CRITICAL",
    "HYPO_WARNING",
    "glucose_fall",
    "glycaemia",
]

logger = logging.getLogger(__name__)

DETECTOR = "glycaemia"

HYPO_CRITICAL = 54.0
HYPO_WARNING = 70.0
HYPER_WARNING = 250.0
HYPER_CRITICAL = 300.0
FALL_RATE = 2.0
FALL_WITHIN = timedelta(hours=1)
FALL_BELOW = 100.0

_SCORE = {Severity.CRITICAL: 3.0, Severity.WARNING: 2.0}


def _finding(severity: Severity, clause: str) -> Finding:
    return Finding(detector=DETECTOR, severity=severity, score=_SCORE[severity], clause=clause)


def glycaemia(value: float, *, metric: Metric, unit: str) -> Finding | None:
    """A finding for hypo- or hyperglycaemia; ``None`` for other metrics or normal values."""
    if metric is not Metric.BLOOD_GLUCOSE:
        return None
    shown = display_unit(unit)
    if value < HYPO_CRITICAL:
        return _finding(
            Severity.CRITICAL,
            f"below {fmt_number(HYPO_CRITICAL)} {shown} (level-2 hypoglycaemia)",
        )
    if value < HYPO_WARNING:
        return _finding(
            Severity.WARNING, f"below {fmt_number(HYPO_WARNING)} {shown} (hypoglycaemia)"
        )
    if value > HYPER_CRITICAL:
        return _finding(
            Severity.CRITICAL,
            f"above {fmt_number(HYPER_CRITICAL)} {shown} (severe hyperglycaemia)",
        )
    if value > HYPER_WARNING:
        return _finding(
            Severity.WARNING, f"above {fmt_number(HYPER_WARNING)} {shown} (hyperglycaemia)"
        )
    return None


def glucose_fall(
    value: float,
    *,
    last_value: float | None,
    last_time: datetime | None,
    time: datetime,
    unit: str,
) -> Finding | None:
    """A warning when glucose falls fast towards hypoglycaemia (see the module docstring)."""
    if last_value is None or last_time is None or value >= FALL_BELOW:
        return None
    minutes = (time - last_time) / timedelta(minutes=1)
    if not 0 < minutes <= FALL_WITHIN / timedelta(minutes=1):
        return None
    rate = (last_value - value) / minutes
    if rate < FALL_RATE:
        return None
    return _finding(
        Severity.WARNING,
        f"falling fast ({fmt_number(rate)} {display_unit(unit)} a minute"
        f" from {fmt_number(last_value)})",
    )
