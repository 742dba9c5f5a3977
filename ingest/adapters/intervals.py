"""Which end of a sender's interval an adapter hands on as ``effective_end``.

For an interval metric (``steps``, ``sleep_duration``: :attr:`MetricSpec.interval`) the
reading is stamped at the interval's start and carries its end. An adapter hands the end on
only when the contract takes it (:func:`pghd.contracts.interval_problem`): the metric is an
interval metric, the end is after the start (FHIR writes an instant as a period whose end is
its start) and the span is at most :data:`~pghd.catalogue.MAX_INTERVAL` (an average over a
month is no step count the timelines could place). Otherwise the reading stays what it was
before ends were kept: stamped at its start, span unknown. Whether an end lies in the future
and whether the hours slept fit in it are judged by triage, which refuses the reading.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pghd.catalogue import Metric
from pghd.contracts import interval_problem

__all__ = ["aware", "interval_end"]


def interval_end(metric: Metric, start: datetime, end: datetime | None) -> datetime | None:
    """``end`` when ``[start, end]`` is an interval pghd takes for ``metric``; else None."""
    if end is None or end.tzinfo is None or start.tzinfo is None:
        return None
    return end if interval_problem(metric, start, end) is None else None


def aware(text: Any) -> datetime | None:
    """A vendor's ISO 8601 timestamp string with a UTC offset as a datetime; None otherwise."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
