"""Episodes: one departure of a patient from their normal is one story, not one flag per
reading and channel.

A reading that departs from the patient's normal (any finding of the detectors) opens the
patient's episode, unless one is open: then it joins it. A fever moves temperature, heart
rate, respiratory rate and NEWS2 together; it is one episode, with one id. The episode emits

- an **onset** when it opens;
- an **update** when a problem (:func:`pghd.alerting.problem_of`: the metric, resting heart
  rate counting as heart rate; the NEWS2 aggregate is a problem of its own) reaches a
  severity of warning or more that the episode has not yet announced for it: a new problem
  joining at warning, or a problem's severity rising. So a hypoglycaemia in the middle of a
  fever still reaches the care team, as its own alert, while more readings of a problem
  already announced do not;
- a **reminder** (an update) while findings of warning or more go on, ``cadence`` after the
  last emission, then twice as long each time (3, 6, 12 days by default): a drift that
  stays for a month reminds three times, not thirty. Sooner would repeat what the care
  team was just told (the alert's own escalation and repeat handle a page nobody
  answered);
- a **resolution** once every channel that departed has been back within normal for
  ``resolve_after`` (its own readings within normal the whole time, at least
  ``resolve_readings`` of them). Each channel is followed on its own readings, so a
  temperature taken every four hours keeps the fever open while the heart rate, read every
  five minutes, is already normal. An episode that never rose above information ends
  silently: its onset paged no one, and a resolution of every such blip would double the
  information anomalies on the topic and the dashboards.

An information-level finding of a problem the episode has not announced is folded in
silently (information pages no one). Everything else the detectors find in between is folded
into the open episode and emits nothing, so a fever that keeps a CUSUM warning on every
reading for a day is a handful of anomalies, not hundreds. The episode id is derived from
the patient, the onset's channel and the onset reading, so judging the same readings again
after a crash gives the same id.

Pure: :func:`step` takes the patient's episode (or None) and one judged reading of one
channel and returns the new episode and what to emit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pghd.contracts import Phase, Severity

__all__ = ["Emission", "Episode", "EpisodePolicy", "Phase", "Track", "episode_id", "step"]


@dataclass(frozen=True)
class EpisodePolicy:
    cadence: timedelta = timedelta(days=3)
    """The first reminder; each later one waits twice as long as the one before."""
    resolve_after: timedelta = timedelta(minutes=30)
    resolve_readings: int = 2

    def reminder_due(self, reminders: int) -> timedelta:
        """How long after the last emission the next reminder comes, ``reminders`` sent."""
        factor: int = 2 ** min(reminders, 16)
        return self.cadence * factor


def episode_id(patient_id: str, channel: str, onset_event_id: str) -> str:
    digest = hashlib.blake2b(
        f"{patient_id}|{channel}|{onset_event_id}".encode(), digest_size=10
    ).hexdigest()
    return f"ep-{digest}"


def _time(raw: str | None) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(raw)


@dataclass(frozen=True)
class Track:
    """One channel's part in an episode: how often it departed and how long it has been
    back within normal on its own readings."""

    problem: str
    departing: int = 1
    normal_since: datetime | None = None
    normal_readings: int = 0

    def settled(self, at: datetime, policy: EpisodePolicy) -> bool:
        return (
            self.normal_since is not None
            and at - self.normal_since >= policy.resolve_after
            and self.normal_readings >= policy.resolve_readings
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "departing": self.departing,
            "normal_since": None if self.normal_since is None else self.normal_since.isoformat(),
            "normal_readings": self.normal_readings,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Track:
        return cls(
            problem=str(raw["problem"]),
            departing=int(raw["departing"]),
            normal_since=_time(raw.get("normal_since")),
            normal_readings=int(raw.get("normal_readings", 0)),
        )


@dataclass(frozen=True)
class Episode:
    """The open episode of one patient."""

    episode_id: str
    severity: Severity
    """The highest severity emitted."""
    opened_at: datetime
    emitted_at: datetime
    tracks: dict[str, Track] = field(default_factory=dict)
    """By channel: every channel that departed in this episode."""
    announced: dict[str, Severity] = field(default_factory=dict)
    """By problem: the highest severity emitted for it."""
    reminders: int = 0

    @property
    def departing(self) -> int:
        """Readings that departed from normal in this episode, all channels."""
        return sum(t.departing for t in self.tracks.values())

    @property
    def normal_since(self) -> datetime | None:
        """Since when every channel has been back within normal (None: one is not)."""
        times = [t.normal_since for t in self.tracks.values()]
        if not times or any(t is None for t in times):
            return None
        return max(t for t in times if t is not None)

    @property
    def normal_readings(self) -> int:
        return sum(t.normal_readings for t in self.tracks.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.episode_id,
            "severity": self.severity.value,
            "opened": self.opened_at.isoformat(),
            "emitted": self.emitted_at.isoformat(),
            "tracks": {ch: t.to_dict() for ch, t in self.tracks.items()},
            "announced": {p: s.value for p, s in self.announced.items()},
            "reminders": self.reminders,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Episode:
        return cls(
            episode_id=raw["id"],
            severity=Severity(raw["severity"]),
            opened_at=datetime.fromisoformat(raw["opened"]),
            emitted_at=datetime.fromisoformat(raw["emitted"]),
            tracks={ch: Track.from_dict(t) for ch, t in raw.get("tracks", {}).items()},
            announced={p: Severity(s) for p, s in raw.get("announced", {}).items()},
            reminders=int(raw.get("reminders", 0)),
        )

    def without(self, channel: str) -> Episode | None:
        """The episode with ``channel``'s part taken out (a withdrawn finding); None when
        nothing is left. Its problem is no longer announced unless another channel has it."""
        track = self.tracks.get(channel)
        if track is None:
            return self
        tracks = {ch: t for ch, t in self.tracks.items() if ch != channel}
        if not tracks:
            return None
        problems = {t.problem for t in tracks.values()}
        announced = {p: s for p, s in self.announced.items() if p in problems}
        return replace(self, tracks=tracks, announced=announced)


@dataclass(frozen=True)
class Emission:
    """What one reading makes the episode say (None from :func:`step`: nothing)."""

    phase: Phase
    episode: Episode


def _announces(finding: Severity, said: Severity | None) -> bool:
    """Whether a finding tells the care team something new about its problem."""
    return finding is not Severity.INFO and (said is None or finding.rank > said.rank)


def step(
    episode: Episode | None,
    *,
    at: datetime,
    finding: Severity | None,
    patient_id: str,
    channel: str,
    event_id: str,
    problem: str | None = None,
    policy: EpisodePolicy = EpisodePolicy(),
) -> tuple[Episode | None, Emission | None]:
    """One judged reading of ``channel`` (``finding``: the severity of what the detectors
    found in it, or None when it is within normal) against the patient's open ``episode``.
    ``problem``: what the channel is about (default: the channel)."""
    problem = problem or channel
    if episode is None:
        if finding is None:
            return None, None
        opened = Episode(
            episode_id=episode_id(patient_id, channel, event_id),
            severity=finding,
            opened_at=at,
            emitted_at=at,
            tracks={channel: Track(problem)},
            announced={problem: finding},
        )
        return opened, Emission(Phase.ONSET, opened)

    track = episode.tracks.get(channel)
    if finding is not None:
        departed = Track(problem, departing=1 + (0 if track is None else track.departing))
        going = replace(episode, tracks={**episode.tracks, channel: departed})
        if _announces(finding, episode.announced.get(problem)):
            raised = replace(
                going,
                severity=max(episode.severity, finding, key=lambda s: s.rank),
                emitted_at=at,
                announced={**episode.announced, problem: finding},
            )
            return raised, Emission(Phase.UPDATE, raised)
        due = at - episode.emitted_at >= policy.reminder_due(episode.reminders)
        if due and finding is not Severity.INFO:
            reminded = replace(going, emitted_at=at, reminders=episode.reminders + 1)
            return reminded, Emission(Phase.UPDATE, reminded)
        return going, None

    if track is None:
        return episode, None  # a channel that never departed says nothing about the episode
    since = track.normal_since if track.normal_since is not None else at
    calm_track = replace(track, normal_since=since, normal_readings=track.normal_readings + 1)
    calm = replace(episode, tracks={**episode.tracks, channel: calm_track})
    if all(t.settled(at, policy) for t in calm.tracks.values()):
        if calm.severity is Severity.INFO:
            return None, None  # it never paged anyone: it ends without a word
        return None, Emission(Phase.RESOLVED, replace(calm, emitted_at=at))
    return calm, None
