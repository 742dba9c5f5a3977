"""Overnight resting heart rate and the two-night rule (processors.resting_hr)."""

from __future__ import annotations

from datetime import date, timedelta

from processors.resting_hr import NightlyRhr, NightSignal

FIRST = date(2026, 2, 1)


def _night(day: int, rhr: float) -> NightlyRhr:
    return NightlyRhr(night=FIRST + timedelta(days=day), rhr=rhr, samples=60)


def _normal(signal: NightSignal, nights: int) -> None:
    for day in range(nights):
        assert signal.judge(_night(day, 58.0 + (day % 3) - 1)) is None


def test_two_nights_10_bpm_up_are_red_on_the_second() -> None:
    signal = NightSignal()
    _normal(signal, 20)
    assert signal.judge(_night(20, 68.0)) is None  # one night alone is not an alert
    assert signal.judge(_night(21, 68.5)) == "red"
    assert signal.judge(_night(22, 69.0)) == "red"
    # The elevated nights did not raise the baseline they are judged against.
    assert signal.baseline(FIRST + timedelta(days=23)) == (58.0, 20)


def test_a_smaller_rise_is_amber_and_a_single_bad_night_is_nothing() -> None:
    signal = NightSignal()
    _normal(signal, 20)
    assert signal.judge(_night(20, 61.5)) is None
    assert signal.judge(_night(21, 61.2)) == "amber"
    assert signal.judge(_night(22, 58.0)) is None
    assert signal.judge(_night(23, 66.0)) is None  # after a normal night: alone again


def test_nights_must_be_consecutive() -> None:
    signal = NightSignal()
    _normal(signal, 20)
    assert signal.judge(_night(20, 68.0)) is None
    assert signal.judge(_night(22, 68.0)) is None  # night 21 missing (watch off)


def test_no_judgement_before_two_weeks_of_nights() -> None:
    signal = NightSignal()
    _normal(signal, 10)
    assert signal.judge(_night(10, 75.0)) is None
    assert signal.judge(_night(11, 75.0)) is None


def test_state_round_trips_and_a_night_judged_again_replaces_itself() -> None:
    signal = NightSignal()
    _normal(signal, 16)
    signal.judge(_night(16, 70.0))
    again = NightSignal.from_dict(signal.to_dict())
    assert again == signal
    # A late sync added the samples that show night 16 was normal after all.
    assert again.judge(_night(16, 58.0)) is None
    assert again.judge(_night(17, 70.0)) is None
