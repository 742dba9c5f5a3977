"""The care-plans agent's per-record logic: store, clear, and dead-letter what is not a plan.

The table is a plain dict here (the Faust table needs a running worker); the real table,
topic and agent run in ``tests/integration/test_care_plans.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from pghd import topics, wire
from pghd.care_plans import CarePlan, CarePlanSettings
from pghd.contracts import DeadLetter
from processors.care_plans import CarePlanBook


class Letters:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def __call__(self, topic: Any, messages: Sequence[tuple[bytes, bytes]]) -> None:
        self.sent.extend(messages)


def event(key: bytes | None, value: bytes | None) -> Any:
    message = SimpleNamespace(key=key, value=value, topic=topics.CARE_PLANS, partition=3, offset=42)
    return SimpleNamespace(message=message, value=value)


def plan(patient_id: str) -> CarePlan:
    return CarePlan.of(
        CarePlanSettings(spo2_scale=2),
        patient_id=patient_id,
        updated_at=datetime(2026, 11, 25, 9, tzinfo=UTC),
        updated_by="nurse",
    )


@pytest.fixture
def book() -> tuple[CarePlanBook, Letters]:
    app = faust.App("test-care-plans", broker="kafka://127.0.0.1:1", store="memory://")
    letters = Letters()
    book = CarePlanBook(app, partitions=1, dlq=app.topic("dlq"), deliver=letters)
    book.table = {}  # type: ignore[assignment]
    return book, letters


def test_a_plan_is_stored_replaced_and_cleared(book: tuple[CarePlanBook, Letters]) -> None:
    care, letters = book
    asyncio.run(care.apply(event(b"p-1", wire.encode(plan("p-1")))))
    assert care.plan_of("p-1") == plan("p-1")
    asyncio.run(care.apply(event(b"p-1", None)))
    assert care.plan_of("p-1") is None
    asyncio.run(care.apply(event(b"p-2", None)))  # clearing a plan never held is fine
    assert letters.sent == []


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"p-1", b'{"patient_id": "p-1", "spo2_scale": 5}', "not a valid care plan: spo2_scale"),
        (b"p-2", wire.encode(plan("p-1")), "message key must be the care plan's patient_id"),
        (None, wire.encode(plan("p-1")), "a care plan needs its patient id as the key"),
    ],
)
def test_what_is_not_a_plan_goes_to_the_dlq(
    book: tuple[CarePlanBook, Letters], key: bytes | None, value: bytes, reason: str
) -> None:
    care, letters = book
    asyncio.run(care.apply(event(key, value)))
    assert care.table == {}
    ((letter_key, raw),) = letters.sent
    letter = wire.decode(DeadLetter, raw)
    assert letter.reason.startswith(reason)
    assert (letter.topic, letter.partition, letter.offset) == (topics.CARE_PLANS, 3, 42)
    assert letter_key == (key or b"unkeyed")
