"""Which stored finding flags which reading, and the v3 ObservationInterpretation it gives.

The processors judge each channel of a reading and store a finding (an ``anomalies``
point) at the reading's own time, tagged with its metric and channel and holding the
channel's value (:mod:`processors.points`). A finding flags the reading channel with the
same time, channel key and value. Not every finding is a flag:

- ``info`` findings are notes, not abnormal values: the first reading after a data gap, an
  episode back to normal (phase ``resolved``), a warning a care plan's limits accept;
- a ``withdrawn`` finding at the reading says its earlier, provisional flag was disproved
  (resting tachycardia that was exercise after all): the reading is not flagged.

Of the rest, the most severe gives the interpretation: ``critical`` is HH / LL, ``warning``
H / L, or AA / A (critical abnormal / abnormal) when the direction is not known. The stored
finding keeps no direction, so it is derived, in this order: the channel's NEWS2 bands (a
value below the band scoring 0 is low, above it high), the detector when it judges one way
only (hypertension, resting tachycardia), the channel when pghd judges it one way only
(heart rate: upward); otherwise it is not known (a temperature above this patient's usual
but inside the normal band, blood glucose). The finding's explanation, in plain words, is
the interpretation's ``text`` for the care team; a patient reading their own data gets the
code alone (the explanation is the care team's text, never passed to patients). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pghd.catalogue import CATALOGUE, ChannelSpec
from pghd.contracts import channel_key
from pghd.export.records import StoredFinding, StoredReading

__all__ = [
    "INTERPRETATION",
    "Flagged",
    "direction_of",
    "flags_of",
    "index_findings",
    "interpretation",
    "worst",
]

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
Direction = Literal["high", "low"]

_RANK = {"warning": 1, "critical": 2}
_ONE_WAY_DETECTORS: Mapping[str, Direction] = {
    "hypertension": "high",
    "resting_tachycardia": "high",
}
_CODES: Mapping[tuple[str, Direction | None], tuple[str, str]] = {
    ("critical", "high"): ("HH", "Critical high"),
    ("critical", "low"): ("LL", "Critical low"),
    ("critical", None): ("AA", "Critical abnormal"),
    ("warning", "high"): ("H", "High"),
    ("warning", "low"): ("L", "Low"),
    ("warning", None): ("A", "Abnormal"),
}

FindingKey = tuple[datetime, str, float]


def _key(time: datetime, channel: str, value: float) -> FindingKey:
    return (time, channel, float(value))


def index_findings(findings: Iterable[StoredFinding]) -> dict[FindingKey, list[StoredFinding]]:
    """Findings by (time, channel key, value): what a reading's channel is looked up by."""
    index: dict[FindingKey, list[StoredFinding]] = {}
    for finding in findings:
        index.setdefault(_key(finding.time, finding.channel, finding.value), []).append(finding)
    return index


def _flag(found: Iterable[StoredFinding]) -> StoredFinding | None:
    """The finding that flags a reading channel, of those stored at it (see the module)."""
    found = list(found)
    if any(f.phase == "withdrawn" for f in found):
        return None
    ranked = [f for f in found if f.severity in _RANK]
    return max(ranked, key=lambda f: _RANK[f.severity], default=None)


@dataclass(frozen=True, slots=True)
class Flagged:
    """A reading channel's flag: the finding and the direction derived for it."""

    finding: StoredFinding
    direction: Direction | None


def direction_of(spec: ChannelSpec, value: float, detector: str) -> Direction | None:
    """Whether ``value`` is a high or a low one, as far as the stored finding tells (see
    the module); None when it does not."""
    normal = next((band for band in spec.news2 if band.score == 0), None)
    if normal is not None and value < normal.low:
        return "low"
    if normal is not None and value > normal.high:
        return "high"
    if detector in _ONE_WAY_DETECTORS:
        return _ONE_WAY_DETECTORS[detector]
    if spec.direction == "high":
        return "high"
    if spec.direction == "low":
        return "low"
    return None


def flags_of(
    reading: StoredReading, index: Mapping[FindingKey, list[StoredFinding]]
) -> dict[str, Flagged]:
    """The flagged channels of ``reading`` (by the catalogue's channel name)."""
    flags: dict[str, Flagged] = {}
    for spec in CATALOGUE[reading.metric].channels:
        value = reading.values[spec.name]
        found = index.get(_key(reading.time, channel_key(reading.metric, spec.name), value), [])
        flag = _flag(found)
        if flag is not None:
            flags[spec.name] = Flagged(flag, direction_of(spec, value, flag.detector))
    return flags


def interpretation(flagged: Flagged, *, for_patient: bool = False) -> dict[str, Any]:
    """The ``interpretation`` CodeableConcept of a flagged value: its code, and the
    finding's explanation as ``text`` but ``for_patient`` (the explanation is written for
    the care team and never passed to patients: docs/patients.md)."""
    code, display = _CODES[(flagged.finding.severity, flagged.direction)]
    concept: dict[str, Any] = {
        "coding": [{"system": INTERPRETATION, "code": code, "display": display}]
    }
    if flagged.finding.explanation and not for_patient:
        concept["text"] = flagged.finding.explanation
    return concept


def worst(flags: Iterable[Flagged]) -> Flagged | None:
    """The most severe of a reading's flags (the first of equals)."""
    return max(flags, key=lambda f: _RANK[f.finding.severity], default=None)
