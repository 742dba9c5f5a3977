"""``device_silent``: when each source's readings last arrived (from the judged points), and
one event per silence of a day, told once until the source sends again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from alerts.feedback.outbox import FeedbackState
from alerts.feedback.silence import seen, silent, sources_of, tags_of
from pghd import wire
from pghd.contracts import Severity
from pghd.erasure import new_marker
from pghd.feedback.events import SilenceDetails
from pghd.feedback.wording import Kind

T0 = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)
DAY = 24 * 3600.0
LINE = (
    "vitals,channel=heart_rate,device=watch-1,metric=heart_rate,patient_id=p1,source=acme,"
    'unit=/min value=64,event_id="e1" 1765029900000000000'
)


def points(*lines: str) -> bytes:
    return orjson.dumps({"schema_version": 1, "patient_id": "p1", "lines": list(lines)})


def test_the_sources_of_a_points_record_are_its_readings_sources() -> None:
    baseline = "baselines,channel=heart_rate,context=sleep,patient_id=p1 mean=60 1765029900"
    escaped = r"vitals,device=my\ watch,patient_id=p1,source=odd\,vendor\=x value=1 1"
    assert sources_of(points(LINE, baseline, escaped)) == {"acme", "odd,vendor=x"}
    assert tags_of(escaped) == (
        "vitals",
        {"device": "my watch", "patient_id": "p1", "source": "odd,vendor=x"},
    )
    marker = wire.encode(new_marker("p1", at=T0, by="admin"))
    assert sources_of(marker) == set() and sources_of(b"garbage") == set()
    assert sources_of(None) == set()


def test_arrivals_move_on_in_steps_so_a_chatty_watch_writes_little() -> None:
    state = FeedbackState(patient_id="p1", partition=0)
    first = seen(state, {"acme"}, at=T0)
    assert first.last_seen == {"acme": T0}
    assert seen(first, {"acme"}, at=T0 + timedelta(minutes=4)) is first
    later = seen(first, {"acme", "junction"}, at=T0 + timedelta(minutes=5))
    assert later.last_seen == {
        "acme": T0 + timedelta(minutes=5),
        "junction": T0 + timedelta(minutes=5),
    }


def test_a_day_of_silence_is_told_once_until_the_source_sends_again() -> None:
    state = seen(FeedbackState(patient_id="p1", partition=0), {"acme"}, at=T0)
    quiet, none = silent(state, now=T0 + timedelta(hours=23, minutes=59), after_s=DAY)
    assert none == [] and quiet is state
    told, (event,) = silent(state, now=T0 + timedelta(days=1), after_s=DAY)
    assert (event.kind, event.severity, event.patient_id) == (
        Kind.DEVICE_SILENT,
        Severity.INFO,
        "p1",
    )
    assert event.occurred_at == T0 + timedelta(days=1)
    assert event.message == (
        "We have not received any readings from acme since 14:05 UTC on 6 December 2026. If"
        " you can, check that it is charged, worn and connected."
    )
    assert event.details == SilenceDetails(source="acme", last_reading_at=T0)
    assert silent(told, now=T0 + timedelta(days=3), after_s=DAY)[1] == [], "told once"
    back = seen(told, {"acme"}, at=T0 + timedelta(days=4))
    again = silent(back, now=T0 + timedelta(days=5), after_s=DAY)[1]
    assert len(again) == 1 and again[0].id != event.id, "a new silence, a new event"
