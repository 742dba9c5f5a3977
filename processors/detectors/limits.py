"""Care-plan limits applied to the clinical-threshold findings on one channel value.

A care plan (:class:`pghd.care_plans.CarePlan`) may give a channel the range its care team
accepts for this patient (``limits``). :func:`apply_limits` takes the findings of the
clinical-threshold detectors (:mod:`.news2`, :mod:`.glycaemia`, :mod:`.hypertension`) and

- inside the limits, turns their *warnings* into ``info`` (still on the dashboard, never a
  page): a known resting tachycardia of 115 /min is not a NEWS2 score-2 warning;
- outside the limits, adds a ``care_plan`` warning when no clinical threshold already warns:
  a patient on tight glucose targets is flagged at 75 mg/dL, which the standard levels
  accept.

*Critical* findings are never quieted by a plan: a NEWS2 score 3, level-2 hypoglycaemia or
a hypertensive crisis stays critical whatever the limits say. While the patient exercises,
heart and respiratory rate outside the limits are not flagged (exercise is not
tachycardia), as NEWS2 does not score pulse then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from pghd.care_plans import Limits
from pghd.contracts import Severity
from processors.detectors import Finding, display_unit, fmt_number, glycaemia, hypertension, news2

__all__ = ["CLINICAL", "DETECTOR", "apply_limits", "describe_limits"]

logger = logging.getLogger(__name__)

DETECTOR = "care_plan"
#: Detectors whose warnings a care plan's limits can quiet.
CLINICAL = frozenset({news2.DETECTOR, glycaemia.DETECTOR, hypertension.DETECTOR})


def describe_limits(limits: Limits, unit: str) -> str:
    """``≤120 /min``, ``≥80 mg/dL`` or ``80-180 mg/dL`` (with an en dash)."""
    shown = display_unit(unit)
    if limits.low is None:
        return f"≤{fmt_number(limits.high or 0.0)} {shown}"
    if limits.high is None:
        return f"≥{fmt_number(limits.low)} {shown}"
    return f"{fmt_number(limits.low)}{news2.EN_DASH}{fmt_number(limits.high)} {shown}"


def apply_limits(
    findings: Sequence[Finding],
    value: float,
    *,
    limits: Limits | None,
    unit: str,
    exercising: bool = False,
) -> list[Finding]:
    """``findings`` on ``value`` as the care plan's ``limits`` of its channel make them."""
    if limits is None:
        return list(findings)
    if limits.contains(value):
        within = f" but within this patient's care-plan limits ({describe_limits(limits, unit)})"
        return [
            replace(f, severity=Severity.INFO, clause=f.clause + within)
            if f.detector in CLINICAL and f.severity is Severity.WARNING
            else f
            for f in findings
        ]
    warned = any(
        f.detector in CLINICAL and f.severity.rank >= Severity.WARNING.rank for f in findings
    )
    if warned or exercising:
        return list(findings)
    low = limits.low is not None and value < limits.low
    bound = limits.low if low else limits.high
    clause = (
        f"{'below' if low else 'above'} this patient's care-plan limit of"
        f" {fmt_number(bound or 0.0)} {display_unit(unit)}"
    )
    return [
        *findings,
        Finding(detector=DETECTOR, severity=Severity.WARNING, score=2.0, clause=clause),
    ]
