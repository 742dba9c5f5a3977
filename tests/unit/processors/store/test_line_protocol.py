"""The direct line-protocol builder writes what influxdb-client's Point writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from processors.points import InfluxPoint
from processors.store.line_protocol import nanoseconds, to_line

NAMES = st.text(alphabet=st.sampled_from('ab ,="\\\n\t\rxé_'), min_size=1, max_size=8)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.text(max_size=12),
    st.booleans(),
)
TIMES = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def _point_line(point: InfluxPoint) -> str:
    out = Point(point.measurement)  # type: ignore[no-untyped-call]
    out.time(point.time, WritePrecision.NS)  # type: ignore[no-untyped-call]
    for key, tag in point.tags.items():
        out.tag(key, tag)  # type: ignore[no-untyped-call]
    for key, value in point.fields.items():
        out.field(key, value)  # type: ignore[no-untyped-call]
    line: str = out.to_line_protocol()  # type: ignore[no-untyped-call]
    return line


@settings(max_examples=400, deadline=None)
@given(
    NAMES,
    st.dictionaries(NAMES, st.text(max_size=8), max_size=4),
    st.dictionaries(NAMES, VALUES, max_size=4),
    TIMES,
)
def test_lines_match_point_for_any_names_values_and_times(
    measurement: str, tags: dict[str, str], fields: dict[str, object], when: datetime
) -> None:
    point = InfluxPoint(measurement, tags, fields, when)  # type: ignore[arg-type]
    assert to_line(point) == _point_line(point)


def test_a_vitals_point_as_the_store_writes_it() -> None:
    when = datetime(2026, 3, 9, 6, 0, 0, 123456, tzinfo=UTC)
    point = InfluxPoint(
        "vitals",
        {"patient_id": "p 1", "channel": "heart_rate", "device": "watch,2", "unit": "/min"},
        {"value": 61.0, "event_id": 'e"1'},
        when,
    )
    assert to_line(point) == (
        r"vitals,channel=heart_rate,device=watch\,2,patient_id=p\ 1,unit=/min"
        r' event_id="e\"1",value=61 1773036000123456000'
    )


def test_nanoseconds_are_exact_beyond_float_precision() -> None:
    when = datetime(2026, 3, 9, tzinfo=UTC) + timedelta(microseconds=999_999)
    assert nanoseconds(when) % 1_000_000_000 == 999_999_000
    assert nanoseconds(datetime(1970, 1, 1)) == 0
