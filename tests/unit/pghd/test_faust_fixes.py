"""pghd.faust_fixes: input partitions stay paused from assignment until the seek is done.

The wrappers are exercised on a stand-in consumer that uses Faust's own partition bookkeeping
(``Consumer._get_active_partitions``, ``pause_partitions``, ``resume_partitions``); the race
itself, on real Kafka, is ``tests/integration/test_restart_no_loss.py``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from pghd import faust_fixes

CHANGELOG = "app-seen-changelog"
INPUTS = {TP("pghd.measurements.v1", p) for p in range(3)}
CHANGELOGS = {TP(CHANGELOG, p) for p in range(3)}
ASSIGNED = INPUTS | CHANGELOGS


class StandIn:
    """The attributes of a Faust consumer the wrappers and Faust's bookkeeping touch."""

    _get_active_partitions = Consumer._get_active_partitions
    _set_active_tps = Consumer._set_active_tps
    pause_partitions = Consumer.pause_partitions

    def __init__(self) -> None:
        self.app = SimpleNamespace(
            tables=SimpleNamespace(changelog_topics={CHANGELOG}), consumer_generation_id=1
        )
        self._active_partitions: set[TP] = set()
        self._paused_partitions: set[TP] = set()
        self._buffered_partitions: set[TP] = set()
        self.active_during_seek: set[TP] | None = None

    def assignment(self) -> set[TP]:
        return set(ASSIGNED)


async def _assigned(self: Any, assigned: set[TP], generation_id: int = 0) -> None:
    """What Faust does on an assignment: all active, then the app pauses them all."""
    self._set_active_tps(assigned)
    self.pause_partitions(assigned)


def _wrapped(*, new_generation_during_seek: bool = False) -> tuple[Any, Any, Any]:
    async def seek(self: Any) -> None:
        self.active_during_seek = set(self._active_partitions)
        if new_generation_during_seek:
            self.app.consumer_generation_id += 1

    assigned = faust_fixes.mark_unsought_on_assignment(_assigned)
    resume = faust_fixes.defer_resume_until_seek(Consumer.resume_partitions)
    perform_seek = faust_fixes.resume_after_seek(seek, Consumer.resume_partitions)
    return assigned, resume, perform_seek


def test_input_partitions_are_resumed_only_after_the_seek() -> None:
    consumer = StandIn()
    assigned, resume, perform_seek = _wrapped()
    asyncio.run(assigned(consumer, ASSIGNED))

    resume(consumer, ASSIGNED)  # Recovery.on_recovery_completed resumes before seeking
    assert consumer._active_partitions == CHANGELOGS
    asyncio.run(perform_seek(consumer))

    assert consumer.active_during_seek == CHANGELOGS
    assert consumer._active_partitions == ASSIGNED
    assert not consumer._paused_partitions


def test_without_the_fix_input_partitions_are_active_during_the_seek() -> None:
    """The race the fix closes, on the same stand-in with Faust's methods unwrapped."""
    consumer = StandIn()

    async def seek(self: Any) -> None:
        self.active_during_seek = set(self._active_partitions)

    asyncio.run(_assigned(consumer, ASSIGNED))
    Consumer.resume_partitions(consumer, ASSIGNED)  # type: ignore[arg-type]
    asyncio.run(seek(consumer))
    assert consumer.active_during_seek is not None
    assert consumer.active_during_seek >= INPUTS


def test_a_rebalance_during_the_seek_leaves_the_inputs_to_the_next_recovery() -> None:
    consumer = StandIn()
    assigned, resume, perform_seek = _wrapped(new_generation_during_seek=True)
    asyncio.run(assigned(consumer, ASSIGNED))
    resume(consumer, ASSIGNED)
    asyncio.run(perform_seek(consumer))
    assert consumer._active_partitions == CHANGELOGS
    assert consumer._paused_partitions == INPUTS


def test_after_the_seek_resumes_are_not_deferred() -> None:
    consumer = StandIn()
    assigned, resume, perform_seek = _wrapped()
    asyncio.run(assigned(consumer, ASSIGNED))
    asyncio.run(perform_seek(consumer))
    consumer.pause_partitions(INPUTS)
    resume(consumer, INPUTS)
    assert consumer._active_partitions >= INPUTS


def test_a_failed_seek_resumes_as_faust_would() -> None:
    consumer = StandIn()

    async def failing_seek(self: Any) -> None:
        raise RuntimeError("broker went away")

    assigned = faust_fixes.mark_unsought_on_assignment(_assigned)
    resume = faust_fixes.defer_resume_until_seek(Consumer.resume_partitions)
    perform_seek = faust_fixes.resume_after_seek(failing_seek, Consumer.resume_partitions)
    asyncio.run(assigned(consumer, ASSIGNED))
    resume(consumer, ASSIGNED)
    with pytest.raises(RuntimeError):
        asyncio.run(perform_seek(consumer))
    assert consumer._active_partitions == ASSIGNED


def test_fetch_gets_a_snapshot_and_nothing_when_no_partition_is_active() -> None:
    calls: list[Any] = []

    async def fetch(self: Any, consumer: Any, active: Any, **kwargs: Any) -> dict[str, int]:
        calls.append(active)
        return {"fetched": 1}

    wrapped = faust_fixes.fetch_only_active(fetch)
    live = set(INPUTS)
    assert asyncio.run(wrapped(None, None, live, timeout=1.0)) == {"fetched": 1}
    live.clear()  # a pause after the call must not widen the fetch to every partition
    assert calls[0] == frozenset(INPUTS)

    assert asyncio.run(wrapped(None, None, live, timeout=1.0)) == {}
    assert len(calls) == 1
    asyncio.run(wrapped(None, None, None, timeout=1.0))  # client-only apps: all partitions
    assert calls[1] is None


def test_apply_patches_once() -> None:
    faust_fixes.apply()
    patched = Consumer.perform_seek
    faust_fixes.apply()
    assert Consumer.perform_seek is patched
    for method in (
        Consumer.on_partitions_assigned,
        Consumer.resume_partitions,
        Consumer.perform_seek,
        AIOKafkaConsumerThread._fetch_records,
    ):
        assert getattr(method, faust_fixes.PATCHED, False), method


def test_apply_refuses_another_faust_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(RuntimeError, match=r"0\.15\.3"):
        faust_fixes.apply()
