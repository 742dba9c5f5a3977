"""Care-team commands on alerts, as they travel on ``pghd.alert-commands.v1``.

The care-team API validates a request and produces an :class:`AlertCommand` keyed by the
patient id (so it lands on the same partition as that patient's anomalies); the alerts
worker applies it to the alert state it owns. :class:`Silence` is shared by both.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pghd.contracts import SCHEMA_VERSION, PatientId, UtcDatetime
from pghd.topics import ALERT_COMMANDS

if TYPE_CHECKING:
    from pghd.alerting import Alert

__all__ = ["ALERT_COMMANDS", "AlertCommand", "CommandKind", "Silence"]


class Silence(BaseModel):
    """Mute alerts whose labels (and ``severity``) equal every matcher, for a while."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    silence_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default_factory=lambda: uuid.uuid4().hex[:16]
    )
    matchers: Annotated[dict[str, str], Field(min_length=1)]
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    created_by: Annotated[str, Field(min_length=1, max_length=128)]
    comment: Annotated[str, Field(max_length=500)] = ""

    @model_validator(mode="after")
    def _valid(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        unknown = set(self.matchers) - {"patient_id", "problem", "severity"}
        if unknown:
            raise ValueError(f"matchers on unknown labels: {sorted(unknown)}")
        return self

    def active_at(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, alert: Alert) -> bool:
        labels = alert.match_labels()
        return all(labels.get(name) == value for name, value in self.matchers.items())


class CommandKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    SILENCE = "silence"
    EXPIRE_SILENCE = "expire_silence"


class AlertCommand(BaseModel):
    """One care-team action. ``alert_id`` for acknowledge/resolve; ``silence`` (whose
    matchers include this ``patient_id``) for silence; ``silence_id`` to expire one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: CommandKind
    patient_id: PatientId
    alert_id: str | None = None
    silence: Silence | None = None
    silence_id: str | None = None
    by: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(max_length=500)] = ""
    issued_at: UtcDatetime

    @model_validator(mode="after")
    def _shape(self) -> AlertCommand:
        needs = {
            CommandKind.ACKNOWLEDGE: self.alert_id,
            CommandKind.RESOLVE: self.alert_id,
            CommandKind.SILENCE: self.silence,
            CommandKind.EXPIRE_SILENCE: self.silence_id,
        }
        if needs[self.kind] is None:
            raise ValueError(f"a {self.kind.value} command needs its target")
        if self.silence is not None and self.silence.matchers.get("patient_id") != self.patient_id:
            raise ValueError("a silence must match this command's patient_id")
        return self
