"""What the vendor webhook adapters share: one sample in, one intake candidate out.

A vendor push is one :class:`Extraction`: the candidates found in it (each a reading in
``ReadingIn`` shape that names the vendor ``account`` instead of a patient) and a count,
per kind, of the data pghd does not store (the route reports it; nothing of it is lost
silently). Event ids are derived from the sample itself (vendor, account, kind, the vendor's
own timestamp string and the value), so a redelivered push gives the same ids and the
processors drop the copies, while a sample the vendor revised (same time, new value) is a
new event that lands on the same InfluxDB point and replaces the old value there.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ingest.adapters.intervals import aware, interval_end
from ingest.intake import Candidate, error, pointer_of
from pghd.catalogue import Metric
from pghd.contracts import Context

__all__ = ["Extraction", "PayloadError", "number", "sample_candidate", "sample_event_id"]


class PayloadError(ValueError):
    """A push whose overall shape is not the vendor's (the route answers 422)."""


@dataclass
class Extraction:
    """The readings found in one vendor push, and what was left out by kind."""

    event: str
    account: str | None
    candidates: list[Candidate] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)

    def ignore(self, kind: str, count: int = 1) -> None:
        """Count ``count`` items of a kind pghd does not store."""
        if count > 0:
            self.ignored[kind] += count


def number(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sample_event_id(vendor: str, *parts: object) -> str:
    """A stable event id for one vendor sample: ``<vendor>-<32 hex>``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{vendor}-{digest[:32]}"


def sample_candidate(
    *,
    vendor: str,
    account: str,
    pointer: str,
    kind: str,
    metric: Metric,
    unit: str,
    time: Any,
    value: Any = None,
    systolic: Any = None,
    diastolic: Any = None,
    context: Context | None = None,
    app: str | None = None,
    time_field: str = "timestamp",
    value_field: str = "value",
    time_pointer: str | None = None,
    end: Any = None,
) -> Candidate:
    """One vendor sample as a candidate reading, or the errors of a sample without time or value.

    ``kind`` names the vendor's series (``terra.body.hr_samples``) for the event id;
    ``time`` is the vendor's own timestamp string (validated by triage). ``end``, the
    vendor's timestamp string of the end of the interval the sample covers (which starts at
    ``time``), becomes ``effective_end`` when the interval is one pghd takes for ``metric``
    (:func:`ingest.adapters.intervals.interval_end`); the event id does not include it, so
    ids stay those of the sample's start and value. Errors point at ``pointer`` +
    ``value_field`` / ``time_field``, or at ``time_pointer`` when given.
    """
    composite = metric is Metric.BLOOD_PRESSURE
    values = {"systolic": systolic, "diastolic": diastolic} if composite else {"value": value}
    problems = [
        error(pointer_of(pointer, [value_field if name == "value" else name]), "is not a number")
        for name, raw in values.items()
        if number(raw) is None
    ]
    if not isinstance(time, str) or not time:
        at = time_pointer or pointer_of(pointer, [time_field])
        problems.append(error(at, "is missing (no sample time)"))
    if problems:
        return Candidate(pointer=pointer, account=account, errors=tuple(problems))
    numbers = {name: number(raw) for name, raw in values.items()}
    reading: dict[str, Any] = {
        "event_id": sample_event_id(vendor, account, kind, time, *numbers.values()),
        "metric": metric.value,
        "unit": unit,
        "effective_time": time,
        **numbers,
    }
    start, stop = aware(time), aware(end)
    if start is not None and interval_end(metric, start, stop) is not None:
        reading["effective_end"] = end
    if context is not None:
        reading["context"] = context.value
    if app:
        reading["app"] = app[:128]
    return Candidate(pointer=pointer, reading=reading, account=account)
