"""The processors read an erasure marker in its place among the readings."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pghd import wire
from pghd.erasure import ErasureMarker, new_marker
from processors.agents import Erasing, split_at_erasures
from processors.codec import Undecodable, decode_record
from tests.clock import ANCHOR


def _event(offset: int, value: Any) -> Any:
    return SimpleNamespace(value=value, message=SimpleNamespace(offset=offset, key=b"p-1"))


def test_the_codec_decodes_a_marker_to_itself_and_a_damaged_one_to_a_dead_letter() -> None:
    marker = new_marker("p-1", at=ANCHOR, by="ops")
    assert decode_record(wire.encode(marker)) == [marker]
    (bad,) = decode_record(b'{"kind":"erasure","patient_id":"p-1"}')
    assert isinstance(bad, Undecodable) and "erasure marker" in bad.reason


def test_a_batch_is_split_so_that_what_came_before_a_marker_is_judged_first() -> None:
    marker = new_marker("p-1", at=ANCHOR, by="ops")
    events = [
        _event(1, ["r1"]),
        _event(2, ["r2"]),
        _event(3, [marker]),
        _event(4, ["r4"]),
        _event(5, [marker]),
    ]
    parts = split_at_erasures(events)
    assert [
        p.event.message.offset if isinstance(p, Erasing) else [e.message.offset for e in p]
        for p in parts
    ] == [[1, 2], 3, [4], 5]
    assert all(isinstance(p.marker, ErasureMarker) for p in parts if isinstance(p, Erasing))
    assert split_at_erasures(events[:2]) == [events[:2]]
