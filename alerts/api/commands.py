"""Building and issuing care-team commands: the one path from a route to Kafka."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from alerts.api.deps import unavailable
from alerts.api.metrics import CareApiMetrics
from alerts.api.producer import CommandProducer, CommandsUnavailable
from alerts.api.settings import CareApiSettings
from pghd.alert_commands import AlertCommand, CommandKind

__all__ = ["issue", "new_command"]

logger = logging.getLogger(__name__)


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
    except CommandsUnavailable as exc:
        metrics.commands.labels(kind=command.kind.value, outcome="unavailable").inc()
        logger.warning("command %s (%s) not issued: %s", command.command_id, command.kind, exc)
        raise unavailable(settings, f"the command could not be written to Kafka: {exc}") from exc
    metrics.commands.labels(kind=command.kind.value, outcome="accepted").inc()
    target = command.alert_id or command.silence_id
    if command.silence is not None:
        target = command.silence.silence_id
    logger.info("command %s (%s) issued for %s", command.command_id, command.kind.value, target)
