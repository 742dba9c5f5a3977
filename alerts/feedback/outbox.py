"""A patient's feedback state and its pure transitions: admit an event, send, settle.

The alerts worker keeps a :class:`FeedbackState` per patient who has a subscription and
events (a Faust table, co-partitioned with the patient's anomalies): their rate-limit bucket,
the events admitted and not yet settled (the outbox: written before any attempt, so a
restart sends them), and the ids settled lately (so an event made twice, e.g. a transition
made again after a crash, or a dead letter read again, is sent once).

- :func:`admit` decides what becomes of an event: ``duplicate`` (its id is pending or was
  settled), ``unconsented`` (no subscription, or the patient did not consent to its kind at
  the time it happened), ``stale`` (older than ``max_age_s``: a backlog after an outage is not
  news), ``rate_limited`` (:mod:`alerts.feedback.ratelimit`), or ``queued``;
- :func:`due` lists what to attempt now; :func:`settle` records an attempt's outcome:
  ``sent`` (any 2xx), ``retry`` after a capped exponential backoff with jitter
  (:mod:`alerts.backoff`), or ``failed`` after ``attempts`` tries or past the horizon;
- :func:`withdrawn` drops what the subscription no longer consents to (unsubscribed, a kind
  withdrawn) before it is sent; :func:`expired` what is older than ``max_age_s`` (``stale``),
  whatever became of its attempts.

Pure: states and times in, states and decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from alerts.backoff import RetryPolicy, next_attempt_at
from alerts.feedback.ratelimit import RateLimit, TokenBucket, take
from pghd.contracts import PatientId, UtcDatetime
from pghd.feedback.events import FeedbackEvent
from pghd.feedback.subscription import FeedbackRegistration

__all__ = [
    "Admission",
    "FeedbackPolicy",
    "FeedbackState",
    "Pending",
    "Settlement",
    "WeekTally",
    "admit",
    "due",
    "expired",
    "settle",
    "withdrawn",
]

Admission = Literal["queued", "duplicate", "unconsented", "stale", "rate_limited"]
Settlement = Literal["sent", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """How events are let through and tried."""

    limit: RateLimit = field(default_factory=RateLimit)
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(backoff_s=2.0, max_backoff_s=600.0, horizon_s=86400.0)
    )
    attempts: int = 8
    """tries of one event before it is given up"""
    max_age_s: float = 86400.0
    """an event older than this when it reaches the sender is not sent"""
    keep_settled_s: float = 7 * 86400.0
    """how long settled ids are remembered (the events topic's retention: no repeat of an
    event can come later)"""
    keep_settled: int = 1000
    """and at most this many per patient (the latest)"""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_age_s <= 0 or self.keep_settled < 1:
            raise ValueError("attempts and keep_settled must be >= 1, max_age_s > 0")


class Pending(BaseModel):
    """An admitted event not yet settled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: FeedbackEvent
    queued_at: UtcDatetime
    next_at: UtcDatetime = Field(description="when to attempt it next")
    attempts: Annotated[int, Field(ge=0, description="attempts that failed so far")] = 0


class WeekTally(BaseModel):
    """What a ``weekly_summary`` says of one week (:mod:`alerts.feedback.weekly`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    readings: Annotated[int, Field(ge=0, description="readings that arrived in the week")] = 0
    days: list[str] = Field(default_factory=list, description="UTC dates they arrived on")
    opened: list[str] = Field(default_factory=list, description="findings opened (ids)")
    resolved: list[str] = Field(default_factory=list, description="findings resolved (ids)")


class FeedbackState(BaseModel):
    """Everything the worker keeps about one patient's feedback (the table value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patient_id: PatientId
    partition: Annotated[int, Field(ge=0, description="of the events topic; = changelog's")]
    bucket: TokenBucket | None = None
    pending: dict[str, Pending] = Field(default_factory=dict, description="event id -> entry")
    settled: dict[str, UtcDatetime] = Field(
        default_factory=dict, description="event id -> when it was settled (or dropped)"
    )
    last_seen: dict[str, UtcDatetime] = Field(
        default_factory=dict, description="source -> when its readings last arrived"
    )
    silence_told: dict[str, UtcDatetime] = Field(
        default_factory=dict, description="source -> the last arrival its silence was told of"
    )
    weeks: dict[str, WeekTally] = Field(
        default_factory=dict, description="start of a week (ISO, UTC) -> its tally"
    )
    summary_done: UtcDatetime | None = Field(
        default=None, description="the start of the last week whose summary was decided"
    )


def _remember(
    state: FeedbackState, event_id: str, *, now: datetime, policy: FeedbackPolicy
) -> dict[str, datetime]:
    horizon = now - timedelta(seconds=policy.keep_settled_s)
    kept = {k: at for k, at in state.settled.items() if at >= horizon and k != event_id}
    kept[event_id] = now
    latest = sorted(kept.items(), key=lambda item: (item[1], item[0]))[-policy.keep_settled :]
    return dict(latest)


def admit(
    state: FeedbackState,
    event: FeedbackEvent,
    subscription: FeedbackRegistration | None,
    *,
    now: datetime,
    policy: FeedbackPolicy,
) -> tuple[FeedbackState, Admission]:
    """What becomes of ``event`` (see the module docstring), and the state after."""
    if event.id in state.pending or event.id in state.settled:
        return state, "duplicate"
    if subscription is None or not subscription.consents(event.kind, event.occurred_at):
        return state, "unconsented"
    if (now - event.occurred_at).total_seconds() > policy.max_age_s:
        return state.model_copy(
            update={"settled": _remember(state, event.id, now=now, policy=policy)}
        ), "stale"
    bucket, allowed = take(state.bucket, now=now, limit=policy.limit)
    if not allowed:
        settled = _remember(state, event.id, now=now, policy=policy)
        return state.model_copy(update={"bucket": bucket, "settled": settled}), "rate_limited"
    entry = Pending(event=event, queued_at=now, next_at=now)
    pending = {**state.pending, event.id: entry}
    return state.model_copy(update={"bucket": bucket, "pending": pending}), "queued"


def due(
    state: FeedbackState, *, now: datetime, busy: frozenset[str] = frozenset()
) -> list[Pending]:
    """The entries to attempt at ``now`` (``busy``: ids with an attempt under way), oldest
    event first."""
    ready = [p for p in state.pending.values() if p.next_at <= now and p.event.id not in busy]
    return sorted(ready, key=lambda p: (p.event.occurred_at, p.event.id))


def expired(
    state: FeedbackState, *, now: datetime, policy: FeedbackPolicy
) -> tuple[FeedbackState, list[Pending]]:
    """Drop the pending events older than ``max_age_s`` at ``now`` (remembered as settled,
    so a repeat is a duplicate); those dropped. Whatever became of their attempts (one that
    never settles included), nothing is retried once it is no longer news."""
    dropped = [
        p
        for p in state.pending.values()
        if (now - p.event.occurred_at).total_seconds() > policy.max_age_s
    ]
    if not dropped:
        return state, []
    settled = state
    for p in dropped:
        settled = settled.model_copy(
            update={"settled": _remember(settled, p.event.id, now=now, policy=policy)}
        )
    gone = {p.event.id for p in dropped}
    pending = {k: v for k, v in state.pending.items() if k not in gone}
    return settled.model_copy(update={"pending": pending}), dropped


def settle(
    state: FeedbackState, event_id: str, *, ok: bool, now: datetime, policy: FeedbackPolicy
) -> tuple[FeedbackState, Settlement | None]:
    """Record an attempt of ``event_id``: delivered (``ok``), or failed and retried or given
    up; None when it is no longer pending (withdrawn, or settled by another attempt)."""
    entry = state.pending.get(event_id)
    if entry is None:
        return state, None
    rest = {k: v for k, v in state.pending.items() if k != event_id}
    if not ok:
        failures = entry.attempts + 1
        retry_at = next_attempt_at(
            failed_at=now,
            failures=failures,
            queued_at=entry.queued_at,
            policy=policy.retry,
            key=event_id,
        )
        if failures < policy.attempts and retry_at is not None:
            again = entry.model_copy(update={"attempts": failures, "next_at": retry_at})
            return state.model_copy(update={"pending": {**rest, event_id: again}}), "retry"
    settled = _remember(state, event_id, now=now, policy=policy)
    outcome: Settlement = "sent" if ok else "failed"
    return state.model_copy(update={"pending": rest, "settled": settled}), outcome


def withdrawn(
    state: FeedbackState, subscription: FeedbackRegistration | None
) -> tuple[FeedbackState, list[Pending]]:
    """Drop the pending events ``subscription`` no longer consents to; those dropped."""
    dropped = [
        p
        for p in state.pending.values()
        if subscription is None or not subscription.consents(p.event.kind, p.event.occurred_at)
    ]
    if not dropped:
        return state, []
    gone = {p.event.id for p in dropped}
    pending = {k: v for k, v in state.pending.items() if k not in gone}
    return state.model_copy(update={"pending": pending}), dropped
