"""What becomes of a feedback event: consent per kind, once per id, the rate limit (a pinned
clock), retries with backoff and giving up after N attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.backoff import RetryPolicy
from alerts.feedback.outbox import (
    FeedbackPolicy,
    FeedbackState,
    admit,
    due,
    expired,
    settle,
    withdrawn,
)
from alerts.feedback.ratelimit import RateLimit, TokenBucket, take
from pghd.contracts import Severity
from pghd.feedback.events import FeedbackEvent, FindingDetails, RefusalDetails, event_id
from pghd.feedback.subscription import FeedbackSubscription, new_secret, subscribe
from pghd.feedback.wording import Kind

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
POLICY = FeedbackPolicy(
    limit=RateLimit(per_hour=6, burst=3),
    retry=RetryPolicy(backoff_s=2, max_backoff_s=600, horizon_s=86400, jitter=0),
    attempts=4,
    max_age_s=3600,
)


def event(n: int, kind: Kind = Kind.FINDING_OPENED, at: datetime = T0) -> FeedbackEvent:
    details: FindingDetails | RefusalDetails = (
        RefusalDetails(metric="spo2", source="acme", reason="range")
        if kind is Kind.READING_REFUSED
        else FindingDetails(finding_id=f"al-{n}", metric="spo2", opened_at=at)
    )
    return FeedbackEvent(
        id=event_id(str(n), kind.value),
        kind=kind,
        patient_id="p1",
        occurred_at=at,
        severity=Severity.WARNING,
        message="words",
        details=details,
    )


def sub(*kinds: Kind, at: datetime = T0 - timedelta(days=1)) -> FeedbackSubscription:
    return subscribe(
        "p1",
        url="https://app.example.org/h",
        kinds=kinds or (Kind.FINDING_OPENED,),
        now=at,
        secret=new_secret(),
    )


def fresh() -> FeedbackState:
    return FeedbackState(patient_id="p1", partition=2)


def test_an_event_is_queued_once_and_a_repeat_of_its_id_is_dropped() -> None:
    state, decision = admit(fresh(), event(1), sub(), now=T0, policy=POLICY)
    assert decision == "queued" and list(state.pending) == [event(1).id]
    same, again = admit(state, event(1), sub(), now=T0, policy=POLICY)
    assert (same, again) == (state, "duplicate")
    sent, outcome = settle(state, event(1).id, ok=True, now=T0, policy=POLICY)
    assert outcome == "sent" and sent.pending == {}
    _, after = admit(sent, event(1), sub(), now=T0 + timedelta(days=1), policy=POLICY)
    assert after == "duplicate", "a transition made again after a crash is sent once"


def test_nothing_is_sent_for_a_kind_the_patient_did_not_consent_to() -> None:
    only_findings = sub(Kind.FINDING_OPENED)
    refused = event(1, Kind.READING_REFUSED)
    assert admit(fresh(), refused, only_findings, now=T0, policy=POLICY)[1] == "unconsented"
    assert admit(fresh(), event(2), None, now=T0, policy=POLICY)[1] == "unconsented"
    before_consent = sub(Kind.FINDING_OPENED, at=T0 + timedelta(minutes=1))
    assert admit(fresh(), event(3), before_consent, now=T0, policy=POLICY)[1] == "unconsented"


def test_an_event_older_than_the_age_limit_is_not_news() -> None:
    old = event(1, at=T0 - timedelta(hours=2))
    state, decision = admit(fresh(), old, sub(), now=T0, policy=POLICY)
    assert decision == "stale" and state.pending == {} and old.id in state.settled


def test_the_rate_limit_lets_a_burst_through_then_drops_until_it_refills() -> None:
    state = fresh()
    decisions = []
    for n in range(5):
        state, decision = admit(state, event(n), sub(), now=T0, policy=POLICY)
        decisions.append(decision)
    assert decisions == ["queued", "queued", "queued", "rate_limited", "rate_limited"]
    assert len(state.pending) == 3
    # 6 an hour: one token every 10 minutes
    _, early = admit(state, event(10), sub(), now=T0 + timedelta(minutes=9), policy=POLICY)
    assert early == "rate_limited"
    later, refilled = admit(state, event(11), sub(), now=T0 + timedelta(minutes=10), policy=POLICY)
    assert refilled == "queued"
    _, dropped_again = admit(state, event(3), sub(), now=T0 + timedelta(hours=1), policy=POLICY)
    assert dropped_again == "duplicate", "a dropped event stays dropped"
    assert later.bucket is not None and later.bucket.tokens == pytest.approx(0.0)


def test_a_bucket_refills_to_its_burst_and_never_from_a_clock_gone_back() -> None:
    limit = RateLimit(per_hour=6, burst=3)
    bucket, ok = take(None, now=T0, limit=limit)
    assert ok and bucket == TokenBucket(tokens=2, at=T0)
    full, ok = take(bucket, now=T0 + timedelta(days=1), limit=limit)
    assert ok and full.tokens == 2, "capped at the burst"
    empty = TokenBucket(tokens=0, at=T0)
    back, ok = take(empty, now=T0 - timedelta(hours=1), limit=limit)
    assert not ok and back.at == T0
    with pytest.raises(ValueError):
        RateLimit(per_hour=0, burst=1)


def test_a_failing_app_is_retried_with_backoff_then_given_up_after_n_attempts() -> None:
    state, _ = admit(fresh(), event(1), sub(), now=T0, policy=POLICY)
    eid = event(1).id
    now, waits = T0, []
    for _ in range(POLICY.attempts - 1):
        assert [p.event.id for p in due(state, now=now)] == [eid]
        state, outcome = settle(state, eid, ok=False, now=now, policy=POLICY)
        assert outcome == "retry"
        entry = state.pending[eid]
        waits.append((entry.next_at - now).total_seconds())
        assert due(state, now=now) == [], "not before its time"
        now = entry.next_at
    assert waits == [2.0, 4.0, 8.0]
    state, outcome = settle(state, eid, ok=False, now=now, policy=POLICY)
    assert outcome == "failed" and state.pending == {} and eid in state.settled


def test_an_attempt_under_way_is_not_due_twice_and_a_late_settle_is_ignored() -> None:
    state, _ = admit(fresh(), event(1), sub(), now=T0, policy=POLICY)
    assert due(state, now=T0, busy=frozenset({event(1).id})) == []
    done, _ = settle(state, event(1).id, ok=True, now=T0, policy=POLICY)
    assert settle(done, event(1).id, ok=False, now=T0, policy=POLICY) == (done, None)


def test_what_the_patient_withdrew_is_not_sent() -> None:
    state, _ = admit(fresh(), event(1), sub(), now=T0, policy=POLICY)
    both = sub(Kind.FINDING_OPENED, Kind.READING_REFUSED)
    state, _ = admit(state, event(2, Kind.READING_REFUSED), both, now=T0, policy=POLICY)
    kept, dropped = withdrawn(state, sub(Kind.READING_REFUSED))
    assert [p.event.id for p in dropped] == [event(1).id]
    assert list(kept.pending) == [event(2, Kind.READING_REFUSED).id]
    none, all_dropped = withdrawn(state, None)
    assert none.pending == {} and len(all_dropped) == 2


def test_settled_ids_are_bounded_in_count_and_age() -> None:
    policy = FeedbackPolicy(keep_settled=3, keep_settled_s=3600, max_age_s=10**9)
    state = fresh()
    for n in range(5):
        state, _ = admit(
            state, event(n, at=T0), sub(), now=T0 + timedelta(seconds=n), policy=policy
        )
        state, _ = settle(state, event(n).id, ok=True, now=T0 + timedelta(seconds=n), policy=policy)
    assert list(state.settled) == [event(n).id for n in (2, 3, 4)]
    state, _ = admit(state, event(9), sub(), now=T0 + timedelta(hours=2), policy=policy)
    state, _ = settle(state, event(9).id, ok=True, now=T0 + timedelta(hours=2), policy=policy)
    assert list(state.settled) == [event(9).id]


def test_a_pending_event_older_than_the_age_limit_is_dropped_whatever_its_attempts() -> None:
    state, _ = admit(fresh(), event(1), sub(), now=T0, policy=POLICY)
    state, _ = admit(state, event(2, at=T0 + timedelta(minutes=30)), sub(), now=T0, policy=POLICY)
    assert expired(state, now=T0 + timedelta(seconds=3600), policy=POLICY) == (state, [])
    later = T0 + timedelta(seconds=3601)
    kept, dropped = expired(state, now=later, policy=POLICY)
    assert [p.event.id for p in dropped] == [event(1).id]
    assert list(kept.pending) == [event(2).id] and kept.settled == {event(1).id: later}
    assert admit(kept, event(1), sub(), now=later, policy=POLICY)[1] == "duplicate"
