"""When to try a notification again, when to give up, when to fall back: pure arithmetic.

A delivery that failed is tried again after a capped exponential backoff with jitter:
``backoff_s · 2^(failures-1)``, at most ``max_backoff_s``, less up to ``jitter`` of it (so
deliveries that failed together, e.g. every page of a ward while its webhook was down, do
not all come back in the same second). The jitter is a hash of the notification id and the
failure count, not a random draw: the same inputs give the same time, in the worker and in
the tests. A delivery is tried until ``horizon_s`` after it was queued; the last try is made
at the horizon itself, and a failure at or after it gives the delivery up.

Nothing here reads a clock: every time is an argument.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "JITTER",
    "RetryPolicy",
    "fallback_due",
    "give_up_at",
    "jitter_fraction",
    "next_attempt_at",
    "retry_delay",
]

JITTER = 0.25
"""Share of the nominal delay that the jitter may take off."""
_MAX_EXPONENT = 60


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a failing notification is tried."""

    backoff_s: float = 1.0
    """wait after the first failed attempt; doubles with each further failure"""
    max_backoff_s: float = 300.0
    """the longest wait between two attempts"""
    horizon_s: float = 6 * 3600.0
    """give up this long after the notification was queued"""
    jitter: float = JITTER

    def __post_init__(self) -> None:
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.horizon_s <= 0:
            raise ValueError("backoff and cap must be >= 0 and the horizon > 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")


def jitter_fraction(key: str, failures: int) -> float:
    """A number in [0, 1) from a hash of ``key`` and ``failures``: spread over keys, repeatable."""
    digest = hashlib.sha256(f"{key}/{failures}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def retry_delay(failures: int, *, policy: RetryPolicy, key: str) -> float:
    """Seconds to wait after the ``failures``-th failed attempt of the delivery ``key``."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    exponent = min(failures - 1, _MAX_EXPONENT)
    nominal = min(policy.max_backoff_s, policy.backoff_s * 2.0**exponent)
    return nominal * (1.0 - policy.jitter * jitter_fraction(key, failures))


def give_up_at(queued_at: datetime, *, policy: RetryPolicy) -> datetime:
    """When a delivery queued at ``queued_at`` gets its last try."""
    return queued_at + timedelta(seconds=policy.horizon_s)


def next_attempt_at(
    *, failed_at: datetime, failures: int, queued_at: datetime, policy: RetryPolicy, key: str
) -> datetime | None:
    """When to try again after the ``failures``-th failure at ``failed_at``; None: give up.

    Never later than the horizon, so a receiver that comes back just before it is reached."""
    deadline = give_up_at(queued_at, policy=policy)
    if failed_at >= deadline:
        return None
    delay = timedelta(seconds=retry_delay(failures, policy=policy, key=key))
    return min(failed_at + delay, deadline)


def fallback_due(*, first_failed_at: datetime | None, now: datetime, after_s: float) -> bool:
    """True when a delivery has been failing (since its first failed attempt) for ``after_s``."""
    return first_failed_at is not None and now - first_failed_at >= timedelta(seconds=after_s)
