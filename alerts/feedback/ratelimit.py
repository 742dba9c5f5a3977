"""How many feedback events a patient's app is sent: a token bucket per patient.

The bucket holds at most ``burst`` tokens and gains ``per_hour`` an hour; each event sent
takes one. An event that finds the bucket empty is **dropped** (and counted,
``feedback_events_total{outcome="rate_limited"}``), not queued or merged: feedback is a
courtesy to the patient, the care team has the finding anyway, and a queue of stale messages
arriving later would say less than the app's own view (``GET /v1/me/summary``). The bucket
lives in the patient's feedback state (a Faust table), so a restart does not refill it.

Pure: the bucket and the time in, the new bucket out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from pghd.contracts import UtcDatetime

__all__ = ["RateLimit", "TokenBucket", "take"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``per_hour`` events an hour on average, at most ``burst`` at once."""

    per_hour: float = 6.0
    burst: int = 3

    def __post_init__(self) -> None:
        if self.per_hour <= 0 or self.burst < 1:
            raise ValueError("per_hour must be > 0 and burst >= 1")


class TokenBucket(BaseModel):
    """The tokens left at ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: float = Field(ge=0)
    at: UtcDatetime


def take(
    bucket: TokenBucket | None, *, now: datetime, limit: RateLimit
) -> tuple[TokenBucket, bool]:
    """Take a token from ``bucket`` (a full one when None) at ``now``: the bucket after, and
    whether there was one. A clock gone backwards refills nothing."""
    if bucket is None:
        tokens = float(limit.burst)
    else:
        elapsed_h = max(0.0, (now - bucket.at).total_seconds()) / 3600.0
        tokens = min(float(limit.burst), bucket.tokens + elapsed_h * limit.per_hour)
    at = now if bucket is None else max(now, bucket.at)
    if tokens >= 1.0:
        return TokenBucket(tokens=tokens - 1.0, at=at), True
    return TokenBucket(tokens=tokens, at=at), False
