"""Request and response bodies of the care-team API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.api.read_model import SilenceEntry, SilenceState
from pghd.alert_commands import CommandKind
from pghd.alerting import Alert, AlertState, NotificationRecord
from pghd.contracts import ID_PATTERN, PatientId, Severity, UtcDatetime

__all__ = [
    "MATCHER_LABELS",
    "AcknowledgeIn",
    "AlertDetail",
    "AlertList",
    "AlertOut",
    "CommandAccepted",
    "ResolveIn",
    "SilenceIn",
    "SilenceList",
    "SilenceOut",
]

MATCHER_LABELS = frozenset({"patient_id", "problem", "severity"})
"""What a silence may match on: the alert labels and its severity."""


class AlertOut(BaseModel):
    """One alert as listed."""

    alert_id: str
    fingerprint: str
    patient_id: str
    problem: str
    team: str | None = Field(description="the patient's care team, when routing is configured")
    severity: Severity
    status: AlertState
    summary: str
    opened_at: datetime
    updated_at: datetime
    last_anomaly_at: datetime
    anomaly_count: int
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolved_reason: str | None = None
    escalation_level: int
    late: bool = Field(
        default=False, description="its latest anomaly was detected long before it arrived"
    )

    @classmethod
    def of(cls, alert: Alert, *, team: str | None) -> AlertOut:
        return cls(
            team=team,
            patient_id=alert.patient_id,
            problem=alert.problem,
            **alert.model_dump(
                exclude={
                    "schema_version",
                    "labels",
                    "anomaly_ids",
                    "notifications",
                    "next_notify_at",
                }
            ),
        )


class AlertDetail(AlertOut):
    """One alert with its anomalies and notification history."""

    anomaly_ids: list[str]
    notifications: list[NotificationRecord]
    next_notify_at: datetime | None = None

    @classmethod
    def of(cls, alert: Alert, *, team: str | None) -> AlertDetail:
        return cls(
            team=team,
            patient_id=alert.patient_id,
            problem=alert.problem,
            **alert.model_dump(exclude={"schema_version", "labels"}),
        )


class AlertList(BaseModel):
    """Alerts matching the filters, most recently updated first."""

    count: int
    ready: bool = Field(description="false while the API is still reading the alerts topic")
    items: list[AlertOut]


class AcknowledgeIn(BaseModel):
    """Optional body of an acknowledgement."""

    model_config = ConfigDict(extra="forbid")

    comment: Annotated[str, Field(max_length=500)] = ""


class ResolveIn(BaseModel):
    """Why the alert is resolved."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=500)]


class SilenceIn(BaseModel):
    """Mute one patient's alerts (optionally only some problems or severities) until ``ends_at``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "patient_id": "patient-001",
                    "ends_at": "2026-11-26T08:00:00Z",
                    "comment": "known arrhythmia, cardiology follows up",
                    "matchers": {"problem": "heart_rate"},
                }
            ]
        },
    )

    patient_id: PatientId
    ends_at: UtcDatetime
    starts_at: UtcDatetime | None = Field(default=None, description="default: now")
    comment: Annotated[str, Field(max_length=500)] = ""
    matchers: dict[str, Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        default=None,
        description="extra label matchers (problem, severity); patient_id, if given, must agree",
    )

    @model_validator(mode="after")
    def _valid(self) -> SilenceIn:
        now = datetime.now(UTC)
        if self.ends_at <= now:
            raise ValueError("ends_at must be in the future")
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        matchers = self.matchers or {}
        unknown = set(matchers) - MATCHER_LABELS
        if unknown:
            raise ValueError(
                f"matchers on unknown labels {sorted(unknown)}; use {sorted(MATCHER_LABELS)}"
            )
        if matchers.get("patient_id", self.patient_id) != self.patient_id:
            raise ValueError("matchers.patient_id must equal patient_id")
        severity = matchers.get("severity")
        if severity is not None and severity not in {s.value for s in Severity}:
            raise ValueError(f"matchers.severity must be one of {[s.value for s in Severity]}")
        return self

    def all_matchers(self) -> dict[str, str]:
        """The matchers, always including ``patient_id``."""
        return {**(self.matchers or {}), "patient_id": self.patient_id}


class SilenceOut(BaseModel):
    """A silence and its state now."""

    silence_id: str
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: SilenceState
    expired_at: datetime | None = None
    expired_by: str | None = None

    @classmethod
    def of(cls, entry: SilenceEntry, *, now: datetime) -> SilenceOut:
        return cls(
            **entry.silence.model_dump(),
            state=entry.state(now),
            expired_at=entry.expired_at,
            expired_by=entry.expired_by,
        )


class SilenceList(BaseModel):
    """Known silences (see the API description for where they come from)."""

    count: int
    items: list[SilenceOut]


class CommandAccepted(BaseModel):
    """A command Kafka acknowledged; the alerts worker applies it shortly."""

    status: Literal["accepted"] = "accepted"
    command_id: str
    kind: CommandKind
    alert_id: str | None = None
    silence_id: str | None = None
