"""Faust table writes outside a stream: which partition a key goes to.

Faust's stores pick the partition a key lives in (its RocksDB database, its changelog
partition) from the *current event*. A worker that writes a batch's keys after the loop
body, or from a timer, makes the right event (or a stand-in for its partition) current.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust.streams
from faust.types import EventT

__all__ = ["in_partition", "on_behalf_of"]


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class _At:
    """Stands in for an event of ``partition``: Faust's stores pick the partition a key
    lives in from the current event's message."""

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@contextmanager
def on_behalf_of(event: EventT[Any] | _At) -> Iterator[None]:
    """Make ``event`` current, so table reads and writes use its partition."""
    # Faust keeps the current event in this context variable; its public setter lives on
    # Stream and also rebinds Stream.current_event, which take_events() relies on.
    token = faust.streams._current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


@contextmanager
def in_partition(partition: int) -> Iterator[None]:
    """Table reads and writes in ``partition`` (outside any stream)."""
    stand_in = _At(partition)
    with on_behalf_of(stand_in):
        yield
