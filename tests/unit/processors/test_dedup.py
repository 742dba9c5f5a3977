"""Dedup per patient, source and device; a replayed message or a re-sent reading is skipped."""

from __future__ import annotations

from pghd.contracts import Measurement, Source
from processors.dedup import is_repeat
from processors.state import digest

from .conftest import MakeReading


def _with(reading: Measurement, **changes: object) -> Measurement:
    return reading.model_copy(update=changes)


def test_digests_differ_by_patient_vendor_and_device_not_by_value(
    make_reading: MakeReading,
) -> None:
    first = make_reading(60.0, event_id="shared-1")
    digests = {
        digest(first),
        digest(_with(first, patient_id="p-2")),
        digest(_with(first, source=Source(vendor="acme", device_id="strap-2"))),
        digest(_with(first, source=Source(vendor="other", device_id="watch-1"))),
    }
    assert len(digests) == 4
    assert all(len(d) == 8 for d in digests)
    assert digest(make_reading(99.0, event_id="shared-1")) == digest(first)


def test_a_reading_the_record_reaches_past_is_a_replay_whatever_its_digest() -> None:
    through = (3, 40)
    for offset in (12, 40):
        assert is_repeat(partition=3, offset=offset, through=through, known=False)
    assert not is_repeat(partition=3, offset=41, through=through, known=False)
    # A position on another partition (the topic was repartitioned) says nothing.
    assert not is_repeat(partition=4, offset=12, through=through, known=False)
    assert not is_repeat(partition=3, offset=12, through=None, known=False)


def test_a_reading_sent_again_as_another_message_is_a_repeat_by_its_digest() -> None:
    assert is_repeat(partition=3, offset=57, through=(3, 40), known=True)
    assert is_repeat(partition=3, offset=57, through=None, known=True)
