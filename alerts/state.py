"""One patient's alert state (a Faust table value) and its pure transitions.

The alerts worker keeps a :class:`PatientState` per patient id in a Faust table (changelog
backed, so it survives restarts): the current alert of each fingerprint, the patient's
silences, the notifications it has promised but not yet settled (:class:`PendingDelivery`,
the *intent* and outbox entry, written before each attempt is made) and the Grafana
annotation id of each alert.

The functions here glue :mod:`alerts.lifecycle` and :mod:`alerts.routing` together and
never do I/O: :func:`on_anomaly`, :func:`on_command` and :func:`on_tick` take a state and
return a :class:`Step` (the new state, the alerts to publish on ``pghd.alerts.v1``, the
deliveries to make, the annotations to write and the feedback events for the patient's app,
:mod:`alerts.feedback.findings`). What becomes of each delivery (attempts,
retries, give-up, fallback) is :mod:`alerts.outbox`'s work.

An anomaly detected longer ago than the worker's age limit (``late_after_s``) still opens
or updates its alert, marked ``late``; a late warning or critical alert pages (the
notification says how late) unless ``page_late`` is off, a late *info* alert never does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerts import lifecycle, routing
from alerts.feedback.findings import finding_events
from alerts.lifecycle import AlertStateError, Annotate, Notify, Page
from alerts.pending import PendingDelivery, notification_id, plan_deliveries
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind, Silence
from pghd.alerting import Alert, GroupingPolicy, RoutingConfig
from pghd.contracts import Anomaly, DeadLetter, PatientId, Phase, Severity
from pghd.feedback.events import FeedbackEvent

__all__ = [
    "STAGE",
    "CommandOutcome",
    "PatientState",
    "PendingDelivery",
    "Step",
    "Where",
    "decode",
    "mark_late",
    "notification_id",
    "on_anomaly",
    "on_command",
    "on_tick",
    "remember_annotation",
]

logger = logging.getLogger(__name__)

STAGE = "alerts"
_MAX_REASON = 1000
M = TypeVar("M", bound=BaseModel)
CommandOutcome = Literal["applied", "unchanged", "unknown_alert", "invalid_state"]


class PatientState(BaseModel):
    """Everything the worker keeps about one patient's alerts (the table value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: PatientId
    partition: Annotated[int, Field(ge=0, description="of the input topics; = changelog's")]
    alerts: dict[str, Alert] = Field(default_factory=dict, description="fingerprint -> alert")
    silences: list[Silence] = Field(default_factory=list)
    pending: dict[str, PendingDelivery] = Field(
        default_factory=dict, description="notification_id -> delivery not yet settled"
    )
    annotations: dict[str, int] = Field(
        default_factory=dict, description="alert_id -> Grafana annotation id"
    )


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one transition: what to store, publish, send and annotate."""

    state: PatientState
    changed: list[Alert] = field(default_factory=list)
    deliveries: list[PendingDelivery] = field(default_factory=list)
    annotations: list[Annotate] = field(default_factory=list)
    feedback: list[FeedbackEvent] = field(default_factory=list)
    """events for the patient's app (sent if they subscribed and consented)"""
    dirty: bool = False
    """the state differs from the one given (store it even if no alert changed)"""


@dataclass(frozen=True, slots=True)
class Where:
    """Where a message came from, for its dead letter and the logs."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None


def _reason(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return "; ".join(parts)[:_MAX_REASON]


def decode(model: type[M], payload: bytes | None, *, where: Where, now: datetime) -> M | DeadLetter:
    """Parse one message as ``model`` whose ``patient_id`` must equal the message key;
    anything else becomes a :class:`DeadLetter` (stage ``alerts``)."""
    reason: str | None = None
    try:
        if not payload:
            raise ValueError("empty message")
        value = wire.decode(model, payload)
        if where.key is not None and getattr(value, "patient_id", where.key) != where.key:
            reason = "message key must be the patient_id"
        else:
            return value
    except ValidationError as exc:
        reason = _reason(exc)
    except ValueError as exc:
        reason = str(exc)
    return DeadLetter(
        stage=STAGE,
        reason=reason,
        topic=where.topic,
        partition=where.partition,
        offset=where.offset,
        key=where.key,
        payload=(payload or b"").decode("utf-8", errors="backslashreplace"),
        failed_at=now,
    )


def _muted(alert: Alert, state: PatientState, *, now: datetime) -> bool:
    others = state.alerts.values()
    return lifecycle.silenced(alert, state.silences, now=now) or lifecycle.inhibited(alert, others)


def _feedback(
    state: PatientState, alerts: list[Alert], anomaly: Anomaly | None, *, paged: bool
) -> list[FeedbackEvent]:
    """The transition's feedback events (``paged``: it planned a notification to the care
    team); none (and an error logged) should making them fail: feedback to the patient
    never stands in the way of the care team's pages."""
    try:
        return finding_events(state.alerts, alerts, anomaly=anomaly, paged=paged)
    except Exception:
        logger.exception("feedback events of a transition not made")
        return []


def _finish(
    state: PatientState,
    alerts: list[Alert],
    *,
    deliveries: list[PendingDelivery],
    annotations: list[Annotate],
    silences: list[Silence] | None = None,
    anomaly: Anomaly | None = None,
) -> Step:
    """Put the changed alerts and new deliveries into the state (``anomaly``: the one the
    transition applied, for the feedback it makes)."""
    by_fp = {**state.alerts, **{a.fingerprint: a for a in alerts}}
    live = {a.alert_id for a in by_fp.values()}
    new = state.model_copy(
        update={
            "alerts": by_fp,
            "silences": state.silences if silences is None else silences,
            "pending": {**state.pending, **{d.notification_id: d for d in deliveries}},
            "annotations": {k: v for k, v in state.annotations.items() if k in live},
        }
    )
    return Step(
        state=new,
        changed=alerts,
        deliveries=deliveries,
        annotations=annotations,
        feedback=_feedback(state, alerts, anomaly, paged=bool(deliveries)),
        dirty=new != state,
    )


def mark_late(alert: Alert, *, now: datetime, late_after_s: float | None) -> Alert:
    """The alert with ``late`` set when its latest anomaly is older than ``late_after_s``."""
    age_s = (now - alert.last_anomaly_at).total_seconds()
    late = late_after_s is not None and age_s > late_after_s
    return alert if alert.late == late else alert.model_copy(update={"late": late})


def on_anomaly(
    state: PatientState,
    anomaly: Anomaly,
    *,
    config: RoutingConfig | None,
    policy: GroupingPolicy,
    now: datetime,
    late_after_s: float | None = None,
    page_late: bool = True,
) -> Step:
    """Group the anomaly into its alert; page (plan notifications) unless muted.

    ``late_after_s``: an alert whose latest anomaly is older than this is marked ``late``;
    it pages when ``page_late`` and it is a warning or critical (see the module docstring)."""
    if anomaly.phase is Phase.RESOLVED:
        return _episode_over(state, anomaly, now=now)
    fp = lifecycle.fingerprint(lifecycle.group_key(anomaly))
    current = state.alerts.get(fp)
    alert, actions = lifecycle.apply_anomaly(current, anomaly, policy=policy, now=now)
    if alert is None or alert == current:
        return Step(state=state)
    alert = mark_late(alert, now=now, late_after_s=late_after_s)
    if alert.late and not (page_late and alert.severity is not Severity.INFO):
        actions = [a for a in actions if not isinstance(a, Page)]
    changed: list[Alert] = []
    if current is not None and current.active and current.alert_id != alert.alert_id:
        superseded, _ = lifecycle.resolve(
            current,
            by=lifecycle.SYSTEM_ACTOR,
            reason="superseded: no anomaly within the group interval",
            now=now,
        )
        changed.append(superseded)
    notifies: list[Notify] = []
    others = [a for a in state.alerts.values() if a.fingerprint != fp]
    probe = state.model_copy(update={"alerts": {**state.alerts, fp: alert}})
    for action in actions:
        if isinstance(action, Page) and config is not None and not _muted(alert, probe, now=now):
            alert, planned = routing.plan_notifications(
                alert, config=config, now=now, reason=action.reason, patient_alerts=others
            )
            notifies += planned
    annotations = [a for a in actions if isinstance(a, Annotate)]
    return _finish(
        state,
        [*changed, alert],
        deliveries=plan_deliveries(notifies, now=now),
        annotations=annotations,
        anomaly=anomaly,
    )


def _episode_over(state: PatientState, anomaly: Anomaly, *, now: datetime) -> Step:
    """A patient's episode resolved: end it in every alert that lists it (one per problem
    the episode announced); those left without an open episode resolve, paging no one."""
    changed: list[Alert] = []
    annotations: list[Annotate] = []
    for alert in state.alerts.values():
        updated, actions = lifecycle.end_episode(alert, anomaly, now=now)
        if updated is not None and updated != alert:
            changed.append(updated)
            annotations += [a for a in actions if isinstance(a, Annotate)]
    if not changed:
        return Step(state=state)
    return _finish(state, changed, deliveries=[], annotations=annotations)


def on_command(
    state: PatientState, command: AlertCommand, *, now: datetime
) -> tuple[Step, CommandOutcome]:
    """Apply a care-team command: acknowledge, resolve, silence or expire a silence."""
    if command.kind is CommandKind.SILENCE and command.silence is not None:
        kept = [s for s in state.silences if s.silence_id != command.silence.silence_id]
        step = _finish(state, [], deliveries=[], annotations=[], silences=[*kept, command.silence])
        return step, "applied" if step.dirty else "unchanged"
    if command.kind is CommandKind.EXPIRE_SILENCE:
        kept = [s for s in state.silences if s.silence_id != command.silence_id]
        step = _finish(state, [], deliveries=[], annotations=[], silences=kept)
        return step, "applied" if step.dirty else "unchanged"
    target = next((a for a in state.alerts.values() if a.alert_id == command.alert_id), None)
    if target is None:
        return Step(state=state), "unknown_alert"
    try:
        if command.kind is CommandKind.ACKNOWLEDGE:
            alert, actions = lifecycle.acknowledge(target, by=command.by, now=now)
        else:
            reason = command.reason or "resolved by the care team"
            alert, actions = lifecycle.resolve(target, by=command.by, reason=reason, now=now)
    except AlertStateError:
        return Step(state=state), "invalid_state"
    if alert == target:
        return Step(state=state), "unchanged"
    annotations = [a for a in actions if isinstance(a, Annotate)]
    return _finish(state, [alert], deliveries=[], annotations=annotations), "applied"


def on_tick(
    state: PatientState,
    *,
    config: RoutingConfig | None,
    policy: GroupingPolicy,
    now: datetime,
) -> Step:
    """Auto-resolve quiet alerts, escalate or repeat due ones, drop ended silences."""
    quiet_for = timedelta(seconds=policy.auto_resolve_after_s)
    silences = [s for s in state.silences if s.ends_at > now]
    probe = state.model_copy(update={"silences": silences})
    changed: list[Alert] = []
    notifies: list[Notify] = []
    annotations: list[Annotate] = []
    for alert in state.alerts.values():
        updated, actions = lifecycle.auto_resolve(alert, now=now, quiet_for=quiet_for)
        annotations += [a for a in actions if isinstance(a, Annotate)]
        due = updated.next_notify_at is not None and now >= updated.next_notify_at
        if config is not None and due and not _muted(updated, probe, now=now):
            others = [a for a in state.alerts.values() if a.fingerprint != alert.fingerprint]
            updated, escalated = routing.due_escalations(
                updated, config=config, now=now, patient_alerts=others
            )
            notifies += [n for n in escalated if isinstance(n, Notify)]
        if updated != alert:
            changed.append(updated)
    return _finish(
        state,
        changed,
        deliveries=plan_deliveries(notifies, now=now),
        annotations=annotations,
        silences=silences,
    )


def remember_annotation(state: PatientState, alert_id: str, annotation_id: int) -> PatientState:
    """Keep the Grafana annotation id of an alert (to turn it into a region on resolve)."""
    if all(a.alert_id != alert_id for a in state.alerts.values()):
        return state
    return state.model_copy(update={"annotations": {**state.annotations, alert_id: annotation_id}})
