"""Dedup keys per patient, source and device, bounded by time."""

from __future__ import annotations

from pghd.contracts import Measurement, Source
from processors.dedup import entry, expired_entries, is_current, reading_key

from .conftest import MakeReading

DAY_MS = 86_400_000
WINDOW_MS = 3 * DAY_MS
NOW_MS = 1_780_000_000_000


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
    seen = entry(now_ms=NOW_MS, partition=3)
    assert is_current(seen, now_ms=NOW_MS + WINDOW_MS - 1, window_ms=WINDOW_MS)
    assert not is_current(seen, now_ms=NOW_MS + WINDOW_MS, window_ms=WINDOW_MS)
    assert not is_current(None, now_ms=NOW_MS, window_ms=WINDOW_MS)
    assert is_current(True, now_ms=NOW_MS, window_ms=WINDOW_MS)  # written before times


def test_the_sweep_picks_expired_entries_of_owned_partitions_only() -> None:
    items = [
        ("p-1|old", entry(now_ms=NOW_MS - WINDOW_MS - 1, partition=0)),
        ("p-1|new", entry(now_ms=NOW_MS - 1, partition=0)),
        ("p-9|old-elsewhere", entry(now_ms=NOW_MS - WINDOW_MS - 1, partition=5)),
        ("anomaly|a1", {"intent_ms": NOW_MS - WINDOW_MS - 5, "p": 0, "sent": True}),
        ("legacy", True),
    ]
    stale = expired_entries(items, now_ms=NOW_MS, window_ms=WINDOW_MS, owned={0, 1})
    assert stale == [("p-1|old", 0), ("anomaly|a1", 0)]
