"""A partial NEWS2 aggregate from the latest wearable vitals of one patient.

NEWS2 (Royal College of Physicians, 2017) adds the sub-scores of seven parameters. Wearables
give five of them: respiratory rate, SpO2 (scale 1, or scale 2 when the care plan sets it),
systolic blood pressure, pulse and temperature; consciousness and supplemental oxygen are
never known here, so every aggregate is *partial* and says which vitals it is made of.

:class:`News2State` keeps, per patient, the latest reading of each of the five vitals (value,
sub-score, time, event id). After each reading of one of them (:func:`observe`) the
aggregate is the sum of the sub-scores of the latest readings no older than ``window``
(1 h by default) before the newest of them. Pulse taken during activity is not recorded
(NEWS2 does not score exercise).

Trigger levels, as the NEWS2 chart sets them: an aggregate of 5-6 is the urgent response
threshold (``warning``), 7 or more the emergency response threshold (``critical``). A
single parameter scoring 3 is NEWS2's other trigger; the per-vital :mod:`.news2` detector
already raises it as ``critical`` on the reading itself, so it is not raised again here, and
an aggregate of 5-6 that includes such a red score is not raised either (the care team was
paged at a higher severity already); a 7 is.

Deduplication: the state remembers the highest level raised in the current *episode*
and when the aggregate was last at 5 or more. A level is raised once per episode (a stable
aggregate of 6 does not page on every reading; a rise from 6 to 7 does); the episode ends
once ``window`` has passed without an aggregate of 5 or more, so a later rise pages again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pghd.contracts import Severity

__all__ = [
    "CHANNEL",
    "CRITICAL_AT",
    "DETECTOR",
    "NEVER_KNOWN",
    "PARAMETERS",
    "UNIT",
    "WARNING_AT",
    "Aggregate",
    "News2State",
    "Vital",
    "aggregate",
    "explain",
    "observe",
    "record",
]

logger = logging.getLogger(__name__)

DETECTOR = "news2_aggregate"
#: The ``channel`` of an aggregate anomaly, and its unit.
CHANNEL = "news2"
UNIT = "{score}"
WARNING_AT = 5
CRITICAL_AT = 7

#: NEWS2 parameter (``ChannelSpec.news2_parameter``) -> how a nurse names it, chart order.
PARAMETERS: dict[str, str] = {
    "respiration_rate": "respiratory rate",
    "spo2_scale1": "SpO2",
    "systolic_bp": "blood pressure",
    "pulse": "pulse",
    "temperature": "temperature",
}
#: NEWS2 parameters a wearable never gives.
NEVER_KNOWN = ("consciousness", "supplemental oxygen")

_LEVELS = {1: Severity.WARNING, 2: Severity.CRITICAL}
_TRIGGERS = {1: "urgent response threshold", 2: "emergency response threshold"}


@dataclass(frozen=True, slots=True)
class Vital:
    """The latest reading of one NEWS2 parameter: value, sub-score, time and event id."""

    value: float
    score: int
    time: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class News2State:
    """A patient's latest vitals (by NEWS2 parameter) and the current episode's memory."""

    latest: Mapping[str, Vital] = field(default_factory=dict)
    level: int = 0
    """highest trigger level raised in the current episode (1 warning, 2 critical)"""
    high_at: datetime | None = None
    """when the aggregate was last at ``WARNING_AT`` or more"""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in the Faust table."""
        return {
            "latest": {
                name: {
                    "value": v.value,
                    "score": v.score,
                    "time": v.time.isoformat(),
                    "event_id": v.event_id,
                }
                for name, v in self.latest.items()
            },
            "level": self.level,
            "high_at": None if self.high_at is None else self.high_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> News2State:
        """Inverse of :meth:`to_dict`."""
        latest = {
            str(name): Vital(
                value=float(v["value"]),
                score=int(v["score"]),
                time=datetime.fromisoformat(v["time"]),
                event_id=str(v["event_id"]),
            )
            for name, v in dict(data.get("latest") or {}).items()
        }
        high_at = data.get("high_at")
        return cls(
            latest=latest,
            level=int(data.get("level", 0)),
            high_at=None if high_at is None else datetime.fromisoformat(high_at),
        )


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A partial NEWS2: the sum over ``scores`` (parameter -> sub-score) at ``at``."""

    score: int
    at: datetime
    scores: dict[str, int]
    missing: tuple[str, ...]
    event_ids: tuple[str, ...]
    window: timedelta
    spo2_scale: int = 1

    @property
    def level(self) -> int:
        """0 below the urgent response threshold, 1 at 5-6, 2 at 7 or more."""
        return 2 if self.score >= CRITICAL_AT else 1 if self.score >= WARNING_AT else 0

    @property
    def red(self) -> bool:
        """Whether one of its parameters scores 3 (NEWS2's single-parameter trigger)."""
        return any(score >= 3 for score in self.scores.values())


def record(state: News2State | None, *, parameter: str, vital: Vital) -> News2State | None:
    """``state`` with ``vital`` as the latest of ``parameter``; ``None`` when ``state``
    already holds a reading of it as recent (a late or repeated reading changes nothing)."""
    if parameter not in PARAMETERS:
        raise ValueError(f"{parameter!r} is not a NEWS2 parameter wearables give")
    state = state or News2State()
    held = state.latest.get(parameter)
    if held is not None and held.time >= vital.time:
        return None
    return News2State({**state.latest, parameter: vital}, state.level, state.high_at)


def aggregate(state: News2State, *, window: timedelta, spo2_scale: int = 1) -> Aggregate:
    """The partial NEWS2 over the latest vitals within ``window`` of the newest of them."""
    if not state.latest:
        raise ValueError("no vitals recorded")
    at = max(v.time for v in state.latest.values())
    fresh = {name: v for name, v in state.latest.items() if v.time >= at - window}
    scores = {name: fresh[name].score for name in PARAMETERS if name in fresh}
    return Aggregate(
        score=sum(scores.values()),
        at=at,
        scores=scores,
        missing=tuple(name for name in PARAMETERS if name not in fresh),
        event_ids=tuple(fresh[name].event_id for name in scores),
        window=window,
        spo2_scale=spo2_scale,
    )


def observe(
    state: News2State | None,
    vitals: Sequence[tuple[str, Vital]],
    *,
    window: timedelta,
    spo2_scale: int = 1,
) -> tuple[News2State | None, Aggregate | None, Severity | None]:
    """Record ``vitals`` (``(parameter, vital)`` of one reading) and judge the aggregate.

    Returns the new state (``None``: unchanged), the aggregate (``None`` when no vital was
    newer than the one held) and the severity to raise, if any (see the module docstring).
    """
    changed = state
    for parameter, vital in vitals:
        changed = record(changed, parameter=parameter, vital=vital) or changed
    if changed is None or changed is state:
        return None, None, None
    found = aggregate(changed, window=window, spo2_scale=spo2_scale)
    level, high_at = changed.level, changed.high_at
    if high_at is not None and found.at - high_at >= window:
        level, high_at = 0, None  # the episode is over
    raise_level = 0
    if found.level:
        if found.level > level and not (found.level == 1 and found.red):
            raise_level = found.level
        level = max(level, found.level)
        high_at = found.at if high_at is None else max(high_at, found.at)
    new = News2State(changed.latest, level, high_at)
    return new, found, _LEVELS.get(raise_level)


def _window_text(window: timedelta) -> str:
    minutes = round(window / timedelta(minutes=1))
    if minutes == 60:
        return "the last hour"
    if minutes % 60 == 0:
        return f"the last {minutes // 60} hours"
    return f"the last {minutes} minutes"


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def explain(found: Aggregate) -> str:
    """The sentence a nurse reads, e.g. ``Partial NEWS2 6 from pulse 2, SpO2 3,
    temperature 1 in the last hour (respiratory rate and blood pressure missing): urgent
    response threshold.``"""
    parts = []
    for name, score in found.scores.items():
        label = PARAMETERS[name]
        if name == "spo2_scale1" and found.spo2_scale == 2:
            label += " (scale 2)"
        parts.append(f"{label} {score}")
    missing = [PARAMETERS[name] for name in found.missing]
    note = f"{_join(missing)} missing" if missing else f"{_join(list(NEVER_KNOWN))} not known"
    text = f"Partial NEWS2 {found.score} from {', '.join(parts)} in {_window_text(found.window)}"
    text += f" ({note})"
    trigger = _TRIGGERS.get(found.level)
    return f"{text}: {trigger}." if trigger else f"{text}."
