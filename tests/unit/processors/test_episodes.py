"""Episodes fold a departure's readings into onset, updates and resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pghd.contracts import Severity
from processors.episodes import Emission, Episode, Phase, episode_id, step

T0 = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)
W, C = Severity.WARNING, Severity.CRITICAL


def _run(findings: list[Severity | None], every: timedelta) -> list[tuple[int, Emission]]:
    episode: Episode | None = None
    out: list[tuple[int, Emission]] = []
    for i, finding in enumerate(findings):
        episode, emission = step(
            episode,
            at=T0 + i * every,
            finding=finding,
            patient_id="p1",
            channel="body_temperature",
            event_id=f"e{i}",
        )
        if emission is not None:
            out.append((i, emission))
    return out


def test_a_day_of_fever_with_a_warning_on_every_reading_is_three_anomalies() -> None:
    # Temperature every 10 minutes: 12 normal, 24 h of warnings rising to critical for
    # an hour, then normal again.
    findings: list[Severity | None] = [None] * 12 + [W] * 72 + [C] * 6 + [W] * 66 + [None] * 12
    emitted = _run(findings, timedelta(minutes=10))
    assert [(i, e.phase, e.episode.severity) for i, e in emitted] == [
        (12, Phase.ONSET, W),
        (84, Phase.UPDATE, C),
        (159, Phase.RESOLVED, C),
    ]
    ids = {e.episode.episode_id for _, e in emitted}
    assert ids == {episode_id("p1", "body_temperature", "e12")}
    assert emitted[-1][1].episode.departing == 144


def test_a_long_episode_is_reminded_once_a_day_not_per_reading() -> None:
    emitted = _run([W] * (3 * 24 * 6) + [None] * 4, timedelta(minutes=10))
    phases = [e.phase for _, e in emitted]
    assert phases == [Phase.ONSET, Phase.UPDATE, Phase.UPDATE, Phase.RESOLVED]
    assert len(emitted) <= 5


def test_one_normal_reading_inside_an_episode_does_not_end_it() -> None:
    findings: list[Severity | None] = [W, W, None, W, W, None, None, None, None]
    emitted = _run(findings, timedelta(minutes=10))
    assert [(i, e.phase) for i, e in emitted] == [(0, Phase.ONSET), (8, Phase.RESOLVED)]


def test_resolution_needs_the_whole_period_back_to_normal() -> None:
    # Two normal readings 5 minutes apart are not 30 minutes of normal.
    assert _run([C, None, None], timedelta(minutes=5))[1:] == []
    emitted = _run([C, None, None, None, None, None, None, None], timedelta(minutes=5))
    assert [(i, e.phase) for i, e in emitted] == [(0, Phase.ONSET), (7, Phase.RESOLVED)]


def test_after_a_resolution_the_next_departure_is_a_new_episode() -> None:
    emitted = _run([W] + [None] * 4 + [W], timedelta(minutes=10))
    assert [e.phase for _, e in emitted] == [Phase.ONSET, Phase.RESOLVED, Phase.ONSET]
    assert emitted[0][1].episode.episode_id != emitted[2][1].episode.episode_id


def test_the_episode_travels_as_a_plain_dict() -> None:
    episode, _ = step(None, at=T0, finding=W, patient_id="p", channel="spo2", event_id="e1")
    assert episode is not None
    episode, _ = step(
        episode,
        at=T0 + timedelta(minutes=1),
        finding=None,
        patient_id="p",
        channel="spo2",
        event_id="e2",
    )
    assert episode is not None and Episode.from_dict(episode.to_dict()) == episode
