"""Retry timing, pure: capped exponential backoff with jitter, the horizon, the fallback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.backoff import (
    RetryPolicy,
    fallback_due,
    give_up_at,
    jitter_fraction,
    next_attempt_at,
    retry_delay,
)

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
POLICY = RetryPolicy(backoff_s=1.0, max_backoff_s=300.0, horizon_s=6 * 3600.0)


def test_delay_doubles_then_stays_at_the_cap_less_at_most_the_jitter() -> None:
    for failures in range(1, 40):
        nominal = min(300.0, 2.0 ** (failures - 1))
        delay = retry_delay(failures, policy=POLICY, key="nt-1")
        assert nominal * (1 - POLICY.jitter) <= delay <= nominal
    assert retry_delay(10_000, policy=POLICY, key="nt-1") <= 300.0, "no overflow"


def test_without_jitter_the_delays_are_exact() -> None:
    exact = RetryPolicy(backoff_s=1.0, max_backoff_s=30.0, jitter=0.0)
    assert [retry_delay(n, policy=exact, key="k") for n in range(1, 8)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]


def test_jitter_is_repeatable_and_spreads_deliveries() -> None:
    assert jitter_fraction("nt-1", 3) == jitter_fraction("nt-1", 3)
    fractions = {jitter_fraction(f"nt-{n}", 3) for n in range(200)}
    assert all(0 <= f < 1 for f in fractions) and len(fractions) == 200
    delays = sorted(retry_delay(12, policy=POLICY, key=f"nt-{n}") for n in range(200))
    assert delays[-1] - delays[0] > 0.8 * POLICY.jitter * 300, "spread over most of the range"


def test_next_attempt_within_the_horizon_and_the_last_one_at_it() -> None:
    first = next_attempt_at(failed_at=T0, failures=1, queued_at=T0, policy=POLICY, key="k")
    assert first is not None and T0 < first <= T0 + timedelta(seconds=1)
    deadline = give_up_at(T0, policy=POLICY)
    assert deadline == T0 + timedelta(hours=6)
    near = deadline - timedelta(seconds=10)
    last = next_attempt_at(failed_at=near, failures=50, queued_at=T0, policy=POLICY, key="k")
    assert last == deadline, "a try at the horizon itself"
    assert (
        next_attempt_at(failed_at=deadline, failures=51, queued_at=T0, policy=POLICY, key="k")
        is None
    ), "a failure at the horizon gives up"


def test_a_six_hour_outage_costs_about_eighty_attempts() -> None:
    now, failures = T0, 0
    while True:
        failures += 1
        nxt = next_attempt_at(
            failed_at=now, failures=failures, queued_at=T0, policy=POLICY, key="k"
        )
        if nxt is None:
            break
        assert nxt - now <= timedelta(seconds=300)
        now = nxt
    assert now == T0 + timedelta(hours=6)
    assert 72 <= failures <= 100


def test_fallback_is_due_after_failing_for_its_delay() -> None:
    assert not fallback_due(first_failed_at=None, now=T0 + timedelta(hours=1), after_s=900)
    assert not fallback_due(first_failed_at=T0, now=T0 + timedelta(seconds=899), after_s=900)
    assert fallback_due(first_failed_at=T0, now=T0 + timedelta(seconds=900), after_s=900)


def test_policy_checks_its_numbers() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(horizon_s=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.0)
    with pytest.raises(ValueError):
        retry_delay(0, policy=POLICY, key="k")
