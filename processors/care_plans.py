"""Care plans in the processors: ``pghd.care-plans.v1`` into the ``care_plans`` table.

The care-team API produces each patient's :class:`~pghd.care_plans.CarePlan` to the
compacted ``pghd.care-plans.v1`` (key = patient id; a tombstone clears the plan). The agent
here keeps the latest one per patient in the ``care_plans`` table (changelog-backed, so a
restarted worker has them again before it judges). The topic has as many partitions as
``pghd.measurements.v1`` and the same key, so Faust's co-partitioned assignment gives the
worker judging a patient the partition holding that patient's plan; the table is written
on behalf of the plan's event, i.e. to that same partition number.

A plan takes effect with the first reading judged after the agent stored it: no restart.
A record that is not a valid plan, has no key, or is keyed by another patient is dropped:
it goes to ``pghd.dlq.v1`` with the reason and is counted (``count``: the processors'
``dead_letters_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT
from pydantic import ValidationError

from pghd import topics, wire
from pghd.care_plans import CarePlan
from pghd.contracts import DeadLetter, Measurement
from pghd.pseudonym import pseudonym

__all__ = ["STAGE", "CarePlanBook"]

logger = logging.getLogger(__name__)

STAGE = "processors"

Deliver = Callable[[faust.TopicT, Sequence[tuple[bytes, bytes]]], Awaitable[None]]
Count = Callable[[Sequence[tuple[bytes, bytes]]], None]
Within = Callable[[EventT[Any]], AbstractContextManager[None]]


class CarePlanBook:
    """The ``pghd.care-plans.v1`` topic, the ``care_plans`` table and the agent between."""

    def __init__(
        self,
        app: faust.App,
        *,
        partitions: int,
        dlq: faust.TopicT,
        deliver: Deliver,
        count: Count | None = None,
    ) -> None:
        self.topic = app.topic(topics.CARE_PLANS, key_type=bytes, value_type=bytes)
        self.table = app.Table(
            "care_plans",
            partitions=partitions,
            key_type=str,
            help="patient_id -> CarePlan (JSON), from pghd.care-plans.v1",
        )
        self._dlq = dlq
        self._deliver = deliver
        self._count = count

        async def follow_care_plans(stream: faust.StreamT[Any]) -> None:
            """Store every care plan (or clear it on a tombstone) as it arrives."""
            async for event in stream.events():
                await self.apply(event)

        app.agent(self.topic, name="processors.care_plans.follow_care_plans")(follow_care_plans)

    async def apply(self, event: EventT[Any]) -> None:
        """Store, replace or clear the plan of one record (the event is the current one)."""
        message = event.message
        key = message.key if isinstance(message.key, bytes) else None
        value = event.value
        if key is None:
            await self._reject(event, "a care plan needs its patient id as the key")
            return
        patient_id = key.decode("utf-8", errors="replace")
        if value is None:
            if patient_id in self.table:
                del self.table[patient_id]
            logger.info("care plan of %s cleared", pseudonym(patient_id))
            return
        try:
            plan = wire.decode(CarePlan, value)
        except ValidationError as exc:
            await self._reject(event, f"not a valid care plan: {_reason(exc)}")
            return
        if plan.patient_id != patient_id:
            await self._reject(event, "message key must be the care plan's patient_id")
            return
        self.table[patient_id] = plan.model_dump(mode="json")
        logger.info("care plan of %s stored (updated %s)", pseudonym(patient_id), plan.updated_at)

    def plan_of(self, patient_id: str) -> CarePlan | None:
        """The stored plan of ``patient_id`` (the reading's event must be the current one)."""
        raw = self.table.get(patient_id)
        if raw is None:
            return None
        try:
            return CarePlan.model_validate(raw)
        except ValidationError:
            logger.error("care plan of %s is unreadable; judging without it", pseudonym(patient_id))
            return None

    def plans_for(
        self, readings: Sequence[tuple[EventT[Any], Measurement]], *, within: Within
    ) -> dict[str, CarePlan]:
        """The plans of the patients of ``readings``, by patient id (those with one)."""
        plans: dict[str, CarePlan] = {}
        done: set[str] = set()
        for event, reading in readings:
            if reading.patient_id in done:
                continue
            done.add(reading.patient_id)
            with within(event):
                plan = self.plan_of(reading.patient_id)
            if plan is not None:
                plans[reading.patient_id] = plan
        return plans

    async def _reject(self, event: EventT[Any], reason: str) -> None:
        message = event.message
        key = message.key if isinstance(message.key, bytes) else None
        raw = event.value if isinstance(event.value, bytes) else (message.value or b"")
        letter = DeadLetter(
            stage=STAGE,
            reason=reason,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=None if key is None else key.decode("utf-8", errors="backslashreplace"),
            payload=raw.decode("utf-8", errors="backslashreplace"),
            failed_at=datetime.now(UTC),
        )
        logger.warning(
            "care plan record %s[%d]@%d rejected: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
        )
        letters = [(key or b"unkeyed", wire.encode(letter))]
        await self._deliver(self._dlq, letters)
        if self._count is not None:
            self._count(letters)


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:1000]
