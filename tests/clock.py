"""Fixed times for the tests, so that what they post and expect is the same at any hour.

Tests never derive an outcome from the clock. Readings are stamped from an *anchor*: a
fixed time of day (UTC) on a day shortly before the session started. The services'
clocks still matter (ingest refuses readings more than ten minutes ahead of its clock,
InfluxDB queries look back 30 days from its own), so anchors are recent, but a test run at
01:25 posts readings at the same times of day, in the same six-hour baseline bin, on the
same side of every hour and midnight as one run at 14:00.

``scripts/test-at-hour.sh HH:MM`` runs the suite with the wall clock of every Python
process set to HH:MM UTC, to show that it does not depend on the hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["ANCHOR", "SESSION_START", "day_anchor"]

SESSION_START = datetime.now(UTC).replace(microsecond=0)
"""When the test session started (its modules were imported): the one reading of the clock
the anchors are derived from."""


def day_anchor(
    hour: int = 12,
    *,
    days_ago: int = 1,
    weekday: int | None = None,
    now: datetime | None = None,
) -> datetime:
    """``hour``:00 UTC of the day ``days_ago`` days before ``now``'s (default: the session's
    start); with ``weekday`` (Monday 0), of the latest such day falling on that weekday.

    ``days_ago >= 1`` puts it 0 to 24 hours further back than ``hour`` hours past midnight,
    so at least ``24 - hour`` hours before ``now`` whatever its time of day.
    """
    midnight = (
        (now or SESSION_START).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    day = midnight - timedelta(days=days_ago)
    if weekday is not None:
        day -= timedelta(days=(day.weekday() - weekday) % 7)
    return day + timedelta(hours=hour)


ANCHOR = day_anchor(12)
"""12:00 UTC of the day before the session started: 12 to 36 hours ago, at the start of the
12:00-18:00 baseline bin."""
