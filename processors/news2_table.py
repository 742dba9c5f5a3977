"""The ``news2`` table: each patient's latest NEWS2 vitals, for the partial aggregate.

Keyed by patient id; the value is :meth:`News2State.to_dict
<processors.detectors.news2_aggregate.News2State.to_dict>` (the latest reading of each of
the five wearable vitals and the current episode's trigger level). Like the baselines it is
loaded before a batch is judged and stored only after the batch's output is durable, on
behalf of an event of the patient, so it lives in the changelog partition of the patient's
readings and comes back after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import faust
from faust.types import EventT

from pghd.contracts import Measurement
from processors.detectors.news2_aggregate import News2State

__all__ = ["News2Table"]

logger = logging.getLogger(__name__)

Within = Callable[[EventT[Any]], AbstractContextManager[None]]


class News2Table:
    """Load and store the patients' :class:`News2State` in a Faust table."""

    def __init__(self, app: faust.App, *, partitions: int) -> None:
        self.table = app.Table(
            "news2",
            partitions=partitions,
            key_type=str,
            help="patient_id -> latest NEWS2 vitals and trigger level (News2State.to_dict())",
        )

    def load(
        self, readings: Sequence[tuple[EventT[Any], Measurement]], *, within: Within
    ) -> dict[str, News2State]:
        """The states of the patients of ``readings`` (those that have one)."""
        states: dict[str, News2State] = {}
        done: set[str] = set()
        for event, reading in readings:
            if reading.patient_id in done:
                continue
            done.add(reading.patient_id)
            with within(event):
                raw = self.table.get(reading.patient_id)
            if raw is None:
                continue
            try:
                states[reading.patient_id] = News2State.from_dict(raw)
            except (KeyError, TypeError, ValueError):
                logger.warning(
                    "NEWS2 state of %s is unreadable; starting afresh", reading.patient_id
                )
        return states

    def store(
        self,
        states: Mapping[str, News2State],
        *,
        patient_event: Mapping[str, EventT[Any]],
        within: Within,
    ) -> None:
        """Write ``states`` (by patient id), each on behalf of an event of its patient."""
        for patient_id, state in states.items():
            with within(patient_event[patient_id]):
                self.table[patient_id] = state.to_dict()
