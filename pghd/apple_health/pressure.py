"""Blood-pressure halves waiting for their pair, by start time and source.

Outside a correlation, a systolic and a diastolic record make one reading when they have
the same ``startDate`` and ``sourceName``. The export lists records grouped by type, all
diastolic halves before all systolic ones, so halves wait here until their partner comes:
this is the one state of the parser that grows with the export, one small entry per blood
pressure reading (a few a day of history). Halves are kept as the few strings the reading
needs, repeated ones interned.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

__all__ = ["Half", "Pairing"]


class Half(NamedTuple):
    """One blood-pressure half: what the reading and its event id need, as written."""

    source: str
    start: str
    end: str
    value: str
    unit: str
    device: str | None

    @classmethod
    def of(cls, attrib: dict[str, str], *, device: str | None) -> Half:
        return cls(
            sys.intern(attrib.get("sourceName", "")),
            attrib.get("startDate", ""),
            attrib.get("endDate", ""),
            attrib.get("value", ""),
            sys.intern(attrib.get("unit", "")),
            device,
        )


class Pairing:
    """Unpaired halves by (source, start), and the pairs already yielded."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], tuple[list[Half], list[Half]]] = {}
        self._yielded: set[str] = set()

    def add(self, half: Half, *, systolic: bool) -> tuple[Half, Half] | None:
        """Add a half; ``(systolic, diastolic)`` when it completes a pair (first come first)."""
        key = (half.source, half.start)
        systolics, diastolics = self._waiting.setdefault(key, ([], []))
        (systolics if systolic else diastolics).append(half)
        if not (systolics and diastolics):
            return None
        pair = systolics.pop(0), diastolics.pop(0)
        if not systolics and not diastolics:
            del self._waiting[key]
        return pair

    def first_time(self, event_id: str) -> bool:
        """Whether the pair with ``event_id`` is new (a correlation repeats top-level halves)."""
        if event_id in self._yielded:
            return False
        self._yielded.add(event_id)
        return True

    def unpaired(self) -> int:
        """Halves left without a partner (call at the end of the export)."""
        return sum(len(s) + len(d) for s, d in self._waiting.values())
