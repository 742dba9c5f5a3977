"""Episodes: one departure from normal is one story, not one flag per reading.

A reading that departs from the patient's normal (any finding of the detectors) opens an
episode on its channel, unless one is open: then the episode goes on. The episode emits

- an **onset** when it opens;
- an **update** only when its severity rises, or when ``cadence`` has passed since its last
  emission while it goes on (a slow reminder that it is still there, 24 h by default);
- a **resolution** once the channel has been back within normal for ``resolve_after``
  (readings within normal the whole time, at least ``resolve_readings`` of them).

Everything the detectors find in between is folded into the open episode (its peak
severity, its count of departing readings) and emits nothing, so a fever that keeps a
CUSUM warning on every reading for a day is a handful of anomalies, not hundreds. The
episode id is derived from the patient, the channel and the onset reading, so judging the
same readings again after a crash gives the same id.

Pure: :func:`step` takes the channel's episode (or None) and one judged reading and
returns the new episode and what to emit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pghd.contracts import Phase, Severity

__all__ = ["Emission", "Episode", "EpisodePolicy", "Phase", "episode_id", "step"]

_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True)
class EpisodePolicy:
    cadence: timedelta = timedelta(hours=24)
    resolve_after: timedelta = timedelta(minutes=30)
    resolve_readings: int = 2


def episode_id(patient_id: str, channel: str, onset_event_id: str) -> str:
    digest = hashlib.blake2b(
        f"{patient_id}|{channel}|{onset_event_id}".encode(), digest_size=10
    ).hexdigest()
    return f"ep-{digest}"


@dataclass(frozen=True)
class Episode:
    """An open episode of one patient's channel."""

    episode_id: str
    severity: Severity
    """The severity last emitted (updates are emitted when a finding exceeds it)."""
    opened_at: datetime
    emitted_at: datetime
    departing: int
    """Readings that departed from normal in this episode."""
    normal_since: datetime | None = None
    normal_readings: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.episode_id,
            "severity": self.severity.value,
            "opened": self.opened_at.isoformat(),
            "emitted": self.emitted_at.isoformat(),
            "departing": self.departing,
            "normal_since": None if self.normal_since is None else self.normal_since.isoformat(),
            "normal_readings": self.normal_readings,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Episode:
        normal_since = raw.get("normal_since")
        return cls(
            episode_id=raw["id"],
            severity=Severity(raw["severity"]),
            opened_at=datetime.fromisoformat(raw["opened"]),
            emitted_at=datetime.fromisoformat(raw["emitted"]),
            departing=int(raw["departing"]),
            normal_since=None if normal_since is None else datetime.fromisoformat(normal_since),
            normal_readings=int(raw.get("normal_readings", 0)),
        )


@dataclass(frozen=True)
class Emission:
    """What one reading makes the episode say (None from :func:`step`: nothing)."""

    phase: Phase
    episode: Episode


def step(
    episode: Episode | None,
    *,
    at: datetime,
    finding: Severity | None,
    patient_id: str,
    channel: str,
    event_id: str,
    policy: EpisodePolicy = EpisodePolicy(),
) -> tuple[Episode | None, Emission | None]:
    """One judged reading (``finding``: the severity of what the detectors found in it, or
    None when it is within normal) against the channel's open ``episode``."""
    if episode is None:
        if finding is None:
            return None, None
        opened = Episode(
            episode_id=episode_id(patient_id, channel, event_id),
            severity=finding,
            opened_at=at,
            emitted_at=at,
            departing=1,
        )
        return opened, Emission(Phase.ONSET, opened)

    if finding is not None:
        going = replace(
            episode, departing=episode.departing + 1, normal_since=None, normal_readings=0
        )
        if _RANK[finding] > _RANK[episode.severity]:
            raised = replace(going, severity=finding, emitted_at=at)
            return raised, Emission(Phase.UPDATE, raised)
        if at - episode.emitted_at >= policy.cadence:
            reminded = replace(going, emitted_at=at)
            return reminded, Emission(Phase.UPDATE, reminded)
        return going, None

    since = episode.normal_since if episode.normal_since is not None else at
    calm = replace(episode, normal_since=since, normal_readings=episode.normal_readings + 1)
    if at - since >= policy.resolve_after and calm.normal_readings >= policy.resolve_readings:
        return None, Emission(Phase.RESOLVED, replace(calm, emitted_at=at))
    return calm, None
