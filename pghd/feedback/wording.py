"""The words patients read: one reviewed template file, rendered by kind and severity.

Everything pghd tells a patient (their summary's findings, the feedback events sent to their
app) is worded here, from ``pghd/feedback/templates.json``: a template per feedback
:class:`Kind` and, for findings, per :class:`~pghd.contracts.Severity`, plus each metric's
plain name and unit. Wording is plain and non-alarming: it says what was seen in the
patient's own terms, that the care team has been told, and what (usually nothing) to do.

The file is checked when loaded: every kind has a template for every severity it is sent
at, every placeholder is one of its kind's declared fields, every metric of the catalogue
has a name, every reason a reading is refused for (:data:`REFUSAL_REASONS`) and every
phrase the code fills in (:data:`PHRASES`) has its words. :func:`render` refuses a field
that is missing or undeclared, so a message can never carry a value the template's reviewer
did not expect (another patient's name, say).
Pure: no I/O besides reading the packaged file once.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pghd.catalogue import Metric
from pghd.contracts import Severity

__all__ = [
    "FINDING_KINDS",
    "PHRASES",
    "PHRASE_FIELDS",
    "REFUSAL_REASONS",
    "Kind",
    "MetricWords",
    "Templates",
    "WordingError",
    "describe_change",
    "finding_change",
    "load_templates",
    "metric_name",
    "phrase",
    "refusal_reason",
    "render",
]


class Kind(StrEnum):
    """The kinds of feedback a patient may consent to receive."""

    FINDING_OPENED = "finding_opened"
    FINDING_RESOLVED = "finding_resolved"
    READING_REFUSED = "reading_refused"
    DEVICE_SILENT = "device_silent"
    WEEKLY_SUMMARY = "weekly_summary"


FINDING_KINDS = frozenset({Kind.FINDING_OPENED, Kind.FINDING_RESOLVED})
"""Kinds worded per severity; the others have an ``info`` template only."""

REFUSAL_REASONS = frozenset({"range", "unit", "time", "invalid", "other"})
"""Why ingest refused a reading (its reasons for a consenting patient's reading, ``other``
for any reason without words of its own), worded in ``reasons``."""

PHRASE_FIELDS: dict[str, frozenset[str]] = {
    "different": frozenset(),
    "unknown_time": frozenset(),
    "week_no_findings": frozenset(),
    "week_findings_opened": frozenset({"count"}),
    "week_findings_resolved": frozenset({"count"}),
}
"""Phrases the code fills into templates, each with the fields it may use: ``different`` is
a finding's change when no "above" or "below" says it (no usual range, or a value within it:
a trend, a pattern); ``unknown_time`` is when a refused reading was taken if its time could
not be read; ``week_*`` are the highlights of a ``weekly_summary`` (:func:`phrase`)."""

PHRASES = frozenset(PHRASE_FIELDS)


class WordingError(ValueError):
    """A template file that does not hold together, or a render with the wrong fields."""


class MetricWords(BaseModel):
    """How a metric is named to a patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    unit: str = Field(min_length=1)


class Templates(BaseModel):
    """The template file's content (``templates.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    reviewed: str = Field(min_length=1, description="when and how the wording was reviewed")
    metrics: dict[Metric, MetricWords]
    kinds: dict[Kind, dict[Severity, str]]
    untold: dict[Kind, dict[Severity, str]] = Field(
        description="finding_opened when no one on the care team was paged about it: no"
        " claim that they were told or will be in touch"
    )
    reasons: dict[str, str] = Field(description="why a reading was refused, in plain words")
    phrases: dict[str, str] = Field(description="words the code fills into templates")
    fields: dict[Kind, list[str]]

    @model_validator(mode="after")
    def _complete(self) -> Templates:
        missing_metrics = set(Metric) - set(self.metrics)
        if missing_metrics:
            raise WordingError(f"no patient wording for metrics {sorted(missing_metrics)}")
        for what, given, names in (
            ("reasons", self.reasons, REFUSAL_REASONS),
            ("phrases", self.phrases, PHRASES),
        ):
            if set(given) != names or not all(text.strip() for text in given.values()):
                raise WordingError(f"{what} needs words for exactly {sorted(names)}")
        for name, text in self.phrases.items():
            undeclared = _placeholders(text) - PHRASE_FIELDS[name]
            if undeclared:
                raise WordingError(f"phrase {name} uses undeclared fields {sorted(undeclared)}")
        for kind in Kind:
            by_severity = self.kinds.get(kind)
            if by_severity is None or kind not in self.fields:
                raise WordingError(f"no template (or no fields) for {kind.value}")
            wanted = set(Severity) if kind in FINDING_KINDS else {Severity.INFO}
            if set(by_severity) != wanted:
                raise WordingError(
                    f"{kind.value} needs templates for exactly {sorted(s.value for s in wanted)}"
                )
            declared = set(self.fields[kind])
            for severity, text in by_severity.items():
                used = _placeholders(text)
                if not used <= declared:
                    raise WordingError(
                        f"{kind.value}/{severity.value} uses undeclared fields"
                        f" {sorted(used - declared)}"
                    )
        untold = self.untold.get(Kind.FINDING_OPENED)
        if (
            set(self.untold) != {Kind.FINDING_OPENED}
            or untold is None
            or set(untold) != set(Severity)
        ):
            raise WordingError("untold needs finding_opened templates for every severity")
        declared = set(self.fields[Kind.FINDING_OPENED])
        for severity, text in untold.items():
            used = _placeholders(text)
            if not used <= declared:
                raise WordingError(
                    f"untold finding_opened/{severity.value} uses undeclared fields"
                    f" {sorted(used - declared)}"
                )
        return self


def _placeholders(text: str) -> set[str]:
    found: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise WordingError(f"placeholder {{{name}}} must be a plain {{field}} name")
        found.add(name)
    return found


@cache
def load_templates() -> Templates:
    """The packaged, reviewed templates (read and checked once)."""
    raw = resources.files("pghd.feedback").joinpath("templates.json").read_text("utf-8")
    return Templates.model_validate(json.loads(raw))


def metric_name(metric: str, templates: Templates | None = None) -> str:
    """A metric's plain name ("resting heart rate"); the id itself when unknown."""
    words = (templates or load_templates()).metrics.get(metric)  # type: ignore[call-overload]
    return words.name if words is not None else metric.replace("_", " ")


def _number(value: float) -> str:
    rounded = round(value, 1)
    return f"{rounded:.0f}" if rounded == int(rounded) else f"{rounded:.1f}"


def describe_change(
    metric: str, value: float, low: float, high: float, templates: Templates | None = None
) -> str:
    """``value`` against the usual range ``[low, high]`` in words: "9 beats per minute above",
    "2.5 % below", or "within" when inside it."""
    words = (templates or load_templates()).metrics.get(metric)  # type: ignore[call-overload]
    unit = words.unit if words is not None else ""
    if value > high:
        return f"{_number(value - high)} {unit} above".replace("  ", " ")
    if value < low:
        return f"{_number(low - value)} {unit} below".replace("  ", " ")
    return "within"


def finding_change(
    metric: str,
    value: float,
    usual: tuple[float, float] | None,
    templates: Templates | None = None,
) -> str:
    """A finding's change in words: :func:`describe_change` against the ``usual`` range
    (low, high), or the reviewed ``different`` phrase when there is none or the value lies
    within it (the finding was a trend or a pattern, not one value out of range)."""
    chosen = templates or load_templates()
    if usual is not None:
        words = describe_change(metric, value, usual[0], usual[1], chosen)
        if words != "within":
            return words
    return chosen.phrases["different"]


def refusal_reason(code: str, templates: Templates | None = None) -> str:
    """Why a reading was refused, in plain words (``other``'s words for an unknown code)."""
    reasons = (templates or load_templates()).reasons
    return reasons.get(code, reasons["other"])


def render(
    kind: Kind,
    severity: Severity,
    fields: Mapping[str, str | int | float],
    templates: Templates | None = None,
    *,
    told: bool = True,
) -> str:
    """The message of ``kind`` at ``severity`` (kinds other than findings: any severity reads
    their one template) with exactly its declared ``fields``; ``told=False``: a finding no
    one on the care team was paged about (its ``untold`` template, which claims no contact)."""
    chosen = templates or load_templates()
    declared = set(chosen.fields[kind])
    given = set(fields)
    if given != declared:
        raise WordingError(f"{kind.value} takes fields {sorted(declared)}, got {sorted(given)}")
    by_severity = chosen.kinds[kind] if told else chosen.untold.get(kind, chosen.kinds[kind])
    text = by_severity.get(severity) or by_severity[Severity.INFO]
    values = {
        name: _number(value) if isinstance(value, float) else str(value)
        for name, value in fields.items()
    }
    return text.format_map(values)


def phrase(
    name: str, fields: Mapping[str, str | int] | None = None, templates: Templates | None = None
) -> str:
    """The reviewed phrase ``name`` with exactly its declared ``fields`` (see
    :data:`PHRASE_FIELDS`)."""
    chosen = templates or load_templates()
    given = set(fields or {})
    if name not in PHRASE_FIELDS or given != PHRASE_FIELDS[name]:
        raise WordingError(f"phrase {name} takes fields {sorted(PHRASE_FIELDS.get(name, ()))}")
    return chosen.phrases[name].format_map({k: str(v) for k, v in (fields or {}).items()})
