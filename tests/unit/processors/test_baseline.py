"""Robust per-channel baselines: warm-up, clipped EWMA, spread floor, serialisation."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from processors.baseline import BaselineParams, BaselineState, update

from .conftest import T0

PARAMS = BaselineParams(warmup=20, alpha=0.05, clip=3.0)
NOISE = [0, 1, -1, 2, -2, 1, 0, -1, 1, -2, 2, 0, 1, -1, 0, 2, -1, 1, 0, -2]


def feed(values: list[float], state: BaselineState | None = None, *, min_spread: float = 4.0):
    for i, value in enumerate(values):
        state = update(
            state, value, time=T0 + timedelta(minutes=i), params=PARAMS, min_spread=min_spread
        )
    assert state is not None
    return state


def test_warm_up_counts_readings_and_becomes_ready_at_warmup() -> None:
    state = feed([70.0])
    assert (state.n, state.mean, state.spread) == (1, 70.0, 4.0)
    assert not state.is_ready(PARAMS)
    state = feed([70.0 + d for d in NOISE[:19]])
    assert state.n == 19 and not state.is_ready(PARAMS)
    state = feed([70.0 + d for d in NOISE])
    assert state.is_ready(PARAMS)
    assert state.warm == ()
    assert state.mean == pytest.approx(70.0, abs=0.5)
    assert state.last_time == T0 + timedelta(minutes=19)


def test_one_wild_value_during_warm_up_barely_moves_the_baseline() -> None:
    values = [70.0 + d for d in NOISE]
    values[5] = 200.0
    state = feed(values, min_spread=1.0)
    assert state.mean == pytest.approx(70.0, abs=0.5)
    assert state.spread < 3.0


def test_spread_is_floored_at_the_channel_minimum() -> None:
    state = feed([70.0] * 20)
    assert state.spread == 4.0
    state = feed([70.0] * 50, state)
    assert state.spread == 4.0


def test_single_outlier_after_warm_up_moves_mean_by_at_most_alpha_clip_spreads() -> None:
    state = feed([70.0 + d for d in NOISE])
    after = feed([250.0], state)
    assert after.mean - state.mean == pytest.approx(PARAMS.alpha * PARAMS.clip * state.spread)
    assert after.n == state.n + 1


def test_clipped_ewma_follows_slow_drift() -> None:
    state = feed([70.0 + d for d in NOISE])
    drift = [70.0 + 0.05 * i + NOISE[i % 20] for i in range(400)]
    state = feed(drift, state)
    expected_level = 70.0 + 0.05 * 399
    assert state.mean == pytest.approx(expected_level, abs=2.0)
    assert state.spread < 6.0


def test_state_round_trips_through_json() -> None:
    for state in (feed([70.0, 71.0]), feed([70.0 + d for d in NOISE])):
        data = json.loads(json.dumps(state.to_dict()))
        assert BaselineState.from_dict(data) == state


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        BaselineParams(warmup=1)
    with pytest.raises(ValueError):
        BaselineParams(alpha=1.0)
    with pytest.raises(ValueError):
        BaselineParams(clip=0)
