"""The table state glue: anomalies, commands and ticks in; state, alerts, deliveries out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.audit import record_attempt
from alerts.state import (
    PatientState,
    Where,
    decode,
    notification_id,
    on_anomaly,
    on_command,
    on_tick,
    remember_annotation,
)
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind, Silence
from pghd.alerting import (
    AlertState,
    GroupingPolicy,
    NotificationOutcome,
    RoutingConfig,
)
from pghd.contracts import Anomaly, DeadLetter, Phase, Severity

from .conftest import make_anomaly

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = GroupingPolicy(group_interval_s=3600, auto_resolve_after_s=7200)
CONFIG = RoutingConfig.model_validate(
    {
        "channels": {"a": "json://127.0.0.1:1/a", "b": "json://127.0.0.1:1/b", "c": "mailto://x"},
        "routes": [
            {
                "name": "critical",
                "severities": ["critical"],
                "escalation": [
                    {"after_s": 0, "channels": ["a"]},
                    {"after_s": 60, "channels": ["c"]},
                ],
                "repeat_interval_s": None,
            },
            {"name": "all", "escalation": [{"after_s": 0, "channels": ["b"]}]},
        ],
    }
)


def fresh() -> PatientState:
    return PatientState(patient_id="p1", partition=3)


def anomaly(n: int, *, at: datetime = T0, **changes: object) -> Anomaly:
    return make_anomaly(anomaly_id=f"an-{n}", detected_at=at, **changes)


def opened(at: datetime = T0) -> PatientState:
    return on_anomaly(fresh(), anomaly(1, at=at), config=CONFIG, policy=POLICY, now=at).state


def test_a_burst_is_one_alert_with_one_delivery_per_route_and_channel() -> None:
    state, deliveries, published = fresh(), [], []
    for n in range(100):
        now = T0 + timedelta(seconds=n)
        step = on_anomaly(state, anomaly(n, at=now), config=CONFIG, policy=POLICY, now=now)
        state = step.state
        deliveries += step.deliveries
        published += step.changed
    (alert,) = state.alerts.values()
    assert alert.anomaly_count == 100 and {a.alert_id for a in published} == {alert.alert_id}
    assert sorted((d.route, d.channel) for d in deliveries) == [("all", "b"), ("critical", "a")]
    assert set(state.pending) == {d.notification_id for d in deliveries}
    assert deliveries[0].notification_id == notification_id(
        alert_id=alert.alert_id, round=1, route=deliveries[0].route, channel=deliveries[0].channel
    )
    assert all(d.patient_id == "p1" and d.round == 1 for d in deliveries)


def test_a_replayed_anomaly_changes_nothing() -> None:
    state = opened()
    step = on_anomaly(state, anomaly(1), config=CONFIG, policy=POLICY, now=T0)
    assert not step.dirty and step.state is state and not step.deliveries


def test_without_routing_alerts_are_tracked_but_nobody_is_notified() -> None:
    step = on_anomaly(fresh(), anomaly(1), config=None, policy=POLICY, now=T0)
    assert step.changed and not step.deliveries and not step.state.pending
    assert [a.kind for a in step.annotations] == ["opened"]


def test_silenced_alert_is_not_paged() -> None:
    silence = Silence(
        matchers={"patient_id": "p1"}, starts_at=T0, ends_at=T0 + timedelta(hours=1), created_by="n"
    )
    state = fresh().model_copy(update={"silences": [silence]})
    step = on_anomaly(state, anomaly(1), config=CONFIG, policy=POLICY, now=T0)
    assert step.changed and not step.deliveries


def test_a_warning_is_inhibited_by_an_active_critical_alert_of_the_patient() -> None:
    state = opened()
    spo2 = anomaly(2, metric="spo2", channel="spo2", unit="%", value=91, severity=Severity.WARNING)
    step = on_anomaly(state, spo2, config=CONFIG, policy=POLICY, now=T0)
    assert len(step.state.alerts) == 2 and not step.deliveries


def test_escalation_is_due_after_the_delay_unless_acknowledged() -> None:
    state = opened()
    assert not on_tick(state, config=CONFIG, policy=POLICY, now=T0 + timedelta(seconds=30)).dirty
    due = on_tick(state, config=CONFIG, policy=POLICY, now=T0 + timedelta(seconds=61))
    assert [(d.channel, d.round) for d in due.deliveries] == [("c", 2)]
    assert due.changed[0].escalation_level == 2

    (alert,) = state.alerts.values()
    ack = AlertCommand(
        command_id="c1",
        kind=CommandKind.ACKNOWLEDGE,
        patient_id="p1",
        alert_id=alert.alert_id,
        by="nurse-1",
        issued_at=T0,
    )
    step, outcome = on_command(state, ack, now=T0 + timedelta(seconds=10))
    assert outcome == "applied" and step.changed[0].status is AlertState.ACKNOWLEDGED
    assert [a.kind for a in step.annotations] == ["acknowledged"]
    later = on_tick(step.state, config=CONFIG, policy=POLICY, now=T0 + timedelta(seconds=120))
    assert not later.deliveries
    assert on_command(step.state, ack, now=T0)[1] == "unchanged"


def test_commands_on_unknown_or_resolved_alerts_are_reported() -> None:
    state = opened()
    (alert,) = state.alerts.values()
    base: dict[str, Any] = {"command_id": "c", "patient_id": "p1", "by": "n-1", "issued_at": T0}
    unknown = AlertCommand(kind=CommandKind.ACKNOWLEDGE, alert_id="al-nope", **base)
    assert on_command(state, unknown, now=T0)[1] == "unknown_alert"
    resolve = AlertCommand(kind=CommandKind.RESOLVE, alert_id=alert.alert_id, **base)
    step, outcome = on_command(state, resolve, now=T0)
    assert outcome == "applied" and step.changed[0].status is AlertState.RESOLVED
    ack = AlertCommand(kind=CommandKind.ACKNOWLEDGE, alert_id=alert.alert_id, **base)
    assert on_command(step.state, ack, now=T0)[1] == "invalid_state"


def test_silence_then_expire_it() -> None:
    silence = Silence(
        silence_id="s1",
        matchers={"patient_id": "p1"},
        starts_at=T0,
        ends_at=T0 + timedelta(hours=1),
        created_by="n",
    )
    base: dict[str, Any] = {"command_id": "c", "patient_id": "p1", "by": "n-1", "issued_at": T0}
    add = AlertCommand(kind=CommandKind.SILENCE, silence=silence, **base)
    step, outcome = on_command(fresh(), add, now=T0)
    assert outcome == "applied" and step.state.silences == [silence]
    expire = AlertCommand(kind=CommandKind.EXPIRE_SILENCE, silence_id="s1", **base)
    step, outcome = on_command(step.state, expire, now=T0)
    assert outcome == "applied" and step.state.silences == []
    # ended silences are dropped by the tick
    state = fresh().model_copy(update={"silences": [silence]})
    assert (
        on_tick(state, config=CONFIG, policy=POLICY, now=T0 + timedelta(hours=2)).state == fresh()
    )


def test_quiet_alert_auto_resolves_on_tick() -> None:
    state = opened()
    step = on_tick(state, config=CONFIG, policy=POLICY, now=T0 + timedelta(hours=3))
    (alert,) = step.changed
    assert alert.status is AlertState.RESOLVED and alert.resolved_by == "pghd"
    assert [a.kind for a in step.annotations] == ["resolved"] and not step.deliveries


def test_every_attempt_goes_into_the_audit_trail() -> None:
    step = on_anomaly(fresh(), anomaly(1), config=CONFIG, policy=POLICY, now=T0)
    delivery = next(d for d in step.deliveries if d.channel == "a")
    state = step.state
    for n in range(1, 4):
        state, _ = record_attempt(
            state,
            delivery,
            outcome=NotificationOutcome.FAILED,
            at=T0 + timedelta(seconds=n),
            detail="boom",
            final=False,
        )
        assert delivery.notification_id in state.pending
    state, alert = record_attempt(
        state,
        delivery,
        outcome=NotificationOutcome.DELIVERED,
        at=T0 + timedelta(seconds=9),
        final=True,
    )
    assert alert is not None and delivery.notification_id not in state.pending
    outcomes = [(r.outcome.value, r.final) for r in alert.notifications if r.channel == "a"]
    assert outcomes == [
        ("queued", False),
        ("failed", False),
        ("failed", False),
        ("failed", False),
        ("delivered", True),
    ]
    # routing still counts one round: the budget and escalation anchors are unchanged
    assert {r.attempt for r in alert.notifications} == {1}


def test_a_late_anomaly_opens_a_late_alert_that_pages_saying_so() -> None:
    old = T0 - timedelta(hours=26)
    step = on_anomaly(
        fresh(), anomaly(1, at=old), config=CONFIG, policy=POLICY, now=T0, late_after_s=86400
    )
    (alert,) = step.changed
    assert alert.late and alert.last_anomaly_at == old
    titles = {d.channel: d.title for d in step.deliveries}
    assert titles["a"] == "[critical] pghd alert (late: detected 26 h ago)"
    cleared = CONFIG.model_copy(update={"cleared_channels": ["a"]})
    told = on_anomaly(
        fresh(), anomaly(1, at=old), config=cleared, policy=POLICY, now=T0, late_after_s=86400
    )
    (to_a,) = [d for d in told.deliveries if d.channel == "a"]
    assert to_a.title == "[critical] patient p1 heart_rate (late: detected 26 h ago)"
    joined = on_anomaly(
        step.state,
        anomaly(2, at=old + timedelta(minutes=30)),
        config=CONFIG,
        policy=POLICY,
        now=T0,
        late_after_s=86400,
    )
    assert [(a.alert_id, a.late) for a in joined.changed] == [(alert.alert_id, True)]
    newer = on_anomaly(
        joined.state, anomaly(3, at=T0), config=CONFIG, policy=POLICY, now=T0, late_after_s=86400
    )
    superseded, current = newer.changed
    assert superseded.alert_id == alert.alert_id and superseded.status.value == "resolved"
    assert not current.late, "a fresh anomaly opens a timely alert"
    assert all("late" not in d.title for d in newer.deliveries)


def test_late_alerts_page_unless_turned_off_and_late_info_never_pages() -> None:
    old = T0 - timedelta(days=2)
    quiet = on_anomaly(
        fresh(),
        anomaly(1, at=old),
        config=CONFIG,
        policy=POLICY,
        now=T0,
        late_after_s=86400,
        page_late=False,
    )
    assert quiet.changed[0].late and quiet.deliveries == [] and quiet.state.pending == {}
    info = on_anomaly(
        fresh(),
        anomaly(1, at=old, severity=Severity.INFO),
        config=CONFIG,
        policy=POLICY,
        now=T0,
        late_after_s=86400,
    )
    assert info.changed[0].late and info.deliveries == []
    timely = on_anomaly(
        fresh(),
        anomaly(1, at=old, severity=Severity.INFO),
        config=CONFIG,
        policy=POLICY,
        now=old,
        late_after_s=86400,
    )
    assert not timely.changed[0].late and [d.channel for d in timely.deliveries] == ["b"]


def test_annotation_ids_are_kept_for_live_alerts_only() -> None:
    state = opened()
    (alert,) = state.alerts.values()
    assert remember_annotation(state, alert.alert_id, 42).annotations == {alert.alert_id: 42}
    assert remember_annotation(state, "al-gone", 7) == state


def test_state_round_trips_through_json() -> None:
    state = on_anomaly(fresh(), anomaly(1), config=CONFIG, policy=POLICY, now=T0).state
    assert PatientState.model_validate(state.model_dump(mode="json")) == state


def test_decode_dead_letters_bad_messages_and_wrong_keys() -> None:
    where = Where(topic="pghd.anomalies.v1", partition=1, offset=5, key="p2")
    wrong_key = decode(Anomaly, wire.encode(anomaly(1)), where=where, now=T0)
    assert isinstance(wrong_key, DeadLetter) and "patient_id" in wrong_key.reason
    garbage = decode(Anomaly, b"{nope", where=where, now=T0)
    assert isinstance(garbage, DeadLetter) and garbage.offset == 5 and garbage.stage == "alerts"
    assert isinstance(decode(Anomaly, None, where=where, now=T0), DeadLetter)
    good = decode(Anomaly, wire.encode(anomaly(1)), where=Where(key="p1"), now=T0)
    assert isinstance(good, Anomaly)


def _feed(state: PatientState, *anomalies: Anomaly) -> PatientState:
    for a in anomalies:
        state = on_anomaly(state, a, config=CONFIG, policy=POLICY, now=a.detected_at).state
    return state


def test_one_episode_on_two_problems_is_two_alerts_and_its_resolution_ends_both() -> None:
    temp = {"metric": "body_temperature", "channel": "body_temperature", "unit": "Cel"}
    onset = anomaly(1, episode_id="ep-1", phase=Phase.ONSET, value=38.9, **temp)
    heart = anomaly(2, at=T0 + timedelta(minutes=20), episode_id="ep-1", phase=Phase.UPDATE)
    state = _feed(fresh(), onset, heart)
    assert sorted(a.problem for a in state.alerts.values()) == ["body_temperature", "heart_rate"]
    assert all(a.active and a.episode_ids == ["ep-1"] for a in state.alerts.values())
    # The episode resolves on a temperature reading: the heart-rate alert resolves too,
    # and nobody is paged.
    end = anomaly(
        3,
        at=T0 + timedelta(hours=5),
        episode_id="ep-1",
        phase=Phase.RESOLVED,
        severity=Severity.INFO,
        value=37.0,
        **temp,
    )
    step = on_anomaly(state, end, config=CONFIG, policy=POLICY, now=end.detected_at)
    assert not step.deliveries
    assert {a.problem: a.status for a in step.state.alerts.values()} == {
        "body_temperature": AlertState.RESOLVED,
        "heart_rate": AlertState.RESOLVED,
    }
    assert all("episode resolved" in (a.resolved_reason or "") for a in step.changed)


def test_a_withdrawn_finding_ends_the_episode_only_in_its_own_problems_alert() -> None:
    temp = {"metric": "body_temperature", "channel": "body_temperature", "unit": "Cel"}
    onset = anomaly(1, episode_id="ep-1", phase=Phase.ONSET, value=38.9, **temp)
    heart = anomaly(2, at=T0 + timedelta(minutes=20), episode_id="ep-1", phase=Phase.UPDATE)
    gone = anomaly(
        3,
        at=T0 + timedelta(minutes=80),
        episode_id="ep-1",
        phase=Phase.WITHDRAWN,
        severity=Severity.INFO,
    )
    state = _feed(fresh(), onset, heart, gone)
    assert {a.problem: a.status for a in state.alerts.values()} == {
        "body_temperature": AlertState.OPEN,
        "heart_rate": AlertState.RESOLVED,
    }
