"""The outbox, pure: attempts settled, retries planned, restarts resumed, fallbacks, give-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.backoff import RetryPolicy
from alerts.lifecycle import acknowledge
from alerts.outbox import AUDITED_FAILURES, UNKNOWN_OUTCOME, plan, settle, undelivered
from alerts.pending import PendingDelivery
from alerts.state import PatientState, on_anomaly, on_tick
from pghd.alerting import AlertState, GroupingPolicy, NotificationOutcome, RoutingConfig

from .conftest import make_anomaly

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RETRY = RetryPolicy(backoff_s=1.0, max_backoff_s=30.0, horizon_s=3600.0)
GROUPING = GroupingPolicy(group_interval_s=3600, auto_resolve_after_s=7200)
CONFIG = RoutingConfig.model_validate(
    {
        "channels": {
            "ward": "json://127.0.0.1:1/ward",
            "sms": "json://127.0.0.1:1/sms",
            "lead": "mailto://u:p@example.org",
        },
        "routes": [
            {
                "name": "critical",
                "escalation": [{"after_s": 0, "channels": ["ward"]}],
                "repeat_interval_s": None,
                "fallback": ["sms", "ward"],
                "fallback_after_s": 900,
            }
        ],
    }
)
FAILED, DELIVERED = NotificationOutcome.FAILED, NotificationOutcome.DELIVERED


def opened() -> tuple[PatientState, PendingDelivery]:
    """A critical alert whose first attempt to ``ward`` is under way (as the agent leaves it)."""
    fresh = PatientState(patient_id="p1", partition=0)
    step = on_anomaly(fresh, make_anomaly(detected_at=T0), config=CONFIG, policy=GROUPING, now=T0)
    (delivery,) = step.deliveries
    return step.state, delivery


def always(_: PendingDelivery) -> bool:
    return True


def never(_: PendingDelivery) -> bool:
    return False


def history(state: PatientState, channel: str = "ward") -> list[tuple[str, bool]]:
    (alert,) = state.alerts.values()
    return [(r.outcome.value, r.final) for r in alert.notifications if r.channel == channel]


def fail_at(state: PatientState, delivery: PendingDelivery, at: datetime) -> PatientState:
    return settle(state, delivery, delivered=False, at=at, policy=RETRY).state


def test_a_new_delivery_is_its_first_attempt_under_way() -> None:
    state, delivery = opened()
    assert (delivery.attempts, delivery.sending, delivery.failures) == (1, True, 0)
    assert state.pending[delivery.notification_id] == delivery


def test_delivered_leaves_the_outbox_with_a_final_record() -> None:
    state, delivery = opened()
    done = settle(state, delivery, delivered=True, at=T0 + timedelta(seconds=1), policy=RETRY)
    assert done.kind == "delivered" and done.state.pending == {}
    assert history(done.state) == [("queued", False), ("delivered", True)]


def test_a_failure_waits_for_its_backoff_then_the_next_attempt_starts() -> None:
    state, delivery = opened()
    failed = settle(state, delivery, delivered=False, at=T0, policy=RETRY)
    entry = failed.state.pending[delivery.notification_id]
    assert failed.kind == "retry" and history(failed.state)[-1] == ("failed", False)
    assert not entry.sending and entry.failures == 1 and entry.first_failed_at == T0
    assert entry.next_attempt_at is not None and T0 < entry.next_attempt_at <= T0 + timedelta(1)

    early = plan(failed.state, now=T0, config=CONFIG, busy=(), resend=always)
    assert early.step.deliveries == [] and not early.step.dirty
    due = plan(failed.state, now=entry.next_attempt_at, config=CONFIG, busy=(), resend=always)
    (retry,) = due.step.deliveries
    assert (retry.attempts, retry.sending, retry.resent) == (2, True, False)
    assert due.step.state.pending[retry.notification_id] == retry, "the start is in the state"


def test_an_attempt_under_way_in_this_process_is_left_alone() -> None:
    state, delivery = opened()
    planned = plan(state, now=T0, config=CONFIG, busy={delivery.notification_id}, resend=always)
    assert planned.step.deliveries == [] and planned.resent == []


def test_unknown_outcome_is_resent_once_per_crash_with_the_same_id() -> None:
    state, delivery = opened()  # the worker died with the first attempt under way
    restored = PatientState.model_validate(state.model_dump(mode="json"))
    first = plan(restored, now=T0 + timedelta(minutes=1), config=CONFIG, busy=(), resend=always)
    (again,) = first.step.deliveries
    assert first.resent == [again] and again.notification_id == delivery.notification_id
    assert (again.attempts, again.resent) == (2, True)
    # while that re-send is under way nothing else goes out
    busy = {again.notification_id}
    quiet = plan(
        first.step.state, now=T0 + timedelta(minutes=2), config=CONFIG, busy=busy, resend=always
    )
    assert quiet.step.deliveries == []
    done = settle(
        first.step.state, again, delivered=True, at=T0 + timedelta(minutes=2), policy=RETRY
    )
    (alert,) = done.state.alerts.values()
    assert "outcome unknown" in (alert.notifications[-1].detail or "")
    assert history(done.state) == [("queued", False), ("delivered", True)]


def test_unknown_outcome_on_a_channel_not_resent_is_given_up_visibly() -> None:
    state, delivery = opened()
    planned = plan(state, now=T0, config=CONFIG, busy=(), resend=never)
    assert planned.given_up == [delivery] and planned.step.deliveries == []
    assert planned.step.state.pending == {}
    (alert,) = planned.step.changed
    assert alert.notifications[-1].detail == UNKNOWN_OUTCOME
    assert history(planned.step.state)[-1] == ("failed", True)


def test_given_up_after_the_horizon_with_a_final_failed_record() -> None:
    state, delivery = opened()
    state = fail_at(state, delivery, T0)
    late = T0 + timedelta(seconds=RETRY.horizon_s)
    entry = state.pending[delivery.notification_id]
    gone = settle(state, entry, delivered=False, at=late, policy=RETRY)
    assert gone.kind == "given_up" and gone.state.pending == {}
    (alert,) = gone.state.alerts.values()
    assert alert.notifications[-1].final and alert.notifications[-1].outcome is FAILED
    assert "given up" in (alert.notifications[-1].detail or "")
    assert undelivered([gone.state]) == {"retrying": 0, "given_up": 1}


def test_hours_of_failures_keep_the_history_short() -> None:
    state, delivery = opened()
    at = T0
    for _ in range(40):
        entry = state.pending[delivery.notification_id]
        state = fail_at(state, entry, at)
        nxt = state.pending[delivery.notification_id].next_attempt_at
        assert nxt is not None
        at = nxt
        state = plan(state, now=at, config=None, busy=(), resend=always).step.state
    records = history(state)
    assert records[0] == ("queued", False) and len(records) == 1 + AUDITED_FAILURES
    (alert,) = state.alerts.values()
    assert "40 failed attempts" in (alert.notifications[-1].detail or "")


def test_fallback_after_the_primary_fails_for_its_delay_once() -> None:
    state, delivery = opened()
    state = fail_at(state, delivery, T0)
    for _ in range(3):  # the primary keeps failing and being retried
        state = plan(
            state, now=T0 + timedelta(seconds=600), config=CONFIG, busy=(), resend=always
        ).step.state
        state = fail_at(state, state.pending[delivery.notification_id], T0 + timedelta(seconds=600))
    before = plan(state, now=T0 + timedelta(seconds=899), config=CONFIG, busy=(), resend=always)
    assert before.fallbacks == []
    due = plan(state, now=T0 + timedelta(seconds=900), config=CONFIG, busy=(), resend=always)
    (backup,) = due.fallbacks
    assert backup.channel == "sms" and backup.fallback_for == "ward", "not the failing channel"
    assert backup.notification_id != delivery.notification_id
    assert "fallback: ward failing for 15 min" in backup.title
    assert backup in due.step.deliveries
    assert due.step.state.pending[delivery.notification_id].fell_back
    assert history(due.step.state, "sms") == [("queued", False)]
    later = plan(
        due.step.state,
        now=T0 + timedelta(hours=1),
        config=CONFIG,
        busy={backup.notification_id},
        resend=always,
    )
    assert later.fallbacks == [], "once per delivery"


def test_no_retry_once_a_person_took_the_alert_but_system_resolves_do_not_stop_it() -> None:
    state, delivery = opened()
    state = fail_at(state, delivery, T0)
    (alert,) = state.alerts.values()
    acked, _ = acknowledge(alert, by="nurse-7", now=T0 + timedelta(seconds=5))
    taken = state.model_copy(update={"alerts": {alert.fingerprint: acked}})
    planned = plan(taken, now=T0 + timedelta(seconds=10), config=CONFIG, busy=(), resend=always)
    assert planned.cancelled and planned.step.deliveries == [] and planned.step.state.pending == {}
    (updated,) = planned.step.changed
    assert "acknowledged by nurse-7" in (updated.notifications[-1].detail or "")
    assert updated.status is AlertState.ACKNOWLEDGED
    assert undelivered([planned.step.state]) == {"retrying": 0, "given_up": 0}

    quiet = on_tick(state, config=CONFIG, policy=GROUPING, now=T0 + timedelta(hours=3)).state
    (resolved,) = quiet.alerts.values()
    assert resolved.status is AlertState.RESOLVED and resolved.resolved_by == "pghd"
    resumed = plan(quiet, now=T0 + timedelta(hours=3), config=CONFIG, busy=(), resend=always)
    sent = {d.channel: d.notification_id for d in resumed.step.deliveries}
    assert sent["ward"] == delivery.notification_id, "still retried"
    assert "sms" in sent, "failing for 3 h: the fallback too"


def test_undelivered_counts_entries_past_their_first_attempt() -> None:
    state, delivery = opened()
    assert undelivered([state]) == {"retrying": 0, "given_up": 0}
    failed = fail_at(state, delivery, T0)
    assert undelivered([failed, state]) == {"retrying": 1, "given_up": 0}


def test_the_outbox_survives_a_restart_through_the_changelog() -> None:
    state, delivery = opened()
    failed = fail_at(state, delivery, T0)
    restored = PatientState.model_validate(failed.model_dump(mode="json"))
    assert restored == failed
    entry = restored.pending[delivery.notification_id]
    assert entry.next_attempt_at is not None and not entry.sending
    planned = plan(restored, now=entry.next_attempt_at, config=CONFIG, busy=(), resend=never)
    assert [d.attempts for d in planned.step.deliveries] == [2], "a due retry, not an unknown"


def test_the_fallback_skips_channels_already_told_in_that_round() -> None:
    config = RoutingConfig.model_validate(
        {
            "channels": CONFIG.channels,
            "routes": [
                {
                    "name": "critical",
                    "escalation": [{"after_s": 0, "channels": ["ward", "lead"]}],
                    "repeat_interval_s": None,
                    "fallback": ["lead", "sms"],
                    "fallback_after_s": 60,
                }
            ],
        }
    )
    fresh = PatientState(patient_id="p1", partition=0)
    step = on_anomaly(fresh, make_anomaly(detected_at=T0), config=config, policy=GROUPING, now=T0)
    ward = next(d for d in step.deliveries if d.channel == "ward")
    lead = next(d for d in step.deliveries if d.channel == "lead")
    state = settle(step.state, lead, delivered=True, at=T0, policy=RETRY).state
    state = fail_at(state, ward, T0)
    due = plan(state, now=T0 + timedelta(seconds=60), config=config, busy=(), resend=always)
    assert [d.channel for d in due.fallbacks] == ["sms"]


def test_a_fallback_to_a_channel_not_cleared_gets_the_brief() -> None:
    cleared = CONFIG.model_copy(update={"cleared_channels": ["ward"]})
    fresh = PatientState(patient_id="p-secret", partition=0)
    anomaly = make_anomaly(detected_at=T0, patient_id="p-secret")
    step = on_anomaly(fresh, anomaly, config=cleared, policy=GROUPING, now=T0)
    (delivery,) = step.deliveries
    assert "p-secret" in delivery.title, "the cleared primary is told who"
    state = fail_at(step.state, delivery, T0)
    due = plan(state, now=T0 + timedelta(seconds=900), config=cleared, busy=(), resend=always)
    (backup,) = due.fallbacks
    assert backup.channel == "sms" and "p-secret" not in backup.title + backup.body
    assert backup.title.startswith("[critical] pghd alert (fallback: ward failing")
