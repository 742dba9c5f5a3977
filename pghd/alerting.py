"""Alerting contracts: the alert on ``pghd.alerts.v1`` and the routing configuration.

Vocabulary from Prometheus Alertmanager: an alert's *labels* are its identity
(``patient_id`` + ``problem``), its *fingerprint* is a stable hash of the labels and the
key of the compacted topic, severity and text are not labels (they change while the alert
lives). An alert is ``open`` until a care team member acknowledges it and ``resolved`` when
someone resolves it or no anomaly arrived for the configured quiet period.

:class:`RoutingConfig` is what the alerts service loads (a JSON file): named Apprise
channels, the patient → care-team map, routes with their escalation policies (and an
optional ``fallback`` for a channel that keeps failing), the grouping policy and the
per-patient budget. The lifecycle, routing and escalation logic that uses them is pure code
in ``alerts.lifecycle`` and ``alerts.routing``; this module holds only data and the
fingerprint, so every service and the care-team API read them the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pghd.contracts import ID_PATTERN, SCHEMA_VERSION, PatientId, Severity, UtcDatetime

__all__ = [
    "FINGERPRINT_PATTERN",
    "MAX_ANOMALY_IDS",
    "MAX_NOTIFICATIONS",
    "Alert",
    "AlertLabels",
    "AlertState",
    "Budget",
    "DigestPolicy",
    "DigestRecord",
    "DigestState",
    "EscalationStep",
    "GroupingPolicy",
    "NotificationOutcome",
    "NotificationRecord",
    "Route",
    "RoutingConfig",
    "TimeWindow",
    "label_fingerprint",
    "problem_of",
]

FINGERPRINT_PATTERN = r"^[0-9a-f]{16}$"
MAX_ANOMALY_IDS = 100
"""An alert keeps the ids of at most this many (the latest) anomalies; ``anomaly_count``
counts them all."""
MAX_NOTIFICATIONS = 500
"""An alert keeps at most this many (the latest) notification records."""

ActorId = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(pattern=ID_PATTERN)]


class AlertState(StrEnum):
    """Where an alert is in its life."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertLabels(BaseModel):
    """The identity of an alert: same labels = same incident."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: PatientId
    problem: Annotated[
        str,
        Field(pattern=ID_PATTERN, description="what is wrong, e.g. a channel group: heart_rate"),
    ]


_PROBLEM_OF_METRIC = {"resting_heart_rate": "heart_rate"}


def problem_of(metric: str) -> str:
    """The problem an anomaly of ``metric`` is about (resting heart rate is heart rate): the
    alert it groups into, and the part of a patient's episode it announces."""
    return _PROBLEM_OF_METRIC.get(metric, metric)


def label_fingerprint(labels: AlertLabels | Mapping[str, str]) -> str:
    """Stable 64-bit hex hash of the labels: independent of order, process and version."""
    items = labels.model_dump() if isinstance(labels, AlertLabels) else dict(labels)
    canonical = orjson.dumps(items, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


class NotificationOutcome(StrEnum):
    """What became of one notification to one channel."""

    QUEUED = "queued"
    """planned by the routing logic; the I/O layer has yet to send it"""
    DELIVERED = "delivered"
    FAILED = "failed"
    DIGEST = "digest"
    """over the patient's notification budget: listed in the daily digest instead"""


class NotificationRecord(BaseModel):
    """One notification of an alert to one channel (named, never its URL: URLs hold tokens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Annotated[str, Field(min_length=1, max_length=128)]
    route: Annotated[str, Field(min_length=1, max_length=128)]
    attempt: Annotated[int, Field(ge=1, description="notification round of this alert, from 1")]
    at: UtcDatetime
    outcome: NotificationOutcome
    detail: Annotated[str, Field(max_length=500)] | None = None
    final: bool = Field(
        default=False,
        description="the delivery is settled: delivered, or failed for good (given up)",
    )


class Alert(BaseModel):
    """An open, acknowledged or resolved incident grouping anomalies of one patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    alert_id: Annotated[str, Field(pattern=ID_PATTERN)]
    fingerprint: Annotated[str, Field(pattern=FINGERPRINT_PATTERN)]
    labels: AlertLabels
    severity: Severity = Field(description="the highest severity among its anomalies")
    status: AlertState = AlertState.OPEN
    summary: Annotated[str, Field(max_length=1000)] = Field(
        default="", description="the latest anomaly's explanation"
    )
    opened_at: UtcDatetime
    updated_at: UtcDatetime
    acknowledged_at: UtcDatetime | None = None
    acknowledged_by: ActorId | None = None
    resolved_at: UtcDatetime | None = None
    resolved_by: ActorId | None = None
    resolved_reason: Annotated[str, Field(max_length=500)] | None = None
    anomaly_ids: Annotated[list[str], Field(max_length=MAX_ANOMALY_IDS)] = Field(
        default_factory=list
    )
    anomaly_count: Annotated[int, Field(ge=0)] = 0
    episode_ids: Annotated[list[str], Field(max_length=MAX_ANOMALY_IDS)] = Field(
        default_factory=list,
        description="the open episodes behind the alert; it resolves when the last one ends",
    )
    last_anomaly_at: UtcDatetime
    notifications: Annotated[list[NotificationRecord], Field(max_length=MAX_NOTIFICATIONS)] = Field(
        default_factory=list
    )
    escalation_level: Annotated[
        int, Field(ge=0, description="escalation step last notified, from 1; 0 = none yet")
    ] = 0
    next_notify_at: UtcDatetime | None = None
    late: bool = Field(
        default=False,
        description="its latest anomaly was detected longer ago than the alerts worker's age"
        " limit when it arrived (a backlog or an outage); notifications say so",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Alert:
        if self.fingerprint != label_fingerprint(self.labels):
            raise ValueError("fingerprint does not match the labels")
        if self.status is AlertState.RESOLVED and self.resolved_at is None:
            raise ValueError("a resolved alert needs resolved_at")
        if self.status is not AlertState.RESOLVED and self.resolved_at is not None:
            raise ValueError(f"an {self.status.value} alert has no resolved_at")
        if self.status is AlertState.ACKNOWLEDGED and self.acknowledged_at is None:
            raise ValueError("an acknowledged alert needs acknowledged_at")
        if self.status is AlertState.OPEN and self.acknowledged_at is not None:
            raise ValueError("an open alert has no acknowledged_at")
        if self.anomaly_count < len(self.anomaly_ids):
            raise ValueError("anomaly_count is less than the anomaly ids listed")
        return self

    @property
    def patient_id(self) -> str:
        return self.labels.patient_id

    @property
    def problem(self) -> str:
        return self.labels.problem

    @property
    def active(self) -> bool:
        """Open or acknowledged: not resolved."""
        return self.status is not AlertState.RESOLVED

    def match_labels(self) -> dict[str, str]:
        """What silences and routes match on: the labels plus ``severity`` and ``status``."""
        return {
            **self.labels.model_dump(),
            "severity": self.severity.value,
            "status": self.status.value,
        }


class GroupingPolicy(BaseModel):
    """How anomalies group into alerts and when a quiet alert resolves itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_interval_s: float = Field(
        default=3600.0, gt=0, description="longest gap between anomalies of one alert"
    )
    auto_resolve_after_s: float = Field(
        default=6 * 3600.0, gt=0, description="resolve an alert with no anomaly for this long"
    )
    max_anomaly_ids: int = Field(default=50, ge=1, le=MAX_ANOMALY_IDS)


class TimeWindow(BaseModel):
    """Local times of day (``end`` before ``start`` crosses midnight) and weekdays (0 = Mon)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time
    days: list[Annotated[int, Field(ge=0, le=6)]] | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        clock, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start <= self.end:
            inside = self.start <= clock < self.end
        else:  # the window started yesterday when we are past midnight
            inside = clock >= self.start or clock < self.end
            day = day if clock >= self.start else (day - 1) % 7
        return inside and (self.days is None or day in self.days)


class EscalationStep(BaseModel):
    """Notify ``channels`` ``after_s`` after the route first notified, if still unacknowledged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_s: float = Field(ge=0)
    channels: Annotated[list[Name], Field(min_length=1)]


class Route(BaseModel):
    """Which alerts go where; an unset matcher matches everything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    teams: list[Name] | None = None
    severities: list[Severity] | None = None
    active: TimeWindow | None = None
    escalation: Annotated[list[EscalationStep], Field(min_length=1)]
    repeat_interval_s: float | None = Field(default=4 * 3600.0, gt=0)
    fallback: Annotated[list[Name], Field(min_length=1)] | None = Field(
        default=None,
        description="channels that get a notification of this route whose channel has been"
        " failing for fallback_after_s (the failing channel is still retried)",
    )
    fallback_after_s: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Route:
        delays = [step.after_s for step in self.escalation]
        if delays != sorted(delays):
            raise ValueError(f"route {self.name}: escalation steps must not go back in time")
        return self

    def matches(self, alert: Alert, *, team: str | None, now: datetime | None) -> bool:
        """Team and severity match; the time window too unless ``now`` is None."""
        return (
            (self.teams is None or team in self.teams)
            and (self.severities is None or alert.severity in self.severities)
            and (now is None or self.active is None or self.active.contains(now))
        )


class Budget(BaseModel):
    """At most ``max_notifications`` rounds per patient per ``window_s``; critical ones exempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_notifications: int = Field(ge=1)
    window_s: float = Field(default=24 * 3600.0, gt=0)


class DigestPolicy(BaseModel):
    """When the daily digest of held-back findings goes out, and to which channels.

    Every day at ``at`` (local time in ``timezone``) each care team is sent the findings of
    the last 24 hours that went to the digest instead of paging (over the patient's
    budget), on its ``team_channels`` or else on ``channels``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: time = time(7, 0)
    timezone: str = "UTC"
    channels: Annotated[list[Name], Field(min_length=1)]
    team_channels: dict[Name, Annotated[list[Name], Field(min_length=1)]] = Field(
        default_factory=dict
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return TimeWindow._known_zone(value)

    def channels_of(self, team: str | None) -> list[str]:
        return list(self.team_channels.get(team or "", self.channels))


class DigestState(StrEnum):
    SENDING = "sending"
    """intent recorded before the first send: a restart finds it and does not send blindly"""
    SENT = "sent"
    FAILED = "failed"


class DigestRecord(BaseModel):
    """One team's digest of one day on ``pghd.digests.v1`` (compacted; key ``team|day``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    team: Annotated[str, Field(max_length=128)]
    day: date
    state: DigestState
    notification_id: Annotated[str, Field(pattern=ID_PATTERN)]
    findings: Annotated[int, Field(ge=0)]
    at: UtcDatetime
    outcomes: dict[Name, NotificationOutcome] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.team}|{self.day.isoformat()}"


class RoutingConfig(BaseModel):
    """Channels, care teams, routes, grouping and budget of the alerts service.

    Channel URLs may hold tokens: validation errors never echo the input.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    channels: dict[Name, str] = Field(description="channel name -> Apprise URL")
    cleared_channels: list[Name] = Field(
        default_factory=list,
        description="channels cleared to carry patient data (patient id, problem, values);"
        " every other channel is told the severity and a link to the alert only",
    )
    alert_link: str | None = Field(
        default=None,
        description="where a care-team member opens an alert, with {alert_id}, e.g."
        " https://care.example.org/alerts/{alert_id}; else the care-team API path",
    )
    patient_teams: dict[PatientId, Name] = Field(default_factory=dict)
    default_team: Name | None = None
    routes: Annotated[list[Route], Field(min_length=1)]
    grouping: GroupingPolicy = GroupingPolicy()
    budget: Budget | None = None
    digest: DigestPolicy | None = None

    @model_validator(mode="after")
    def _references(self) -> RoutingConfig:
        for name, url in self.channels.items():
            if "://" not in url:
                raise ValueError(f"channel {name}: not an Apprise URL (scheme://...)")
        unknown = sorted(set(self.cleared_channels) - set(self.channels))
        if unknown:
            raise ValueError(f"cleared_channels: undefined channels {unknown}")
        if self.alert_link is not None and "{alert_id}" not in self.alert_link:
            raise ValueError("alert_link must hold {alert_id}")
        names = [route.name for route in self.routes]
        if len(set(names)) != len(names):
            raise ValueError("route names must be unique")
        for route in self.routes:
            for n, step in enumerate(route.escalation, start=1):
                missing = sorted(set(step.channels) - set(self.channels))
                if missing:
                    raise ValueError(f"route {route.name} step {n}: undefined channels {missing}")
            missing = sorted(set(route.fallback or ()) - set(self.channels))
            if missing:
                raise ValueError(f"route {route.name} fallback: undefined channels {missing}")
        if self.digest is not None:
            used = {
                *self.digest.channels,
                *(c for cs in self.digest.team_channels.values() for c in cs),
            }
            missing = sorted(used - set(self.channels))
            if missing:
                raise ValueError(f"digest: undefined channels {missing}")
        return self

    def team_of(self, patient_id: str) -> str | None:
        return self.patient_teams.get(patient_id, self.default_team)

    def link_to(self, alert_id: str) -> str:
        """Where a care-team member opens the alert (``alert_link``, else the API path)."""
        template = self.alert_link or "/v1/alerts/{alert_id}"
        return template.replace("{alert_id}", alert_id)
