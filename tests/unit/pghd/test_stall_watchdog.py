"""The stall watchdog's decision: which partitions to read again, and when."""

from __future__ import annotations

from pghd.stall_watchdog import Progress, stalled

AFTER = 30.0


def test_a_partition_behind_with_no_progress_for_the_whole_period_is_reread() -> None:
    state, stuck = stalled({}, {"p7": (3, 7)}, now=100.0, after_s=AFTER)
    assert stuck == [] and state == {"p7": Progress(committed=3, since=100.0)}
    state, stuck = stalled(state, {"p7": (3, 7)}, now=129.0, after_s=AFTER)
    assert stuck == []
    state, stuck = stalled(state, {"p7": (3, 7)}, now=130.0, after_s=AFTER)
    assert stuck == ["p7"]
    # Re-read once, then given a whole period again before the next re-read.
    state, stuck = stalled(state, {"p7": (3, 7)}, now=131.0, after_s=AFTER)
    assert stuck == [] and state["p7"].since == 130.0


def test_progress_or_catching_up_starts_the_period_over() -> None:
    state, _ = stalled({}, {"a": (3, 7), "b": (5, 9)}, now=0.0, after_s=AFTER)
    # a moved on (slow, not stuck); b caught up (idle, nothing to read).
    state, stuck = stalled(state, {"a": (4, 8), "b": (9, 9)}, now=29.0, after_s=AFTER)
    assert stuck == [] and state == {"a": Progress(committed=4, since=29.0)}
    state, stuck = stalled(state, {"a": (4, 8), "b": (9, 9)}, now=45.0, after_s=AFTER)
    assert stuck == []
    state, stuck = stalled(state, {"a": (4, 8)}, now=59.0, after_s=AFTER)
    assert stuck == ["a"]


def test_partitions_no_longer_assigned_are_forgotten() -> None:
    state, _ = stalled({}, {"a": (3, 7)}, now=0.0, after_s=AFTER)
    state, stuck = stalled(state, {}, now=40.0, after_s=AFTER)
    assert (state, stuck) == ({}, [])
    # Assigned again later: a new period, not the old one.
    state, stuck = stalled(state, {"a": (3, 7)}, now=41.0, after_s=AFTER)
    assert stuck == [] and state["a"].since == 41.0
