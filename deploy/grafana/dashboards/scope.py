"""Whose patients a dashboard shows: the whole cohort, or one care team's patients.

The shared boards (``pghd grafana generate``, the file provider's folder) show every patient.
A care team's copies (``pghd grafana teams``) are the same boards with every Flux query
narrowed to the team's patients: a filter on ``patient_id`` right after the query's first
``range()``, so the patient list, the cohort tables and the patient panels all stop at the
team's patients, whatever value a viewer puts in the ``patient`` variable. The patient ids
are written into the query as one Flux regular expression, each escaped as Grafana's
``regex`` format escapes a variable (:func:`~deploy.grafana.dashboards.queries.regex_escape`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from deploy.grafana.dashboards.queries import FLUX, regex_escape

__all__ = ["EVERYONE", "Scope", "team_filter", "team_queries"]


def team_filter(patients: tuple[str, ...]) -> str:
    """A Flux predicate true for exactly these patient ids (none: for no patient at all)."""
    alternatives = "|".join(regex_escape(p) for p in sorted(set(patients)))
    # With no patient, "^(?:)$" matches only the empty id, which no patient has.
    return f"r.patient_id =~ /^(?:{alternatives})$/"


def team_queries(patients: tuple[str, ...]) -> dict[str, str]:
    """:data:`~.queries.FLUX` with each query limited to ``patients`` after its first range."""
    line = f"\n  |> filter(fn: (r) => {team_filter(patients)})"
    scoped = {}
    for name, text in FLUX.items():
        at = text.index("|> range(")
        end = text.index("\n", at)
        scoped[name] = text[:end] + line + text[end:]
    return scoped


@dataclass(frozen=True)
class Scope:
    """The shared boards (``team`` None) or one care team's (its patients only)."""

    team: str | None = None
    patients: tuple[str, ...] = field(default=())

    @property
    def queries(self) -> dict[str, str]:
        """The Flux queries the scope's boards run, by name."""
        return dict(FLUX) if self.team is None else team_queries(self.patients)

    @property
    def key(self) -> str:
        """A short, stable, uid-safe stand-in for the team name (uids: 40 of [A-Za-z0-9_-])."""
        assert self.team is not None
        return hashlib.sha256(self.team.encode()).hexdigest()[:12]

    def uid(self, base: str) -> str:
        """The uid of the scope's copy of the board ``base`` (``pghd-cohort``...)."""
        return base if self.team is None else f"{base}-{self.key}"

    def title(self, base: str) -> str:
        """The title of the scope's copy of the board titled ``base``."""
        return base if self.team is None else f"{base} ({self.team})"


#: The shared boards: every patient.
EVERYONE = Scope()
