"""Data gaps: a long silence on a channel is a data-quality event, not a clinical one.

When a reading arrives more than ``after`` (48 h by default) after the previous one of the
same channel and context bucket, the watch was off, the app was not syncing or the
patient was away. That is worth knowing (an ``info`` finding, never an alert), and it
changes how the next readings are judged: the judge forgets the persistence window and
the CUSUM sums from before the gap and widens the spread for this first reading, so the
reading that ends a silence is not flagged merely because the patient's level moved a
little while nobody was looking.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pghd.contracts import Severity
from processors.detectors import Finding, fmt_number

__all__ = ["DETECTOR", "data_gap", "gap_length"]

DETECTOR = "data_gap"


def gap_length(last_time: datetime | None, time: datetime) -> timedelta:
    """Time since ``last_time`` (zero when there was none or ``time`` is not later)."""
    if last_time is None or time <= last_time:
        return timedelta(0)
    return time - last_time


def data_gap(*, last_time: datetime | None, time: datetime, after: timedelta) -> Finding | None:
    """An ``info`` finding when ``time`` comes more than ``after`` after ``last_time``."""
    gap = gap_length(last_time, time)
    if gap <= after:
        return None
    days = gap / timedelta(days=1)
    return Finding(
        detector=DETECTOR,
        severity=Severity.INFO,
        score=round(days, 3),
        clause=f"the first reading after {fmt_number(days)} days without data (a data gap)",
    )
