"""Ingest's audit sink: :class:`~pghd.audit.AuditEvent` s of the patients API to
``pghd.audit.v1`` through a Kafka gateway (see :mod:`pghd.audit_trail`)."""

from __future__ import annotations

from pghd import wire
from pghd.audit import AuditEvent
from pghd.service.producer import Gateway

__all__ = ["GatewayAuditSink"]


class GatewayAuditSink:
    """Writes each event keyed by its agent; returns once Kafka acknowledged it."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def write(self, event: AuditEvent) -> None:
        await self._gateway.send_batch([(event.agent.name.encode("utf-8"), wire.encode(event))])
