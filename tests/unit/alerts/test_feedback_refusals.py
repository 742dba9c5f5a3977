"""``reading_refused`` from ingest's dead letters: only a letter that names a consenting
patient tells anyone anything, in the reviewed words; the same letter read again has the
same id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from alerts.feedback.refusals import refusal_event
from pghd import wire
from pghd.contracts import DeadLetter, Severity
from pghd.feedback.events import RefusalDetails
from pghd.feedback.wording import Kind

FAILED_AT = datetime(2026, 12, 6, 14, 7, tzinfo=UTC)
READING = {
    "patient_id": "p-1",
    "metric": "heart_rate",
    "value": 5000,
    "unit": "/min",
    "effective_time": "2026-12-06T14:05:00Z",
    "device_id": "watch-1",
}


def letter(payload: dict[str, Any], *, stage: str = "ingest.webhooks", reason: str = "") -> bytes:
    return wire.encode(
        DeadLetter(
            stage=stage,
            reason=reason or "range: /0/value: a heart rate of 5000/min is not possible",
            key="acme-user-1",
            payload=orjson.dumps(payload).decode(),
            failed_at=FAILED_AT,
        )
    )


def consenting(**changes: Any) -> dict[str, Any]:
    return {
        "source": "acme",
        "event": "readings",
        "account": None,
        "pointer": "/0",
        "reading": READING,
        "errors": [],
        "patient_id": "p-1",
        **changes,
    }


def test_a_consenting_patients_refused_reading_is_told_in_plain_words() -> None:
    event = refusal_event(letter(consenting()), partition=1, offset=42)
    assert event is not None
    assert (event.kind, event.patient_id, event.severity) == (
        Kind.READING_REFUSED,
        "p-1",
        Severity.INFO,
    )
    assert event.occurred_at == FAILED_AT
    assert event.message == (
        "A heart rate reading from acme taken at 14:05 UTC on 6 December 2026 could not be"
        " stored: the value is outside the range a reading can have. Nothing else is"
        " affected; the next readings will be stored as usual."
    )
    assert event.details == RefusalDetails(
        metric="heart_rate",
        source="acme",
        device="watch-1",
        taken_at=datetime(2026, 12, 6, 14, 5, tzinfo=UTC),
        reason="range",
    )
    assert "5000" not in wire.encode(event).decode(), "the refused value is not repeated"


def test_the_same_letter_read_again_makes_the_same_id() -> None:
    first = refusal_event(letter(consenting()), partition=1, offset=42)
    again = refusal_event(letter(consenting()), partition=1, offset=42)
    other = refusal_event(letter(consenting()), partition=1, offset=43)
    assert first is not None and again is not None and other is not None
    assert first.id == again.id != other.id


def test_a_letter_that_names_no_consenting_patient_tells_nobody() -> None:
    no_patient = consenting()
    del no_patient["patient_id"]  # unknown account, unlinked source, no consent
    assert refusal_event(letter(no_patient), partition=0, offset=1) is None
    assert refusal_event(letter(consenting(), stage="store"), partition=0, offset=1) is None
    assert refusal_event(letter(consenting(reading={"metric": "x"})), partition=0, offset=1) is None
    assert refusal_event(b"not json", partition=0, offset=1) is None
    assert refusal_event(None, partition=0, offset=1) is None
    weird = consenting(patient_id="not an id!")
    assert refusal_event(letter(weird), partition=0, offset=1) is None


def test_an_unreadable_time_and_an_unknown_reason_have_words_too() -> None:
    reading = {**READING, "effective_time": "yesterday-ish"}
    event = refusal_event(
        letter(consenting(reading=reading), reason="time: /0/effective_time: not a time"),
        partition=0,
        offset=7,
    )
    assert event is not None
    assert "taken at a time that could not be read" in event.message
    assert "its time is too far in the past or in the future" in event.message
    odd = refusal_event(letter(consenting(), reason="vendor-quirk: x"), partition=0, offset=8)
    assert odd is not None and "it could not be read." in odd.message
    assert isinstance(odd.details, RefusalDetails) and odd.details.reason == "vendor-quirk"
