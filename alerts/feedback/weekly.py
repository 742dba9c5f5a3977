"""``weekly_summary``: once a week, what arrived from the patient and what changed.

Weeks are fixed spans of ``period_s`` (7 days) counted from ``anchor`` (Monday 5 January
2026, 08:00 UTC), so every week starts on a Monday at 08:00 UTC and is the same for every
patient and every worker: :func:`week_start`. For a patient who consented to
``weekly_summary`` the alerts worker keeps, in their feedback state, a :class:`WeekTally` of
the current week and the one before:

- **readings** (:func:`readings_of`, :func:`counted`): the readings of the ``vitals`` lines of
  the ``pghd.points.v1`` records the silence tracker reads too, counted **once per reading**
  (a blood pressure's systolic and diastolic lines are one reading: one source, device,
  metric and time), in the week they *arrived* in (the record's Kafka time, like
  ``device_silent``), and the UTC dates they arrived on;
- **findings** (:func:`noted`): the ids of the patient's findings opened, and resolved because
  the readings say so, in the week (their ``finding_opened`` / ``finding_resolved`` events,
  by when they happened; ids, so an event read twice counts once).

:func:`summary` makes, once the week is over, one event for it, ``occurred_at`` its end, id
from the patient and the week's start (so a restart or a rebalance that makes it again makes
the same id, which the outbox drops), and remembers the week decided (``summary_done``) so it
is never made again. No event when the week had no readings at all, or when the patient
consented after the week began (a summary of a week they only saw part of would miscount it);
their first summary is of their first whole week.

Pure: records, states and times in; states and events out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from alerts.feedback.outbox import FeedbackState, WeekTally
from alerts.feedback.silence import VITALS, tags_of
from pghd.contracts import Severity
from pghd.feedback.events import FeedbackEvent, WeeklyDetails, event_id
from pghd.feedback.wording import FINDING_KINDS, Kind, phrase, render

__all__ = [
    "WEEK_ANCHOR",
    "WEEK_S",
    "counted",
    "highlights",
    "noted",
    "readings_of",
    "summary",
    "week_start",
]

WEEK_ANCHOR = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
"""A Monday, 08:00 UTC: every week starts at this time of the week."""

WEEK_S = 7 * 86400.0

_NOT_THE_READING = {"channel", "unit"}
"""Tags that differ between the lines of one reading."""


def week_start(
    at: datetime, *, anchor: datetime = WEEK_ANCHOR, period_s: float = WEEK_S
) -> datetime:
    """The start of the week ``at`` falls in (weeks of ``period_s`` from ``anchor``)."""
    period = timedelta(seconds=period_s)
    return anchor + ((at - anchor) // period) * period


def readings_of(value: bytes | None) -> int:
    """How many readings the ``vitals`` lines of one ``pghd.points.v1`` record hold (0 for
    anything else): lines of one source, device, metric and time are one reading."""
    try:
        lines = orjson.loads(value or b"").get("lines")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    found: set[tuple[object, ...]] = set()
    for line in lines if isinstance(lines, list) else ():
        if not (isinstance(line, str) and line.startswith(VITALS + ",")):
            continue
        measurement, tags = tags_of(line)
        if measurement != VITALS:
            continue
        stamp = line.rsplit(" ", 1)[-1]
        kept = tuple(sorted((k, v) for k, v in tags.items() if k not in _NOT_THE_READING))
        found.add((kept, stamp))
    return len(found)


def _key(start: datetime) -> str:
    return start.astimezone(UTC).isoformat()


def _kept(
    weeks: dict[str, WeekTally], *, now: datetime, anchor: datetime, period_s: float
) -> dict[str, WeekTally]:
    """``weeks`` without those before the week before ``now``'s."""
    oldest = week_start(now, anchor=anchor, period_s=period_s) - timedelta(seconds=period_s)
    return {k: t for k, t in weeks.items() if datetime.fromisoformat(k) >= oldest}


def counted(
    state: FeedbackState,
    readings: int,
    *,
    at: datetime,
    anchor: datetime = WEEK_ANCHOR,
    period_s: float = WEEK_S,
) -> FeedbackState:
    """``state`` with ``readings`` arrived at ``at`` (none: the same state)."""
    if readings <= 0:
        return state
    key = _key(week_start(at, anchor=anchor, period_s=period_s))
    tally = state.weeks.get(key, WeekTally())
    day = at.astimezone(UTC).date().isoformat()
    days = tally.days if day in tally.days else sorted([*tally.days, day])
    more = tally.model_copy(update={"readings": tally.readings + readings, "days": days})
    weeks = {**state.weeks, key: more}
    return state.model_copy(
        update={"weeks": _kept(weeks, now=at, anchor=anchor, period_s=period_s)}
    )


def noted(
    state: FeedbackState,
    event: FeedbackEvent,
    *,
    anchor: datetime = WEEK_ANCHOR,
    period_s: float = WEEK_S,
) -> FeedbackState:
    """``state`` with the finding of ``event`` (``finding_opened`` or ``finding_resolved``)
    noted in its week; any other event, or one noted already, the same state."""
    if event.kind not in FINDING_KINDS:
        return state
    finding = getattr(event.details, "finding_id", None)
    if finding is None:
        return state
    key = _key(week_start(event.occurred_at, anchor=anchor, period_s=period_s))
    tally = state.weeks.get(key, WeekTally())
    field = "opened" if event.kind is Kind.FINDING_OPENED else "resolved"
    ids: list[str] = getattr(tally, field)
    if finding in ids:
        return state
    weeks = {**state.weeks, key: tally.model_copy(update={field: [*ids, finding]})}
    return state.model_copy(
        update={"weeks": _kept(weeks, now=event.occurred_at, anchor=anchor, period_s=period_s)}
    )


def highlights(tally: WeekTally) -> str:
    """The week's findings in the reviewed phrases."""
    said = []
    if tally.opened:
        said.append(phrase("week_findings_opened", {"count": len(tally.opened)}))
    else:
        said.append(phrase("week_no_findings"))
    if tally.resolved:
        said.append(phrase("week_findings_resolved", {"count": len(tally.resolved)}))
    return " ".join(said)


def summary(
    state: FeedbackState,
    *,
    now: datetime,
    consented_at: datetime | None,
    anchor: datetime = WEEK_ANCHOR,
    period_s: float = WEEK_S,
) -> tuple[FeedbackState, FeedbackEvent | None]:
    """The summary of the last week over at ``now``, if one is to be sent (see the module
    docstring), and the state that remembers that week decided. ``consented_at``: when the
    patient consented to ``weekly_summary`` (None: they do not)."""
    period = timedelta(seconds=period_s)
    start = week_start(now, anchor=anchor, period_s=period_s) - period
    if consented_at is None or (state.summary_done is not None and state.summary_done >= start):
        return state, None
    weeks = _kept(state.weeks, now=now, anchor=anchor, period_s=period_s)
    done = state.model_copy(update={"summary_done": start, "weeks": weeks})
    tally = weeks.get(_key(start))
    if consented_at > start or tally is None or tally.readings == 0:
        return done, None
    end = start + period
    event = FeedbackEvent(
        id=event_id(state.patient_id, Kind.WEEKLY_SUMMARY.value, _key(start)),
        kind=Kind.WEEKLY_SUMMARY,
        patient_id=state.patient_id,
        occurred_at=end,
        severity=Severity.INFO,
        message=render(
            Kind.WEEKLY_SUMMARY,
            Severity.INFO,
            {"readings": tally.readings, "days": len(tally.days), "highlights": highlights(tally)},
        ),
        details=WeeklyDetails(
            week_start=start,
            week_end=end,
            readings=tally.readings,
            days=len(tally.days),
            findings_opened=len(tally.opened),
            findings_resolved=len(tally.resolved),
        ),
    )
    return done, event
