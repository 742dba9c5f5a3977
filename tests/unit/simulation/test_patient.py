"""The heart rate's response to movement (:class:`pghd.simulation.patient.Exertion`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pghd.simulation.patient import Exertion, Move

from .conftest import END

STILL = 75.0
START = END - timedelta(hours=3)


def _run(minutes: float, hr: float = 155.0, at: timedelta = timedelta(0)) -> Move:
    start = START + at
    return Move(start, start + timedelta(minutes=minutes), "run", hr, 165.0, False)


def _at(move: Move, minutes: float, *, after_end: bool = False) -> float:
    base = move.end if after_end else move.start
    return (base + timedelta(minutes=minutes)).timestamp()


def test_rises_over_two_to_three_minutes_to_the_effort() -> None:
    run = _run(30)
    excess = Exertion([run], still=STILL, recovery_minutes=6)
    target = run.hr - STILL
    assert excess(_at(run, -1)) == 0
    assert excess(_at(run, 0.5)) < 0.5 * target
    assert excess(_at(run, 1)) < 0.75 * target
    assert 0.8 * target <= excess(_at(run, 2.5)) <= 0.95 * target
    assert excess(_at(run, 10)) == pytest.approx(target, abs=0.5)


def test_recovers_over_five_to_ten_minutes_with_a_personal_tail() -> None:
    run = _run(40)
    target = run.hr - STILL
    quick = Exertion([run], still=STILL, recovery_minutes=5)
    slow = Exertion([run], still=STILL, recovery_minutes=8)
    for excess in (quick, slow):
        assert excess(_at(run, 1, after_end=True)) > 0.35 * target, "still high right after"
        assert 0.1 * target <= excess(_at(run, 5, after_end=True)) <= 0.3 * target
        assert excess(_at(run, 10, after_end=True)) <= 0.15 * target
        assert excess(_at(run, 40, after_end=True)) < 1
    assert slow(_at(run, 6, after_end=True)) > quick(_at(run, 6, after_end=True)) + 3


def test_follows_intensity_across_phases() -> None:
    hard = _run(3, hr=170)
    easy = Move(hard.end, hard.end + timedelta(minutes=3), "intervals", 110, 110, False)
    harder = Move(easy.end, easy.end + timedelta(minutes=3), "intervals", 175, 180, False)
    excess = Exertion([hard, easy, harder], still=STILL, recovery_minutes=6)
    assert excess(_at(hard, 2.9)) > excess(_at(easy, 2.9)) + 25
    assert excess(_at(harder, 2.9)) > excess(_at(easy, 2.9)) + 30
    assert excess(_at(easy, 2.9)) > 110 - STILL, "the easy phase is not long enough to settle"


def test_a_walk_or_moving_about_raises_it_a_little() -> None:
    walk = Move(START, START + timedelta(minutes=20), "walk", 70, 110, False)
    potter = Move(START, START + timedelta(minutes=2), "potter", 85, 60, False)
    assert Exertion([walk], still=STILL, recovery_minutes=6)(_at(walk, 15)) == pytest.approx(
        10, abs=0.1
    )
    assert Exertion([potter], still=STILL, recovery_minutes=6)(_at(potter, 1.9)) < 10
