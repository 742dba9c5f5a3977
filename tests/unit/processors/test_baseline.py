"""Robust per-channel baselines: warm-up, clipped EWMA, spread floor, serialisation."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta

import pytest

from pghd.contracts import Context
from processors.baseline import BaselineParams, BaselineState, bucket_of, update

from .conftest import T0

PARAMS = BaselineParams(warmup=20, alpha=0.05, clip=3.0)
NOISE = [0, 1, -1, 2, -2, 1, 0, -1, 1, -2, 2, 0, 1, -1, 0, 2, -1, 1, 0, -2]


def feed(
    values: list[float],
    state: BaselineState | None = None,
    *,
    min_spread: float = 4.0,
    step: timedelta = timedelta(minutes=1),
):
    start = state.last_time + step if state is not None and state.last_time else T0
    for i, value in enumerate(values):
        state = update(state, value, time=start + i * step, params=PARAMS, min_spread=min_spread)
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
    weight = PARAMS.weight(state.n, timedelta(minutes=1))
    assert weight <= PARAMS.alpha
    assert after.mean - state.mean == pytest.approx(weight * PARAMS.clip * state.spread)
    assert after.n == state.n + 1


def test_adaptation_is_slow_in_time_not_in_readings() -> None:
    assert PARAMS.weight(20, timedelta(minutes=5)) == pytest.approx(1 / 21)  # settling
    assert PARAMS.weight(5000, timedelta(minutes=5)) < 0.001  # a watch: a week to forget
    daily = PARAMS.weight(5000, timedelta(hours=12))
    assert daily == pytest.approx(1 - math.exp(-6 / (24 * 7)))  # steps count up to 6 h
    assert PARAMS.weight(5000, timedelta(days=30)) == daily  # a gap does not reset it
    assert PARAMS.weight(0, timedelta(0)) == PARAMS.alpha


def test_detector_memory_rides_along_and_old_dicts_still_load() -> None:
    state = replace(feed([70.0, 71.0]), hits=(0, 1), cusum_hi=2.5, streak=2, last_value=71.0)
    assert BaselineState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    learnt = feed([70.0], state)
    assert (learnt.hits, learnt.cusum_hi, learnt.streak) == ((0, 1), 2.5, 2)
    old = {"n": 3, "mean": 70.0, "spread": 4.0, "last_time": None, "warm": [70, 70, 70]}
    assert BaselineState.from_dict(old) == BaselineState(
        n=3, mean=70.0, spread=4.0, warm=(70, 70, 70)
    )


def test_clipped_ewma_follows_slow_drift() -> None:
    step = timedelta(hours=6)
    state = feed([70.0 + d for d in NOISE], step=step)
    drift = [70.0 + 0.05 * i + NOISE[i % 20] for i in range(400)]  # 20 /min over 100 days
    state = feed(drift, state, step=step)
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
    with pytest.raises(ValueError):
        BaselineParams(tau_days=0)


def test_context_buckets() -> None:
    assert bucket_of(Context.SLEEP, channel="heart_rate", time=T0) == "sleep"
    assert bucket_of(Context.REST, channel="heart_rate", time=T0) == "awake-06"  # 08:00 UTC
    assert bucket_of(None, channel="heart_rate", time=T0.replace(hour=23)) == "awake-18"
    assert bucket_of(None, channel="body_temperature", time=T0) == "awake"
    assert bucket_of(Context.SLEEP) == "sleep" and bucket_of(None) == "awake"
