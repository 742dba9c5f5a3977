"""``reading_refused`` events from ingest's dead letters (``pghd.dlq.v1``).

Ingest dead-letters each webhook item it refuses (``ingest/webhooks/push.py``). A letter
names the patient (``patient_id`` in its payload) only when the reading is known to be a
consenting patient's: the sending source may write for them and they consent to its metric,
so it was refused for what it held (a value out of range, a unit or time it could not read).
Those, and only those, are told to the patient; a letter without a patient (an account
linked to nobody, a source not linked to the patient, a metric without consent) is nobody's
to be told, and letters of the other stages are about pghd's own records.

The event id is the letter's place on the topic (partition and offset): reading the topic
again makes the same ids, which the sender drops. Pure: a letter in, an event (or None) out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from pghd import wire
from pghd.catalogue import Metric
from pghd.contracts import DeadLetter, Severity
from pghd.feedback.events import FeedbackEvent, RefusalDetails, at_words, event_id
from pghd.feedback.wording import (
    Kind,
    load_templates,
    metric_name,
    refusal_reason,
    render,
)

__all__ = ["INGEST_WEBHOOKS", "refusal_event"]

INGEST_WEBHOOKS = "ingest.webhooks"
"""The stage of ingest's dead letters (``ingest.webhooks.push.DLQ_STAGE``)."""


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def refusal_event(value: bytes | None, *, partition: int, offset: int) -> FeedbackEvent | None:
    """The ``reading_refused`` event of one ``pghd.dlq.v1`` record at ``partition`` and
    ``offset``; None for a record that tells no patient anything."""
    if not value:
        return None
    try:
        letter = wire.decode(DeadLetter, value)
        payload = orjson.loads(letter.payload)
    except (ValidationError, ValueError):
        return None
    if letter.stage != INGEST_WEBHOOKS or not isinstance(payload, dict):
        return None
    patient_id = _text(payload.get("patient_id"))
    reading = payload.get("reading")
    source = _text(payload.get("source"))
    if patient_id is None or source is None or not isinstance(reading, dict):
        return None
    try:
        metric = Metric(str(reading.get("metric")))
    except ValueError:
        return None
    taken_at = _time(reading.get("effective_time"))
    code = letter.reason.split(":", 1)[0].strip() or "other"
    fields = {
        "metric": metric_name(metric.value),
        "source": source,
        "when": load_templates().phrases["unknown_time"]
        if taken_at is None
        else f"at {at_words(taken_at)}",
        "reason": refusal_reason(code),
    }
    try:
        return FeedbackEvent(
            id=event_id("dlq", str(partition), str(offset)),
            kind=Kind.READING_REFUSED,
            patient_id=patient_id,
            occurred_at=letter.failed_at,
            severity=Severity.INFO,
            message=render(Kind.READING_REFUSED, Severity.INFO, fields),
            details=RefusalDetails(
                metric=metric.value,
                source=source,
                device=_text(reading.get("device_id")),
                taken_at=taken_at,
                reason=code,
            ),
        )
    except ValidationError:  # an id or a source that is no id: nobody to tell
        return None
