"""The enrollment write path and its lifecycle: book + follower + a producer to the topic.

A change (:class:`~pghd.enrollment.EnrollmentCommand`\\ s from the admin API) is applied to
the patient's current enrollment by the pure functions of :mod:`pghd.enrollment`; the new
whole Enrollment is produced to ``pghd.enrollments.v1`` keyed by patient id (``acks=all``,
idempotent producer) and :meth:`EnrollmentService.execute` returns once this instance's
follower has read it back (read-your-writes). Writes of one instance are serialised; writes
to the same patient from two instances at the same moment are last-writer-wins.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from ingest.enrollment.book import EnrollmentBook
from ingest.enrollment.follower import EnrollmentFollower
from pghd.enrollment import Action, Change, Enrollment, EnrollmentCommand, apply
from pghd.pseudonym import pseudonym
from pghd.service.producer import Gateway, KafkaGateway
from pghd.topics import ENROLLMENTS

__all__ = ["EnrollmentService", "NotApplied", "RegistryLoading"]

logger = logging.getLogger(__name__)


class RegistryLoading(Exception):
    """The book has not caught up with the topic yet: nothing can be decided now."""


class NotApplied(Exception):
    """Kafka took the write, but this instance did not read it back in time."""


class EnrollmentService:
    """Applies admin commands to enrollments through Kafka; owns the follower and producer."""

    def __init__(
        self,
        *,
        book: EnrollmentBook,
        follower: EnrollmentFollower,
        gateway: Gateway,
        apply_timeout_s: float = 10.0,
    ) -> None:
        self.book = book
        self._follower = follower
        self._gateway = gateway
        self._apply_timeout_s = apply_timeout_s
        self._lock = asyncio.Lock()

    @classmethod
    def for_kafka(
        cls,
        *,
        bootstrap: str,
        book: EnrollmentBook,
        produce_timeout_s: float,
        connect_timeout_s: float,
    ) -> tuple[EnrollmentService, KafkaGateway]:
        """A service on a real Kafka, and its gateway (to start and stop with the app)."""
        gateway = KafkaGateway(
            bootstrap=bootstrap,
            topic=ENROLLMENTS,
            produce_timeout_s=produce_timeout_s,
            connect_timeout_s=connect_timeout_s,
            client_id="pghd-ingest-enrollments",
        )
        follower = EnrollmentFollower(
            bootstrap=bootstrap, book=book, connect_timeout_s=connect_timeout_s
        )
        service = cls(
            book=book,
            follower=follower,
            gateway=gateway,
            apply_timeout_s=produce_timeout_s + connect_timeout_s,
        )
        return service, gateway

    async def start(self) -> None:
        """Start following the topic (in the background; never raises if Kafka is down)."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following the topic."""
        await self._follower.stop()

    def current(self, patient_id: str) -> Enrollment | None:
        """The enrollment of ``patient_id`` as this instance knows it; raises while loading."""
        if not self.book.ready:
            raise RegistryLoading()
        return self.book.get(patient_id)

    async def erase(self, patient_id: str) -> bool:
        """Tombstone the patient's enrollment (links and consents go with it); whether one
        was held. Returns once this instance no longer knows it (readings refused from
        then on here; other instances as soon as their followers read the tombstone).

        Raises :class:`RegistryLoading`, ``KafkaUnavailable`` or :class:`NotApplied`.
        """
        async with self._lock:
            held = self.current(patient_id) is not None
            await self._gateway.send_batch([(patient_id.encode(), None)])
            self.book.remove(patient_id)  # at once here; the follower's read-back agrees
            logger.info("enrollment of %s erased", pseudonym(patient_id))
            return held

    async def execute(self, commands: Sequence[EnrollmentCommand], *, by: str) -> Enrollment:
        """Apply ``commands`` (about one patient) as one change; the enrollment afterwards.

        Raises :class:`~pghd.enrollment.EnrollmentError` when a transition is refused,
        :class:`RegistryLoading` before the book caught up, ``KafkaUnavailable`` when Kafka
        does not take the write, :class:`NotApplied` when it is not read back in time.
        """
        if not commands or len({c.patient_id for c in commands}) != 1:
            raise ValueError("one or more commands about one patient")
        patient_id = commands[0].patient_id
        async with self._lock:
            current = self.current(patient_id)
            change = Change(
                change_id=uuid.uuid4().hex,
                action=commands[0].action,
                at=datetime.now(UTC),
                by=by,
            )
            new = current
            for command in commands:
                held_by = None
                if command.action is Action.LINK:
                    assert command.source is not None and command.account is not None
                    held_by = self.book.holder(source=command.source, account=command.account)
                new = apply(new, command, change=change, held_by=held_by)
            assert new is not None
            if new == current:
                return new
            revision = (current.revision if current is not None else 0) + 1
            new = new.model_copy(update={"revision": revision, "change": change})
            applied = self._follower.expect(change.change_id)
            try:
                await self._gateway.send_batch([(patient_id.encode(), new.to_record())])
                logger.info(
                    "enrollment of %s: %s by %s (revision %d)",
                    pseudonym(patient_id),
                    change.action.value,
                    by,
                    revision,
                )
                try:
                    return await asyncio.wait_for(applied, self._apply_timeout_s)
                except TimeoutError as exc:
                    raise NotApplied(
                        f"the change to {patient_id} was stored but not read back within "
                        f"{self._apply_timeout_s:g} s"
                    ) from exc
            finally:
                self._follower.forget(change.change_id)
