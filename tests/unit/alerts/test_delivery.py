"""The outbox's I/O (Courier) against a real HTTP receiver, and the re-send policy."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pytest

from alerts.backoff import RetryPolicy
from alerts.delivery import UNKNOWN_OUTCOME, Courier, resume_policy
from alerts.metrics import AlertsMetrics
from alerts.notify import send_notification
from alerts.pending import PendingDelivery
from alerts.state import PatientState, Step, on_anomaly
from pghd.alerting import GroupingPolicy, RoutingConfig
from pghd.contracts import Severity

from .conftest import Receiver, make_anomaly

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class World:
    """The table, the clock and the metrics a Courier works against."""

    def __init__(self, receiver: Receiver, *, policy: RetryPolicy) -> None:
        self.config = RoutingConfig.model_validate(
            {
                "channels": {"ward": receiver.json_url("ward")},
                "routes": [
                    {
                        "name": "r",
                        "escalation": [{"after_s": 0, "channels": ["ward"]}],
                        "repeat_interval_s": None,
                    }
                ],
            }
        )
        fresh = PatientState(patient_id="p1", partition=0)
        step = on_anomaly(
            fresh,
            make_anomaly(detected_at=T0),
            config=self.config,
            policy=GroupingPolicy(),
            now=T0,
        )
        self.table: dict[str, PatientState] = {"p1": step.state}
        (self.delivery,) = step.deliveries
        self.now = T0
        self.metrics = AlertsMetrics()
        self.courier = Courier(
            send=self.send,
            load=self.table.get,
            apply=self.apply,
            owned=lambda: {0},
            policy=policy,
            metrics=self.metrics,
            config=self.config,
            clock=lambda: self.now,
        )

    async def send(self, d: PendingDelivery) -> bool:
        return await send_notification(
            self.config.channels[d.channel],
            title=d.title,
            body=d.body,
            severity=d.severity,
            notification_id=d.notification_id,
        )

    def apply(self, step: Step) -> None:
        if step.dirty:
            self.table[step.state.patient_id] = step.state
        self.courier.in_flight.update(d.notification_id for d in step.deliveries)

    async def run_until_settled(self, *, limit: int = 100) -> None:
        """First attempt, then every due retry at its time, as the worker's tick does."""
        await self.courier.attempt(self.delivery)
        for _ in range(limit):
            entry = self.table["p1"].pending.get(self.delivery.notification_id)
            if entry is None:
                return
            assert entry.next_attempt_at is not None
            self.now = entry.next_attempt_at
            planned = self.courier.plan(self.table["p1"], now=self.now)
            self.apply(planned.step)
            for d in planned.step.deliveries:
                await self.courier.attempt(d)
        raise AssertionError("never settled")

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_fails_three_times_then_delivers_once_every_attempt_recorded(
    receiver: Receiver,
) -> None:
    receiver.fail_first = 3
    world = World(receiver, policy=RetryPolicy(backoff_s=1.0, max_backoff_s=3.0))
    await world.run_until_settled()
    assert receiver.calls == 4 and len(receiver.bodies) == 1
    assert receiver.bodies[0]["notification_id"] == world.delivery.notification_id
    (alert,) = world.table["p1"].alerts.values()
    assert [(r.outcome.value, r.final) for r in alert.notifications] == [
        ("queued", False),
        ("failed", False),
        ("failed", False),
        ("failed", False),
        ("delivered", True),
    ]
    waits = [b.at - a.at for a, b in itertools.pairwise(alert.notifications[1:])]
    assert all(timedelta(0) < w <= timedelta(seconds=3) for w in waits), "backoff, capped"
    assert world.sample("notifications_total", channel="ward", outcome="retry") == 3
    assert world.sample("notifications_total", channel="ward", outcome="success") == 1
    assert world.table["p1"].pending == {}


async def test_gives_up_at_the_horizon_visibly(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_first = 10_000
    policy = RetryPolicy(backoff_s=60.0, max_backoff_s=600.0, horizon_s=3600.0)
    world = World(receiver, policy=policy)
    with caplog.at_level(logging.ERROR, logger="alerts.delivery"):
        await world.run_until_settled()
    assert world.now == T0 + timedelta(hours=1), "the last try at the horizon"
    assert 5 <= receiver.calls <= 20 and receiver.bodies == []
    (alert,) = world.table["p1"].alerts.values()
    last = alert.notifications[-1]
    assert last.final and last.outcome.value == "failed" and "given up" in (last.detail or "")
    assert any("GIVEN UP" in r.getMessage() for r in caplog.records)
    assert world.sample("notifications_given_up_total", channel="ward", reason="horizon") == 1
    assert world.sample("notifications_total", channel="ward", outcome="failure") == 1


async def test_a_restarted_worker_resends_an_unknown_outcome_once(receiver: Receiver) -> None:
    world = World(receiver, policy=RetryPolicy())
    # the previous process started the first attempt and died: nobody here is sending it
    planned = world.courier.plan(world.table["p1"], now=T0 + timedelta(minutes=1))
    world.apply(planned.step)
    (again,) = planned.step.deliveries
    assert again.notification_id == world.delivery.notification_id and again.resent
    assert world.courier.plan(world.table["p1"], now=T0).step.deliveries == [], "in flight"
    await world.courier.attempt(again)
    assert [b["notification_id"] for b in receiver.bodies] == [world.delivery.notification_id]
    assert world.table["p1"].pending == {} and world.courier.in_flight == set()


def test_unknown_outcomes_are_resent_where_a_receiver_dedups_or_a_page_would_be_lost() -> None:
    assert resume_policy("json://host/hook") == "resend"
    assert resume_policy("jsons://host/hook", Severity.INFO) == "resend"
    assert resume_policy("form://host/hook") == resume_policy("xml://host/hook") == "resend"
    for url in ("mailto://user:pw@example.org", "twilio://sid:token@1555/1666", "slack://a/b/c"):
        assert resume_policy(url, Severity.CRITICAL) == "resend", "a duplicate beats a lost page"
        assert resume_policy(url, Severity.WARNING) == "resend"
        assert resume_policy(url, Severity.INFO) == "give_up"
        assert resume_policy(url) == "give_up", "digests: info"
    assert resume_policy(None, Severity.CRITICAL) == "give_up"
    assert "not re-sent" in UNKNOWN_OUTCOME
