"""Pure routing: routes by team, severity and time of day; escalation; repeat; budget; digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from alerts.digest import WINDOW, digest
from alerts.lifecycle import (
    Escalate,
    GroupingPolicy,
    Notify,
    Page,
    acknowledge,
    apply_anomaly,
    resolve,
)
from alerts.pending import plan_deliveries
from alerts.routing import (
    RECHECK,
    RoutingConfig,
    due_escalations,
    late_note,
    load_routing_config,
    plan_notifications,
)
from pghd import wire
from pghd.alerting import Alert, NotificationOutcome
from pghd.contracts import Severity

from .conftest import make_anomaly

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday, noon in London
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "alerts" / "routing.example.json"

CONFIG = RoutingConfig.model_validate(
    {
        "channels": {
            "nurses": "json://127.0.0.1:1/nurses",
            "doctor": "json://127.0.0.1:1/doctor",
            "lead": "json://127.0.0.1:1/lead",
            "ward-log": "json://127.0.0.1:1/log",
            "night": "json://127.0.0.1:1/night",
            "cardio": "json://127.0.0.1:1/cardio",
        },
        "patient_teams": {"p-cardio": "cardio"},
        "default_team": "ward",
        "routes": [
            {
                "name": "ward-critical",
                "teams": ["ward"],
                "severities": ["critical"],
                "escalation": [
                    {"after_s": 0, "channels": ["nurses"]},
                    {"after_s": 600, "channels": ["doctor"]},
                    {"after_s": 1800, "channels": ["doctor", "lead"]},
                ],
                "repeat_interval_s": 3600,
            },
            {
                "name": "ward-log",
                "teams": ["ward"],
                "escalation": [{"after_s": 0, "channels": ["ward-log"]}],
                "repeat_interval_s": None,
            },
            {
                "name": "ward-day",
                "teams": ["ward"],
                "severities": ["warning"],
                "active": {"start": "08:00", "end": "20:00", "timezone": "Europe/London"},
                "escalation": [{"after_s": 0, "channels": ["nurses"]}],
            },
            {
                "name": "ward-night",
                "teams": ["ward"],
                "severities": ["warning"],
                "active": {"start": "20:00", "end": "08:00", "timezone": "Europe/London"},
                "escalation": [{"after_s": 0, "channels": ["night"]}],
            },
            {
                "name": "cardio",
                "teams": ["cardio"],
                "escalation": [{"after_s": 0, "channels": ["cardio"]}],
            },
        ],
        "grouping": {"group_interval_s": 3600},
        "budget": {"max_notifications": 3},
    }
)
POLICY: GroupingPolicy = CONFIG.grouping


def opened(
    severity: Severity = Severity.CRITICAL, *, at: datetime = T0, patient: str = "p1", **kw: Any
) -> Alert:
    """An alert opened by one anomaly at ``at``, not yet routed."""
    first = make_anomaly(
        anomaly_id=f"an-{patient}-{at.isoformat()}",
        patient_id=patient,
        severity=severity,
        observed_at=at,
        detected_at=at,
        **kw,
    )
    alert, actions = apply_anomaly(None, first, policy=POLICY, now=at)
    assert Page("opened") in actions
    return alert


def routed(
    severity: Severity = Severity.CRITICAL, *, at: datetime = T0
) -> tuple[Alert, list[Notify]]:
    return plan_notifications(opened(severity, at=at), config=CONFIG, now=at)


def by_route(notifies: list[Notify]) -> dict[str, tuple[str, ...]]:
    return {n.route: n.channels for n in notifies}


def test_a_burst_of_100_anomalies_notifies_each_route_once() -> None:
    alert: Alert | None = None
    notifies: list[Notify] = []
    for n in range(100):
        at = T0 + timedelta(seconds=5 * n)
        anomaly = make_anomaly(
            anomaly_id=f"an-{n}", severity=Severity.CRITICAL, observed_at=at, detected_at=at
        )
        alert, actions = apply_anomaly(alert, anomaly, policy=POLICY, now=at)
        if Page("opened") in actions:
            alert, sent = plan_notifications(alert, config=CONFIG, now=at)
            notifies += sent
    assert alert is not None and alert.anomaly_count == 100
    assert by_route(notifies) == {"ward-critical": ("nurses",), "ward-log": ("ward-log",)}
    [critical] = [n for n in notifies if n.route == "ward-critical"]
    assert critical.channel_urls == ("json://127.0.0.1:1/nurses",)
    assert "json://" not in repr(critical)
    assert (critical.level, critical.attempt, critical.reason) == (1, 1, "opened")
    assert critical.title == "[critical] patient p1 heart_rate"
    assert f"alert_id: {alert.alert_id}" in critical.body
    assert {(r.route, r.channel, r.outcome) for r in alert.notifications} == {
        ("ward-critical", "nurses", NotificationOutcome.QUEUED),
        ("ward-log", "ward-log", NotificationOutcome.QUEUED),
    }
    assert alert.escalation_level == 1
    assert alert.next_notify_at == T0 + timedelta(seconds=600)


def test_unacknowledged_critical_escalates_to_step_2_after_its_delay_and_not_before() -> None:
    alert, _ = routed()
    early = T0 + timedelta(seconds=599)
    assert due_escalations(alert, config=CONFIG, now=early) == (alert, [])
    escalated, actions = due_escalations(alert, config=CONFIG, now=T0 + timedelta(seconds=600))
    assert actions[0] == Escalate(alert_id=alert.alert_id, level=2)
    notifies = [a for a in actions if isinstance(a, Notify)]
    assert by_route(notifies) == {"ward-critical": ("doctor",)}
    assert notifies[0].reason == "escalation" and notifies[0].attempt == 2
    assert "escalated: step 2" in notifies[0].title
    assert escalated.escalation_level == 2
    assert escalated.next_notify_at == T0 + timedelta(seconds=1800)

    third, actions = due_escalations(escalated, config=CONFIG, now=T0 + timedelta(seconds=1800))
    assert Escalate(alert_id=alert.alert_id, level=3) in actions
    assert by_route([a for a in actions if isinstance(a, Notify)]) == {
        "ward-critical": ("doctor", "lead")
    }
    # after the last step: repeat every repeat_interval_s
    assert third.next_notify_at == T0 + timedelta(seconds=1800 + 3600)
    assert due_escalations(third, config=CONFIG, now=T0 + timedelta(seconds=5399))[1] == []
    repeated, actions = due_escalations(third, config=CONFIG, now=T0 + timedelta(seconds=5400))
    assert [(a.route, a.channels, a.reason) for a in actions if isinstance(a, Notify)] == [
        ("ward-critical", ("doctor", "lead"), "repeat")
    ]
    assert not any(isinstance(a, Escalate) for a in actions)
    assert repeated.escalation_level == 3
    assert repeated.next_notify_at == T0 + timedelta(seconds=5400 + 3600)


def test_acknowledged_or_resolved_alerts_never_escalate() -> None:
    alert, _ = routed()
    taken, _ = acknowledge(alert, by="nurse-7", now=T0 + timedelta(seconds=60))
    assert taken.next_notify_at is None
    assert due_escalations(taken, config=CONFIG, now=T0 + timedelta(hours=5)) == (taken, [])
    closed, _ = resolve(alert, by="nurse-7", reason="ok", now=T0 + timedelta(seconds=60))
    assert due_escalations(closed, config=CONFIG, now=T0 + timedelta(hours=5)) == (closed, [])
    # an alert stored with a stale next_notify_at is cleared, not escalated
    stale = taken.model_copy(update={"next_notify_at": T0 + timedelta(seconds=600)})
    cleared, actions = due_escalations(stale, config=CONFIG, now=T0 + timedelta(hours=1))
    assert actions == [] and cleared.next_notify_at is None
    assert plan_notifications(closed, config=CONFIG, now=T0) == (closed, [])


def test_severity_rise_renotifies_once_at_the_current_step() -> None:
    alert, first = routed(Severity.WARNING)
    assert by_route(first) == {"ward-log": ("ward-log",), "ward-day": ("nurses",)}
    worse = make_anomaly(
        anomaly_id="an-worse",
        severity=Severity.CRITICAL,
        observed_at=T0 + timedelta(minutes=2),
        detected_at=T0 + timedelta(minutes=2),
    )
    raised, actions = apply_anomaly(alert, worse, policy=POLICY, now=T0 + timedelta(minutes=2))
    assert Page("severity_raised") in actions
    raised, again = plan_notifications(
        raised, config=CONFIG, now=T0 + timedelta(minutes=2), reason="severity_raised"
    )
    assert by_route(again) == {"ward-critical": ("nurses",), "ward-log": ("ward-log",)}
    assert all(n.reason == "severity_raised" and n.attempt == 2 for n in again)
    assert "(severity raised)" in again[0].title
    # ward-critical first notified now: its step 2 counts from here
    assert raised.next_notify_at == T0 + timedelta(minutes=2, seconds=600)

    taken, _ = acknowledge(alert, by="nurse-7", now=T0 + timedelta(minutes=1))
    taken, actions = apply_anomaly(taken, worse, policy=POLICY, now=T0 + timedelta(minutes=2))
    taken, told = plan_notifications(
        taken, config=CONFIG, now=T0 + timedelta(minutes=2), reason="severity_raised"
    )
    assert told and taken.next_notify_at is None  # told it got worse, but no escalation


def test_time_of_day_routing() -> None:
    day = T0.replace(hour=12)  # 12:00 GMT
    night = T0.replace(hour=23)
    _, by_day = routed(Severity.WARNING, at=day)
    _, by_night = routed(Severity.WARNING, at=night)
    assert by_route(by_day) == {"ward-log": ("ward-log",), "ward-day": ("nurses",)}
    assert by_route(by_night) == {"ward-log": ("ward-log",), "ward-night": ("night",)}


def test_care_team_routing() -> None:
    alert = opened(Severity.WARNING, patient="p-cardio")
    _, notifies = plan_notifications(alert, config=CONFIG, now=T0)
    assert by_route(notifies) == {"cardio": ("cardio",)}


def test_escalation_due_while_its_route_is_out_of_hours_is_looked_at_again() -> None:
    config = RoutingConfig.model_validate(
        {
            "channels": {"a": "json://h/a", "b": "json://h/b"},
            "routes": [
                {"name": "always", "escalation": [{"after_s": 0, "channels": ["a"]}]},
                {
                    "name": "office",
                    "active": {"start": "09:00", "end": "17:00"},
                    "escalation": [
                        {"after_s": 0, "channels": ["a"]},
                        {"after_s": 600, "channels": ["b"]},
                    ],
                },
            ],
        }
    )
    at = T0.replace(hour=16, minute=55)
    alert, _ = plan_notifications(opened(at=at), config=config, now=at)
    due = at + timedelta(seconds=600)  # 17:05, office closed
    later, actions = due_escalations(alert, config=config, now=due)
    assert actions == [] and later.next_notify_at == due + RECHECK
    assert later.escalation_level == 1


def test_budget_overflow_goes_to_the_daily_digest_critical_still_pages() -> None:
    alerts: list[Alert] = []
    for n, metric in enumerate(["heart_rate", "spo2", "body_temperature", "respiratory_rate"]):
        unit = {"heart_rate": "/min", "spo2": "%", "body_temperature": "Cel"}.get(metric, "/min")
        alert = opened(
            Severity.WARNING,
            at=T0 + timedelta(minutes=n),
            metric=metric,
            channel=metric,
            unit=unit,
            explanation=f"{metric} departs from this patient's usual",
        )
        alert, notifies = plan_notifications(
            alert, config=CONFIG, now=T0 + timedelta(minutes=n), patient_alerts=alerts
        )
        alerts.append(alert)
        assert bool(notifies) == (n < 3), n
    held = alerts[3]
    assert [r.outcome for r in held.notifications] == [NotificationOutcome.DIGEST]
    assert held.next_notify_at is None and held.escalation_level == 0

    critical = opened(
        Severity.CRITICAL,
        at=T0 + timedelta(minutes=9),
        metric="blood_glucose",
        channel="blood_glucose",
        unit="mg/dL",
    )
    _, notifies = plan_notifications(
        critical, config=CONFIG, now=T0 + timedelta(minutes=9), patient_alerts=alerts
    )
    assert notifies, "critical findings are never held back"

    # the budget is per patient and per 24 h
    other, notifies = plan_notifications(
        opened(Severity.WARNING, patient="p2"), config=CONFIG, now=T0, patient_alerts=alerts
    )
    assert notifies
    next_day = T0 + timedelta(days=1, minutes=5)
    _, notifies = plan_notifications(
        opened(Severity.WARNING, at=next_day, metric="spo2", channel="spo2", unit="%"),
        config=CONFIG,
        now=next_day,
        patient_alerts=alerts,
    )
    assert notifies

    day = T0 + timedelta(hours=20)
    text = digest([*alerts, other], since=day - WINDOW, until=day, title="digest")
    lines = text.splitlines()
    assert lines[0] == "digest: 1 findings, 1 patients"
    assert "patient p1 respiratory_rate [warning] open" in lines[1]
    assert held.alert_id in lines[1]
    assert digest(alerts, since=day, until=day + WINDOW, title="digest").endswith(
        "no findings below critical were held back"
    )


def test_the_example_config_routes_a_critical_alert() -> None:
    config = load_routing_config(EXAMPLE)
    alert, notifies = plan_notifications(opened(patient="sim-0042"), config=config, now=T0)
    assert by_route(notifies) == {"ward-a-critical": ("ward-a-nurses",)}
    assert alert.next_notify_at == T0 + timedelta(seconds=900)


def test_an_alert_out_of_hours_for_every_route_waits_for_the_first_window() -> None:
    config = RoutingConfig.model_validate(
        {
            "channels": {"a": "json://h/a", "b": "json://h/b"},
            "routes": [
                {
                    "name": "office",
                    "active": {"start": "09:00", "end": "17:00"},
                    "escalation": [
                        {"after_s": 0, "channels": ["a"]},
                        {"after_s": 600, "channels": ["b"]},
                    ],
                }
            ],
        }
    )
    at = T0.replace(hour=8, minute=50)
    waiting, notifies = plan_notifications(opened(at=at), config=config, now=at)
    assert notifies == [] and waiting.next_notify_at == at + RECHECK
    still, actions = due_escalations(waiting, config=config, now=at + RECHECK)
    assert actions == [] and still.next_notify_at == at + 2 * RECHECK
    nine = T0.replace(hour=9)
    sent, actions = due_escalations(still, config=config, now=nine)
    assert [(type(a).__name__, getattr(a, "reason", None)) for a in actions] == [
        ("Notify", "opened")
    ]
    # step 2 counts from the route's first notification, not from the alert's opening
    assert sent.escalation_level == 1 and sent.next_notify_at == nine + timedelta(seconds=600)
    assert due_escalations(sent, config=config, now=nine + timedelta(seconds=599))[1] == []
    _, actions = due_escalations(sent, config=config, now=nine + timedelta(seconds=600))
    assert Escalate(alert_id=sent.alert_id, level=2) in actions
    # no route for it at any time: it does not wait
    nobody = config.model_copy(
        update={"routes": [config.routes[0].model_copy(update={"teams": ["x"]})]}
    )
    alone, notifies = plan_notifications(opened(at=at), config=nobody, now=at)
    assert notifies == [] and alone.next_notify_at is None


def test_a_route_joining_on_severity_rise_escalates_from_its_own_first_notification() -> None:
    alert, _ = routed(Severity.WARNING)  # ward-log and ward-day at T0
    rise_at = T0 + timedelta(hours=2)
    worse = make_anomaly(
        anomaly_id="an-worse", severity=Severity.CRITICAL, observed_at=rise_at, detected_at=rise_at
    )
    alert, _ = apply_anomaly(alert, worse, policy=POLICY, now=rise_at)
    alert, notifies = plan_notifications(
        alert, config=CONFIG, now=rise_at, reason="severity_raised"
    )
    assert "ward-critical" in by_route(notifies)
    # the nurses get their 600 s before the doctor is called, not an immediate escalation
    assert alert.next_notify_at == rise_at + timedelta(seconds=600)
    assert due_escalations(alert, config=CONFIG, now=rise_at + timedelta(seconds=599))[1] == []
    _, actions = due_escalations(alert, config=CONFIG, now=rise_at + timedelta(seconds=600))
    assert by_route([a for a in actions if isinstance(a, Notify)]) == {"ward-critical": ("doctor",)}


def test_a_route_fallback_names_defined_channels_and_defaults_to_15_minutes() -> None:
    base = CONFIG.model_dump(mode="json")
    base["routes"][0]["fallback"] = ["lead"]
    route = RoutingConfig.model_validate(base).routes[0]
    assert route.fallback == ["lead"] and route.fallback_after_s == 900
    base["routes"][0]["fallback"] = ["pager"]
    with pytest.raises(ValidationError, match="fallback: undefined channels"):
        RoutingConfig.model_validate(base)
    base["routes"][0]["fallback"] = []
    with pytest.raises(ValidationError):
        RoutingConfig.model_validate(base)


def test_late_alerts_say_how_late_and_round_trip() -> None:
    old = T0 - timedelta(hours=26, minutes=40)
    alert, _ = apply_anomaly(None, make_anomaly(detected_at=old), policy=GroupingPolicy(), now=T0)
    assert late_note(alert, now=T0) == ""
    late = alert.model_copy(update={"late": True})
    assert late_note(late, now=T0) == " (late: detected 26 h ago)"
    assert late_note(late, now=old + timedelta(minutes=50)) == " (late: detected 50 min ago)"
    _, notifies = plan_notifications(late, config=CONFIG, now=T0)
    assert notifies and all(n.title.endswith("(late: detected 26 h ago)") for n in notifies)
    assert wire.decode(Alert, wire.encode(late)).late


def test_a_channel_not_cleared_for_patient_data_gets_the_severity_and_a_link_only() -> None:
    config = CONFIG.model_copy(
        update={
            "cleared_channels": ["doctor"],
            "alert_link": "https://care.example.org/alerts/{alert_id}",
        }
    )
    alert = opened(patient="p-secret")
    alert, notifies = plan_notifications(alert, config=config, now=T0)
    deliveries = {d.channel: d for d in plan_deliveries(notifies, now=T0)}
    nurses = deliveries["nurses"]  # not cleared
    assert "p-secret" not in nurses.title + nurses.body
    assert alert.summary not in nurses.body and alert.problem not in nurses.title
    assert nurses.title == "[critical] pghd alert"
    assert nurses.body.endswith(f"https://care.example.org/alerts/{alert.alert_id}")
    # the doctor (cleared) is told who and what when the alert escalates to them
    later = T0 + timedelta(seconds=600)
    _, escalated = due_escalations(alert, config=config, now=later)
    (doctor,) = plan_deliveries([n for n in escalated if isinstance(n, Notify)], now=later)
    assert doctor.channel == "doctor" and "p-secret" in doctor.title
    assert alert.summary in doctor.body


def test_without_a_link_the_brief_names_the_care_team_api_path() -> None:
    alert, notifies = plan_notifications(opened(patient="p-9"), config=CONFIG, now=T0)
    (nurses,) = [d for d in plan_deliveries(notifies, now=T0) if d.channel == "nurses"]
    assert nurses.body.endswith(f"/v1/alerts/{alert.alert_id}") and "p-9" not in nurses.body


def test_cleared_channels_and_the_link_are_checked() -> None:
    raw = CONFIG.model_dump()
    with pytest.raises(ValidationError, match="cleared_channels: undefined channels"):
        RoutingConfig.model_validate({**raw, "cleared_channels": ["pager"]})
    with pytest.raises(ValidationError, match="alert_link must hold"):
        RoutingConfig.model_validate({**raw, "alert_link": "https://care.example.org/"})
