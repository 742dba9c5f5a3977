"""The daily digest: when it is due, what each team reads, and how the sender resumes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from alerts.digest import UNASSIGNED, digest_id, due_day, team_digests
from alerts.digest_sender import send_due_digests
from alerts.lifecycle import apply_anomaly
from pghd import topics, wire
from pghd.alerting import (
    Alert,
    DigestPolicy,
    DigestRecord,
    DigestState,
    GroupingPolicy,
    NotificationOutcome,
    NotificationRecord,
    RoutingConfig,
)
from pghd.contracts import Severity

from .conftest import make_anomaly

NOW = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
POLICY = DigestPolicy(at=time(7, 0), timezone="UTC", channels=["desk"])


def held(patient: str, *, at: datetime, metric: str = "heart_rate") -> Alert:
    """An alert whose notification went to the digest at ``at``."""
    anomaly = make_anomaly(
        anomaly_id=f"an-{patient}-{metric}",
        patient_id=patient,
        severity=Severity.WARNING,
        observed_at=at,
        detected_at=at,
        metric=metric,
        channel=metric,
    )
    alert, _ = apply_anomaly(None, anomaly, policy=GroupingPolicy(), now=at)
    record = NotificationRecord(
        channel="digest", route="budget", attempt=1, at=at, outcome=NotificationOutcome.DIGEST
    )
    return alert.model_copy(update={"notifications": [record]})


def config(**digest: object) -> RoutingConfig:
    return RoutingConfig.model_validate(
        {
            "channels": {"page": "json://h/page", "desk": "json://h/desk", "ward": "mailto://a@b"},
            "patient_teams": {"p1": "cardio"},
            "default_team": "ward-a",
            "routes": [{"name": "r", "escalation": [{"after_s": 0, "channels": ["page"]}]}],
            "digest": {"channels": ["desk"], **digest},
        }
    )


def test_the_digest_of_a_day_is_due_from_its_local_time() -> None:
    assert due_day(POLICY, now=NOW) == date(2026, 11, 25)
    assert due_day(POLICY, now=NOW.replace(hour=6)) == date(2026, 11, 24)
    london = DigestPolicy(at=time(7, 0), timezone="Asia/Tokyo", channels=["x"])
    assert due_day(london, now=datetime(2026, 11, 24, 23, 0, tzinfo=UTC)) == date(2026, 11, 25)


def test_digest_channels_must_be_defined_and_zones_known() -> None:
    with pytest.raises(ValidationError, match="undefined channels"):
        config(team_channels={"cardio": ["nowhere"]})
    with pytest.raises(ValidationError, match="unknown time zone"):
        DigestPolicy(timezone="Mars/Olympus", channels=["x"])


def test_each_team_gets_its_last_24_hours_and_quiet_teams_hear_so() -> None:
    alerts = [
        held("p1", at=NOW - timedelta(hours=3)),
        held("p1", at=NOW - timedelta(hours=30), metric="spo2"),  # yesterday's digest
        held("p9", at=NOW - timedelta(hours=1)),  # default team
    ]
    cfg = config().model_copy(update={"default_team": None, "patient_teams": {"p1": "cardio"}})
    digests = team_digests(alerts, config=cfg, day=NOW.date(), until=NOW)
    assert set(digests) == {"cardio", UNASSIGNED}
    count, text = digests["cardio"]
    assert count == 1 and "patient p1 heart_rate" in text and "spo2" not in text
    quiet = team_digests([], config=config(), day=NOW.date(), until=NOW)
    assert quiet["ward-a"] == (0, quiet["ward-a"][1])
    assert quiet["ward-a"][1].endswith("no findings below critical were held back")


class FakeKafka:
    """The two compacted topics the sender reads, and what it publishes to one of them."""

    def __init__(self, alerts: list[Alert], records: list[DigestRecord] = ()) -> None:  # type: ignore[assignment]
        self.topics: dict[str, dict[bytes, bytes]] = {
            topics.ALERTS: {a.fingerprint.encode(): wire.encode(a) for a in alerts},
            topics.DIGESTS: {r.key.encode(): wire.encode(r) for r in records},
        }
        self.published: list[DigestRecord] = []
        self.sent: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str]] = []

    async def read(self, topic: str) -> dict[bytes, bytes]:
        return dict(self.topics[topic])

    async def publish(self, record: DigestRecord) -> None:
        self.published.append(record)
        self.topics[topics.DIGESTS][record.key.encode()] = wire.encode(record)

    async def send(self, url: str, title: str, body: str, notification_id: str) -> bool:
        self.sent.append((url, notification_id))
        self.bodies.append((url, body))
        return True


async def run(kafka: FakeKafka, cfg: RoutingConfig, now: datetime = NOW) -> list[DigestRecord]:
    return await send_due_digests(
        read=kafka.read, config=cfg, now=now, send=kafka.send, publish=kafka.publish
    )


async def test_intent_is_recorded_before_sending_and_a_day_is_sent_once() -> None:
    cfg = config(team_channels={"cardio": ["desk", "ward"]})
    kafka = FakeKafka([held("p1", at=NOW - timedelta(hours=2))])
    await run(kafka, cfg)
    cardio = [r for r in kafka.published if r.team == "cardio"]
    assert [r.state for r in cardio] == [DigestState.SENDING, DigestState.SENT]
    assert cardio[1].findings == 1
    assert {url for url, _ in kafka.sent} == {"json://h/desk", "mailto://a@b"}
    assert {nid for _, nid in kafka.sent} == {
        digest_id("cardio", NOW.date()),
        digest_id("ward-a", NOW.date()),
    }
    before = len(kafka.sent)
    await run(kafka, cfg, NOW + timedelta(minutes=5))
    assert len(kafka.sent) == before


async def test_after_a_crash_mid_send_only_deduplicating_channels_are_resent() -> None:
    cfg = config(team_channels={"cardio": ["desk", "ward"]})
    intent = DigestRecord(
        team="cardio",
        day=NOW.date(),
        state=DigestState.SENDING,
        notification_id=digest_id("cardio", NOW.date()),
        findings=1,
        at=NOW,
    )
    kafka = FakeKafka([held("p1", at=NOW - timedelta(hours=2))], [intent])
    written = {r.team: r for r in await run(kafka, cfg)}
    assert ("json://h/desk", intent.notification_id) in kafka.sent
    assert not any(url == "mailto://a@b" for url, _ in kafka.sent)
    assert written["cardio"].outcomes == {
        "ward": NotificationOutcome.FAILED,
        "desk": NotificationOutcome.DELIVERED,
    }


async def test_no_digest_without_a_policy_or_a_day_late() -> None:
    kafka = FakeKafka([])
    assert await run(kafka, config().model_copy(update={"digest": None})) == []
    late = NOW.replace(hour=6, minute=59) + timedelta(days=1)  # 23h59 after the 07:00 digest
    assert await run(kafka, config(), late) == []


async def test_a_digest_channel_not_cleared_for_patient_data_gets_the_count_only() -> None:
    cfg = config(team_channels={"cardio": ["desk", "ward"]}).model_copy(
        update={"cleared_channels": ["desk"]}
    )
    kafka = FakeKafka([held("p1", at=NOW - timedelta(hours=2))])
    await run(kafka, cfg)
    to_desk = [body for url, body in kafka.bodies if url == "json://h/desk"]
    (to_ward,) = [body for url, body in kafka.bodies if url == "mailto://a@b"]
    assert any("patient p1 heart_rate" in body for body in to_desk)
    assert "p1" not in to_ward and to_ward.startswith("1 findings of team cardio's patients")
