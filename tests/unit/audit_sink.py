"""A stand-in for the services' Kafka audit sink, shared by the API unit tests."""

from __future__ import annotations

from pghd.audit import AuditEvent


class RecordingAuditSink:
    """Keeps the audit events written, or fails on demand."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.failure: Exception | None = None

    async def write(self, event: AuditEvent) -> None:
        if self.failure is not None:
            raise self.failure
        self.events.append(event)
