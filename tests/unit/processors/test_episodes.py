"""Episodes fold a departure's readings into onset, updates and resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pghd.contracts import Severity
from processors.episodes import Emission, Episode, Phase, episode_id, step

T0 = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)
W, C = Severity.WARNING, Severity.CRITICAL
MINUTE = timedelta(minutes=1)


Reading = tuple[timedelta, str, str, Severity | None]
"""When (after ``T0``), channel, problem and finding of one judged reading."""


def _feed(readings: list[Reading]) -> tuple[Episode | None, list[tuple[int, Emission]]]:
    """The readings through one patient's episode: the episode left, and what was emitted
    (with the index of the reading that emitted it)."""
    episode: Episode | None = None
    out: list[tuple[int, Emission]] = []
    for i, (after, channel, problem, finding) in enumerate(readings):
        episode, emission = step(
            episode,
            at=T0 + after,
            finding=finding,
            patient_id="p1",
            channel=channel,
            problem=problem,
            event_id=f"{channel}-{i}",
        )
        if emission is not None:
            out.append((i, emission))
    return episode, out


def _run(findings: list[Severity | None], every: timedelta) -> list[tuple[int, Emission]]:
    """Temperature readings ``every`` apart."""
    temp = "body_temperature"
    return _feed([(i * every, temp, temp, f) for i, f in enumerate(findings)])[1]


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
    assert ids == {episode_id("p1", "body_temperature", "body_temperature-12")}
    assert emitted[-1][1].episode.departing == 144


def test_a_long_episode_is_reminded_after_three_then_six_then_twelve_days() -> None:
    # A month of warnings every 10 minutes (a drift that stays): reminders 3, 9 and 21
    # days after the onset; never one per day.
    emitted = _run([W] * (30 * 24 * 6) + [None] * 4, timedelta(minutes=10))
    assert [e.phase for _, e in emitted] == [Phase.ONSET] + [Phase.UPDATE] * 3 + [Phase.RESOLVED]
    days = [i / (24 * 6) for i, e in emitted if e.phase is Phase.UPDATE]
    assert days == [3, 9, 21]


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


def _after(readings: list[tuple[str, Severity | None]]) -> Episode | None:
    """The episode after ``(channel, finding)`` readings a minute apart."""
    return _feed([(i * MINUTE, ch, ch, f) for i, (ch, f) in enumerate(readings)])[0]


def test_the_episode_travels_as_a_plain_dict() -> None:
    episode = _after([("spo2", W), ("heart_rate", C), ("spo2", None)])
    assert episode is not None and Episode.from_dict(episode.to_dict()) == episode


def _patient(
    readings: list[tuple[int, str, str, Severity | None]],
) -> list[tuple[int, Phase, str]]:
    """``(minute, channel, problem, finding)`` through one patient's episode."""
    fed = [(m * MINUTE, ch, problem, f) for m, ch, problem, f in readings]
    return [(readings[i][0], e.phase, readings[i][2]) for i, e in _feed(fed)[1]]


TEMP, HR, RR, GLU = "body_temperature", "heart_rate", "respiratory_rate", "blood_glucose"


def test_a_fever_on_four_channels_is_one_episode_with_each_problem_announced_once() -> None:
    # Temperature every 4 h, heart rate and respiratory rate every 5 min, NEWS2 with each
    # vital: all departing for 12 h, then all normal for 5 h.
    readings: list[tuple[int, str, str, Severity | None]] = []
    for minute in range(0, 17 * 60, 5):
        ill = minute < 12 * 60
        if minute % 240 == 0:
            readings.append((minute, TEMP, TEMP, W if ill else None))
        readings.append((minute, HR, HR, W if ill and minute >= 30 else None))
        readings.append((minute, RR, RR, W if ill and minute >= 60 else None))
        readings.append((minute, "news2", "news2", Severity.INFO if ill else None))
    emitted = _patient(readings)
    assert [(p, problem) for _, p, problem in emitted] == [
        (Phase.ONSET, TEMP),
        (Phase.UPDATE, HR),
        (Phase.UPDATE, RR),
        (Phase.RESOLVED, TEMP),
    ]
    # Heart rate and respiratory rate are back at 12:00, and so is the temperature taken
    # then; the episode ends with the next temperature (16:00), the second one normal.
    assert emitted[-1][0] == 16 * 60


def test_a_sparse_channel_keeps_the_episode_open_until_its_own_readings_are_normal() -> None:
    readings: list[tuple[int, str, str, Severity | None]] = [(0, TEMP, TEMP, W)]
    readings += [(m, HR, HR, None) for m in range(5, 240, 5)]  # heart rate normal all along
    assert [p for _, p, _ in _patient(readings)] == [Phase.ONSET]
    readings += [(240, TEMP, TEMP, None), (480, TEMP, TEMP, None)]
    assert _patient(readings)[-1][:2] == (480, Phase.RESOLVED)


def test_a_new_problem_is_announced_even_when_the_episode_is_already_critical() -> None:
    readings: list[tuple[int, str, str, Severity | None]] = [
        (0, TEMP, TEMP, C),
        (10, HR, HR, W),  # announced: heart rate is new
        (20, HR, HR, W),  # nothing new
        (30, GLU, GLU, C),  # a hypoglycaemia in the fever: announced
        (40, GLU, GLU, C),
        (50, HR, HR, C),  # heart rate rises: announced
        (60, HR, HR, Severity.INFO),
    ]
    assert [(m, p, problem) for m, p, problem in _patient(readings)] == [
        (0, Phase.ONSET, TEMP),
        (10, Phase.UPDATE, HR),
        (30, Phase.UPDATE, GLU),
        (50, Phase.UPDATE, HR),
    ]


def test_information_about_a_new_problem_is_folded_in_silently() -> None:
    readings: list[tuple[int, str, str, Severity | None]] = [
        (0, TEMP, TEMP, W),
        (5, "news2", "news2", Severity.INFO),
        (10, "news2", "news2", W),
    ]
    assert [(m, p) for m, p, _ in _patient(readings)] == [(0, Phase.ONSET), (10, Phase.UPDATE)]


def test_withdrawing_a_channel_leaves_the_rest_of_the_episode() -> None:
    episode = _after([(TEMP, W), (HR, C)])
    assert episode is not None
    assert set(episode.tracks) == {TEMP, HR} and set(episode.announced) == {TEMP, HR}
    left = episode.without(HR)
    assert left is not None and set(left.tracks) == {TEMP} and set(left.announced) == {TEMP}
    assert left.episode_id == episode.episode_id
    only = left.without(TEMP)
    assert only is None


def test_an_episode_that_never_rose_above_information_ends_without_a_word() -> None:
    info = Severity.INFO
    emitted = _run([info, info, None, None, None, None, W], timedelta(minutes=10))
    assert [(i, e.phase, e.episode.severity) for i, e in emitted] == [
        (0, Phase.ONSET, info),
        (6, Phase.ONSET, W),  # the information episode ended at reading 5; a new one
    ]


def test_information_findings_alone_never_remind() -> None:
    info = Severity.INFO
    emitted = _run([W] + [info] * (7 * 24 * 6), timedelta(minutes=10))
    assert [e.phase for _, e in emitted] == [Phase.ONSET]
