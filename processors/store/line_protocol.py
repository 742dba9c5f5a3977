"""InfluxDB line protocol, built directly: one escaping helper per element.

The same text influxdb-client's ``Point.to_line_protocol()`` writes for the points judging
makes (``tests/unit/processors/store/test_line_protocol.py`` checks it against ``Point``
for arbitrary names and values), at a fraction of its cost: ``Point`` builds an object,
sorts and re-escapes per point, and was an eighth of a worker's time.

- measurement: ``,`` and space escaped (and newline, tab, carriage return as ``\\n`` ...);
- tag keys, tag values and field keys: also ``=``; tags sorted by key, empty ones left out;
  a tag value ending in a backslash gets a trailing space (as ``Point`` does);
- field values: floats as Python prints them without a trailing ``.0`` (non-finite ones
  left out), integers with ``i``, booleans ``true``/``false``, strings quoted with ``"``
  and ``\\`` escaped; fields sorted by key;
- time: integer nanoseconds since the epoch.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from processors.points import InfluxPoint

__all__ = ["to_line"]

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _tag_value(value: str) -> str:
    escaped = value.translate(_KEY)
    return escaped + " " if escaped.endswith("\\") else escaped


def _field(key: str, value: float | int | str | bool) -> str | None:
    name = key.translate(_KEY)
    if isinstance(value, bool):
        return f"{name}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{name}={value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = str(value)
        return f"{name}={text[:-2] if text.endswith('.0') else text}"
    return f'{name}="{value.translate(_STRING)}"'


def nanoseconds(moment: datetime) -> int:
    """``moment`` (naive: UTC) as integer nanoseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def to_line(point: InfluxPoint) -> str:
    """``point`` as one line (nanosecond precision); ``""`` when it has no field to write."""
    tags = ",".join(
        f"{key.translate(_KEY)}={_tag_value(value)}"
        for key, value in sorted(point.tags.items())
        if value != "" and key != ""
    )
    fields = [f for key, value in sorted(point.fields.items()) if (f := _field(key, value))]
    if not fields:
        return ""
    head = point.measurement.translate(_MEASUREMENT)
    return f"{head}{',' if tags else ''}{tags} {','.join(fields)} {nanoseconds(point.time)}"
