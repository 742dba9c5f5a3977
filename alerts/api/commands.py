"""Building and issuing care-team commands: the one path from a route to Kafka.

:class:`KafkaCommandProducer` is the API's Kafka gateway (:mod:`pghd.service.producer`):
it sends commands to ``pghd.alert-commands.v1`` keyed by patient id, and writes any other
record (care plans, audit events) with ``publish``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from alerts.api.metrics import CareApiMetrics
from alerts.api.settings import CareApiSettings
from pghd import wire
from pghd.alert_commands import AlertCommand, CommandKind
from pghd.service.producer import KafkaGateway, KafkaUnavailable, kafka_unavailable
from pghd.topics import ALERT_COMMANDS

__all__ = ["CommandProducer", "KafkaCommandProducer", "issue", "new_command"]

logger = logging.getLogger(__name__)


class CommandProducer(Protocol):
    """What the routes need from Kafka (tests substitute an in-memory recorder)."""

    async def send(self, command: AlertCommand) -> None:
        """Produce ``command`` and return once Kafka acknowledged it."""
        ...


class KafkaCommandProducer(KafkaGateway):
    """The care-team API's gateway to Kafka: commands, and with ``publish`` any record."""

    def __init__(self, *, bootstrap: str, **options: Any) -> None:
        """``options``: those of :class:`~pghd.service.producer.KafkaGateway`."""
        super().__init__(bootstrap=bootstrap, topic=ALERT_COMMANDS, **options)

    async def send(self, command: AlertCommand) -> None:
        """Produce ``command`` (key = its patient id) and wait for Kafka's acknowledgement;
        :class:`~pghd.service.producer.KafkaUnavailable` when it does not come in time."""
        await self.publish(
            topic=ALERT_COMMANDS, key=command.patient_id.encode("utf-8"), value=wire.encode(command)
        )


def new_command(*, kind: CommandKind, patient_id: str, by: str, **target: Any) -> AlertCommand:
    """A command with a fresh id, issued now by ``by``; ``target`` = alert_id, silence, ..."""
    return AlertCommand(
        command_id=uuid.uuid4().hex,
        kind=kind,
        patient_id=patient_id,
        by=by,
        issued_at=datetime.now(UTC),
        **target,
    )


async def issue(
    command: AlertCommand,
    *,
    producer: CommandProducer,
    metrics: CareApiMetrics,
    settings: CareApiSettings,
) -> None:
    """Produce ``command``; return once Kafka acknowledged it, else raise the 503 problem."""
    try:
        await producer.send(command)
    except KafkaUnavailable as exc:
        metrics.commands.labels(kind=command.kind.value, outcome="unavailable").inc()
        logger.warning("command %s (%s) not issued: %s", command.command_id, command.kind, exc)
        raise kafka_unavailable(
            f"the command could not be written to Kafka: {exc}",
            retry_after_s=settings.retry_after_s,
        ) from exc
    metrics.commands.labels(kind=command.kind.value, outcome="accepted").inc()
    target = command.alert_id or command.silence_id
    if command.silence is not None:
        target = command.silence.silence_id
    logger.info("command %s (%s) issued for %s", command.command_id, command.kind.value, target)
