"""Dedup keys per patient, source and device, bounded by time."""

from __future__ import annotations

from pghd.contracts import Measurement, Source
from processors.dedup import entry, expired_entries, is_current, is_repeat, reading_key

from .conftest import MakeReading

DAY_MS = 86_400_000
WINDOW_MS = 3 * DAY_MS
NOW_MS = 1_780_000_000_000
_NOW = {"now_ms": NOW_MS, "window_ms": WINDOW_MS}


def _with(reading: Measurement, **changes: object) -> Measurement:
    return reading.model_copy(update=changes)


def test_keys_differ_by_patient_vendor_and_device_and_start_with_the_patient(
    make_reading: MakeReading,
) -> None:
    first = make_reading(60.0, event_id="shared-1")
    keys = {
        reading_key(first),
        reading_key(_with(first, patient_id="p-2")),
        reading_key(_with(first, source=Source(vendor="acme", device_id="strap-2"))),
        reading_key(_with(first, source=Source(vendor="other", device_id="watch-1"))),
    }
    assert len(keys) == 4
    assert reading_key(first).startswith("p-1|")
    assert reading_key(make_reading(99.0, event_id="shared-1")) == reading_key(first)


def test_an_entry_counts_for_the_window_and_not_after() -> None:
    seen = entry(now_ms=NOW_MS, partition=3, offset=41)
    assert is_current(seen, now_ms=NOW_MS + WINDOW_MS - 1, window_ms=WINDOW_MS)
    assert not is_current(seen, now_ms=NOW_MS + WINDOW_MS, window_ms=WINDOW_MS)
    assert not is_current(None, now_ms=NOW_MS, window_ms=WINDOW_MS)
    assert is_current(True, now_ms=NOW_MS, window_ms=WINDOW_MS)  # written before times


def test_a_reading_the_patients_state_holds_is_a_repeat_whatever_seen_says() -> None:
    # The state reaches offset 40 of partition 3: a crash lost the seen marks after it.
    through = (3, 40)
    for offset in (12, 40):
        assert is_repeat(None, partition=3, offset=offset, through=through, **_NOW)
    assert not is_repeat(None, partition=3, offset=41, through=through, **_NOW)
    # A position on another partition (the topic was repartitioned) says nothing.
    assert not is_repeat(None, partition=4, offset=12, through=through, **_NOW)


def test_a_mark_of_the_same_message_beyond_the_state_means_its_effect_was_lost() -> None:
    # Offset 41 was judged and marked, but the crash lost the state written with the mark.
    own = entry(now_ms=NOW_MS, partition=3, offset=41)
    assert not is_repeat(own, partition=3, offset=41, through=(3, 40), **_NOW)
    assert not is_repeat(own, partition=3, offset=41, through=None, **_NOW)
    # The same reading posted again (a client retry) is another message: a repeat.
    assert is_repeat(own, partition=3, offset=57, through=(3, 40), **_NOW)
    assert is_repeat(own, partition=3, offset=57, through=None, **_NOW)
    # Marks written before they carried an offset, and expired marks.
    assert is_repeat({"t": NOW_MS, "p": 3}, partition=3, offset=41, through=None, **_NOW)
    assert is_repeat(True, partition=3, offset=41, through=None, **_NOW)
    stale = entry(now_ms=NOW_MS - WINDOW_MS, partition=3, offset=9)
    assert not is_repeat(stale, partition=3, offset=57, through=None, **_NOW)


def test_the_sweep_picks_expired_entries_of_owned_partitions_only() -> None:
    items = [
        ("p-1|old", entry(now_ms=NOW_MS - WINDOW_MS - 1, partition=0, offset=1)),
        ("p-1|new", entry(now_ms=NOW_MS - 1, partition=0, offset=1)),
        ("p-9|old-elsewhere", entry(now_ms=NOW_MS - WINDOW_MS - 1, partition=5, offset=2)),
        ("anomaly|a1", {"intent_ms": NOW_MS - WINDOW_MS - 5, "p": 0, "sent": True}),
        ("legacy", True),
    ]
    stale = expired_entries(items, now_ms=NOW_MS, window_ms=WINDOW_MS, owned={0, 1})
    assert stale == [("p-1|old", 0), ("anomaly|a1", 0)]
