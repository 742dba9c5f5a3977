"""Sends the daily digest: once per care team and day, from one worker, never blindly twice.

The alerts worker that leads the Faust group runs :func:`send_due_digests` every minute (a
leader-only timer, so several workers send one digest, not one each). It reads every
alert from the compacted ``pghd.alerts.v1`` (the digest spans all partitions, which no
single worker owns) and what was already sent from the compacted ``pghd.digests.v1``.

Delivery follows the alerts' own rule (intent before send): a ``sending`` record is
acknowledged by Kafka before the first channel is tried, and a ``sent``/``failed`` record
after. A worker that finds a ``sending`` record (its predecessor died mid-send) re-sends
only to channels whose receivers deduplicate on the notification id (webhooks), and
records the others as failed with an unknown outcome, as :mod:`alerts.delivery` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from alerts.delivery import resume_policy
from alerts.digest import digest_id, due_day, team_digests
from pghd import kafka_security, topics, wire
from pghd.alerting import (
    Alert,
    DigestRecord,
    DigestState,
    NotificationOutcome,
    RoutingConfig,
)
from pghd.kafka_security import KafkaSecurity
from pghd.service.follower import topic_partitions

__all__ = ["Publish", "ReadTopic", "SendDigest", "read_compacted", "send_due_digests"]

logger = logging.getLogger(__name__)

SendDigest = Callable[[str, str, str, str], Awaitable[bool]]
"""``(url, title, body, notification_id)`` -> delivered?"""
ReadTopic = Callable[[str], Awaitable[dict[bytes, bytes]]]
"""The latest value per key of a compacted topic (:func:`read_compacted`)."""
Publish = Callable[[DigestRecord], Awaitable[None]]
"""Write a digest record and wait until Kafka acknowledged it."""


async def read_compacted(
    bootstrap: str, topic: str, *, timeout_s: float = 30.0, security: KafkaSecurity | None = None
) -> dict[bytes, bytes]:
    """The latest value of every key of ``topic``, read from the beginning to its end now."""
    security = security or kafka_security.current()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **security.aiokafka()
    )
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        partitions = await topic_partitions(
            bootstrap,
            [topic],
            client_id="pghd-alerts-digests",
            timeout_s=timeout_s,
            security=security,
        )
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest: dict[bytes, bytes] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await _at_end(consumer, ends):
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s:g} s")
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        latest.pop(record.key, None)
                    else:
                        latest[record.key] = record.value
        return latest
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def _decode_all(raw: dict[bytes, bytes], model: type[Alert] | type[DigestRecord]) -> list:  # type: ignore[type-arg]
    found = []
    for key, value in raw.items():
        try:
            found.append(wire.decode(model, value))
        except (ValidationError, ValueError) as exc:
            logger.warning("skipped unreadable record %r: %s", key[:64], type(exc).__name__)
    return found


async def send_due_digests(
    *,
    read: ReadTopic,
    config: RoutingConfig,
    now: datetime,
    send: SendDigest,
    publish: Publish,
) -> list[DigestRecord]:
    """Send every team's digest due at ``now`` that was not sent yet; the records written."""
    policy = config.digest
    if policy is None:
        return []
    day = due_day(policy, now=now)
    until = datetime.combine(day, policy.at, tzinfo=ZoneInfo(policy.timezone))
    if now - until > timedelta(hours=23):
        return []  # a whole day late: that digest is tomorrow's now
    done: dict[str, DigestRecord] = {
        r.key: r for r in _decode_all(await read(topics.DIGESTS), DigestRecord)
    }
    alerts: list[Alert] = _decode_all(await read(topics.ALERTS), Alert)
    written: list[DigestRecord] = []
    for team, (findings, text) in team_digests(alerts, config=config, day=day, until=until).items():
        key = f"{team}|{day.isoformat()}"
        previous = done.get(key)
        if previous is not None and previous.state is not DigestState.SENDING:
            continue
        channels = policy.channels_of(team)
        notification_id = digest_id(team, day)
        outcomes: dict[str, NotificationOutcome] = {}
        if previous is None:
            intent = DigestRecord(
                team=team,
                day=day,
                state=DigestState.SENDING,
                notification_id=notification_id,
                findings=findings,
                at=now,
            )
            await publish(intent)
            to_send = channels
        else:
            to_send = [c for c in channels if resume_policy(config.channels.get(c)) == "resend"]
            outcomes = {c: NotificationOutcome.FAILED for c in channels if c not in to_send}
            logger.warning("digest %s: resuming after a restart (outcome unknown)", notification_id)
        title = f"pghd daily digest {day.isoformat()} for {team}: {findings} findings"
        brief = (
            f"{findings} findings of team {team}'s patients were held back on"
            f" {day.isoformat()} (over their alert budget); the care-team API lists them."
        )
        for channel in to_send:
            body = text if channel in config.cleared_channels else brief
            delivered = await send(config.channels[channel], title, body, notification_id)
            outcomes[channel] = (
                NotificationOutcome.DELIVERED if delivered else NotificationOutcome.FAILED
            )
        delivered_any = any(o is NotificationOutcome.DELIVERED for o in outcomes.values())
        record = DigestRecord(
            team=team,
            day=day,
            state=DigestState.SENT if delivered_any else DigestState.FAILED,
            notification_id=notification_id,
            findings=findings,
            at=now,
            outcomes=outcomes,
        )
        await publish(record)
        written.append(record)
        logger.info(
            "digest %s for team %s (%d findings): %s",
            notification_id,
            team,
            findings,
            {c: o.value for c, o in outcomes.items()},
        )
    return written
