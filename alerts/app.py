"""The alerts Faust app (first cut): anomalies in, notifications out.

Start a worker with ``python -m alerts.main`` (or ``faust -A alerts.app worker``).

The agent reads ``pghd.anomalies.v1`` as raw bytes, one event at a time:

1. a message that is not a valid :class:`~pghd.contracts.Anomaly` goes to ``pghd.dlq.v1``
   as a :class:`~pghd.contracts.DeadLetter` (stage ``alerts``), and the agent goes on;
2. an anomaly already handled in this run (bounded memory of ids) or detected longer ago
   than ``notify_max_age_s`` is skipped;
3. otherwise it is sent to every configured Apprise URL; failed channels are retried with
   backoff, and after the last attempt the failure is logged (ids only).

Faust acks an event when the agent asks for the next one, so the offset commits only
after the notification attempts (and any dead letter) are done. Grouping, suppression,
escalation and the alert lifecycle come later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from pydantic import ValidationError

from alerts.notify import Notifier, RecentIds, format_notification
from alerts.settings import AlertsSettings
from pghd import topics, wire
from pghd.contracts import Anomaly, DeadLetter

__all__ = [
    "STAGE",
    "Outcome",
    "Where",
    "anomalies_topic",
    "app",
    "dlq_topic",
    "handle_anomaly",
    "notify_anomalies",
    "settings",
]

logger = logging.getLogger(__name__)

STAGE = "alerts"
MAX_SEND_BACKOFF_S = 30.0
_MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Where:
    """Where a message came from, for its dead letter and the logs."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None


Outcome = str
"""``notified``, ``failed``, ``duplicate`` or ``stale`` (or a :class:`DeadLetter`)."""


def _reason(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return "; ".join(parts)[:_MAX_REASON]


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="backslashreplace")


async def handle_anomaly(
    payload: bytes | None,
    *,
    where: Where,
    notifier: Notifier,
    recent: RecentIds,
    now: datetime,
    max_age: timedelta | None = None,
) -> Outcome | DeadLetter:
    """Decode one message and notify; a :class:`DeadLetter` when it is not an anomaly."""
    try:
        if not payload:
            raise ValueError("empty message")
        anomaly = wire.decode(Anomaly, payload)
    except (ValidationError, ValueError) as exc:
        reason = _reason(exc) if isinstance(exc, ValidationError) else str(exc)
        logger.warning(
            "undecodable anomaly at %s[%s]@%s: to the DLQ",
            where.topic,
            where.partition,
            where.offset,
        )
        return DeadLetter(
            stage=STAGE,
            reason=reason,
            topic=where.topic,
            partition=where.partition,
            offset=where.offset,
            key=where.key,
            payload=_text(payload) or "",
            failed_at=now,
        )
    ids = (anomaly.anomaly_id, anomaly.patient_id)
    if anomaly.anomaly_id in recent:
        logger.info("anomaly %s patient %s: already notified in this run", *ids)
        return "duplicate"
    if max_age is not None and now - anomaly.detected_at > max_age:
        logger.info("anomaly %s patient %s: detected too long ago, not notified", *ids)
        recent.add(anomaly.anomaly_id)
        return "stale"
    report = await notifier.deliver(format_notification(anomaly))
    recent.add(anomaly.anomaly_id)
    if report.ok:
        logger.info("anomaly %s patient %s: notified %d channels", *ids, len(report.delivered))
        return "notified"
    logger.error(
        "anomaly %s patient %s: not delivered to channels %s after %d attempts",
        *ids,
        ",".join(f"#{n}" for n in report.failed),
        notifier.attempts,
    )
    return "failed"


settings = AlertsSettings()
notifier = Notifier(
    settings.notify_urls, attempts=settings.notify_attempts, backoff_s=settings.notify_backoff_s
)
recent = RecentIds(settings.dedup_size)
if not settings.notify_urls:
    logger.warning("no notify URLs configured: anomalies will be read and acked only")

app = faust.App(
    settings.app_id,
    broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
    store=settings.store,
    datadir=settings.data_dir,
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.replication_factor,
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    web_port=settings.web_port,
    web_host=settings.web_host,
    web_bind=settings.web_host,
)

anomalies_topic = app.topic(topics.ANOMALIES, key_type=bytes, value_type=bytes)
dlq_topic = app.topic(topics.DLQ, key_type=bytes, value_type=bytes)


async def _send_dead_letter(letter: DeadLetter, key: bytes | None) -> None:
    """Send to the DLQ and wait for Kafka's ack, retrying until it succeeds."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await (await dlq_topic.send(key=key or b"unkeyed", value=wire.encode(letter)))
            return
        except Exception as exc:
            delay = min(MAX_SEND_BACKOFF_S, 0.2 * 2 ** min(attempt, 10))
            logger.warning("DLQ send failed (attempt %d, retry in %.1fs): %r", attempt, delay, exc)
            await asyncio.sleep(delay)


@app.agent(anomalies_topic)
async def notify_anomalies(stream: faust.StreamT[Any]) -> None:
    """Notify every anomaly once; dead-letter what is not one."""
    max_age = (
        None if settings.notify_max_age_s is None else timedelta(seconds=settings.notify_max_age_s)
    )
    async for event in stream.events():
        message = event.message
        key = message.key if isinstance(message.key, bytes) else None
        where = Where(
            topic=message.topic, partition=message.partition, offset=message.offset, key=_text(key)
        )
        outcome = await handle_anomaly(
            event.value,
            where=where,
            notifier=notifier,
            recent=recent,
            now=datetime.now(UTC),
            max_age=max_age,
        )
        if isinstance(outcome, DeadLetter):
            await _send_dead_letter(outcome, key)
