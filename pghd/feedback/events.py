"""What a patient's app is sent: one feedback event (the JSON body of the POST), its id.

The alerts worker POSTs each event to the URL the patient registered (``PUT /v1/me/feedback``
of the care-team API), signed like the webhooks ingest takes (:mod:`pghd.signatures`,
``X-Pghd-Signature``). The body::

    {"schema_version": 1, "id": "fb-…", "kind": "finding_opened", "patient_id": "p-1",
     "occurred_at": "2026-12-06T14:05:00Z", "severity": "warning",
     "message": "Your heart rate has been …", "details": {...}}

``message`` is the reviewed wording (:mod:`pghd.feedback.wording`); ``details`` holds only the
patient's own data, in a fixed shape per kind (:class:`FindingDetails`,
:class:`RefusalDetails`, :class:`SilenceDetails`, :class:`WeeklyDetails`): never another
patient, never a care-team member's name or note.
``id`` is the same for every delivery of one event (a retry, a resend after a crash), so an
app drops a repeat by it.

Pure: the contract and the helpers its builders share, no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pghd.contracts import ID_PATTERN, SCHEMA_VERSION, PatientId, Severity, UtcDatetime
from pghd.feedback.wording import Kind

__all__ = [
    "EVENT_ID_PATTERN",
    "SENT_KINDS",
    "FeedbackEvent",
    "FindingDetails",
    "RefusalDetails",
    "SilenceDetails",
    "WeeklyDetails",
    "at_words",
    "event_id",
]

EVENT_ID_PATTERN = r"^fb-[0-9a-f]{24}$"

SENT_KINDS = frozenset(Kind)
"""The kinds the platform sends: a registration may consent to these only (every kind)."""

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class FindingDetails(BaseModel):
    """A finding of the patient's (``finding_opened``, ``finding_resolved``): which, about
    what, since when; the reading that opened it and the patient's usual range (opened)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    finding_id: Id = Field(description="the same id in the finding's opened and resolved events")
    metric: Id = Field(description="what the finding is about: heart_rate, spo2, ...")
    opened_at: UtcDatetime
    observed_at: UtcDatetime | None = Field(
        default=None, description="opened: when the reading that opened it was taken"
    )
    value: float | None = Field(default=None, description="opened: that reading's value")
    unit: Annotated[str, Field(max_length=32)] | None = None
    usual_low: float | None = Field(default=None, description="the patient's usual range")
    usual_high: float | None = None
    resolved_at: UtcDatetime | None = Field(default=None, description="resolved: when")


class RefusalDetails(BaseModel):
    """A reading of the patient's that could not be stored (``reading_refused``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Id
    source: Id = Field(description="the vendor or app that sent it")
    device: Annotated[str, Field(max_length=128)] | None = None
    taken_at: UtcDatetime | None = None
    reason: Id = Field(description="range, unit, time, invalid or another of ingest's reasons")


class SilenceDetails(BaseModel):
    """A source of the patient's that sent nothing for a while (``device_silent``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Id = Field(description="the vendor or app that went quiet")
    last_reading_at: UtcDatetime = Field(description="when its last readings arrived")


class WeeklyDetails(BaseModel):
    """The patient's past week (``weekly_summary``): ``[week_start, week_end)``, UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    week_start: UtcDatetime
    week_end: UtcDatetime
    readings: Annotated[int, Field(ge=0, description="readings that arrived in the week")]
    days: Annotated[int, Field(ge=0, description="distinct UTC days on which they arrived")]
    findings_opened: Annotated[int, Field(ge=0)] = 0
    findings_resolved: Annotated[int, Field(ge=0, description="back within the usual range")] = 0


_DETAILS: dict[Kind, type[BaseModel]] = {
    Kind.FINDING_OPENED: FindingDetails,
    Kind.FINDING_RESOLVED: FindingDetails,
    Kind.READING_REFUSED: RefusalDetails,
    Kind.DEVICE_SILENT: SilenceDetails,
    Kind.WEEKLY_SUMMARY: WeeklyDetails,
}


class FeedbackEvent(BaseModel):
    """One event for one patient's app: the body of the signed POST."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    id: Annotated[str, Field(pattern=EVENT_ID_PATTERN, description="stable: drop repeats by it")]
    kind: Kind
    patient_id: PatientId
    occurred_at: UtcDatetime = Field(description="when it happened (not when it was sent)")
    severity: Severity
    message: Annotated[str, Field(min_length=1, max_length=1000)]
    details: FindingDetails | RefusalDetails | SilenceDetails | WeeklyDetails

    @model_validator(mode="after")
    def _details_fit_the_kind(self) -> FeedbackEvent:
        wanted = _DETAILS.get(self.kind)
        if wanted is None or not isinstance(self.details, wanted):
            raise ValueError(f"{self.kind.value} events carry no {type(self.details).__name__}")
        return self


def event_id(*parts: str) -> str:
    """A stable event id from what identifies the event (e.g. a finding and a kind)."""
    return "fb-" + hashlib.sha256("/".join(parts).encode("utf-8")).hexdigest()[:24]


def at_words(when: datetime) -> str:
    """A time as patients read it: ``14:05 UTC on 6 December 2026`` (patients' own time
    zones are not known, so UTC, said)."""
    utc = when.astimezone(UTC)
    return f"{utc:%H:%M} UTC on {utc.day} {utc:%B %Y}"
