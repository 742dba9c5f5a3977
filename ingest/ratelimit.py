"""Per-source rate limits: a moving window of requests for each authenticated source.

Every request of an authenticated source counts once, whatever it carries (a batch is one
request; its size is bounded by ``PGHD_INGEST_MAX_BATCH``). Over the limit the answer is a
429 problem with ``Retry-After`` (seconds until the oldest request of the window leaves it)
and a detail naming the limit, and the refusal is counted in ``rate_limited_total``.

The window lives in the memory of each ingest instance (``limits``' in-memory storage): every
instance limits on its own, nothing is shared. With N replicas behind a load balancer that
spreads requests evenly, a source can send up to N times the configured rate in total, so an
operator who wants a source held to R requests per minute overall sets the limit to R / N
(rounded up) per instance, and revisits it when scaling.

API-key routes get the limit through :func:`ingest.deps.authenticate`; routes that identify
their source otherwise (signed vendor webhooks) call :meth:`SourceRateLimiter.enforce` with
the source name, through :data:`ingest.deps.RateLimiterDep`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from ingest.metrics import IngestMetrics
from pghd.problems import ProblemError, problem_responses

__all__ = [
    "RATE_LIMITED_RESPONSE",
    "SourceRateLimiter",
    "document_rate_limits",
    "parse_limit",
]

logger = logging.getLogger(__name__)

OFF = "off"
"""The limit string that switches limiting off (for a source, or as the default)."""

RATE_LIMITED_RESPONSE = problem_responses(
    {429: "Too many requests from this source; retry after Retry-After seconds"}
)
"""The OpenAPI ``responses`` entry of a rate-limited route."""


def parse_limit(text: str) -> list[RateLimitItem]:
    """The limits of a limit string (``"1200/minute"``, ``"20/second;1200/minute"``, ``"off"``).

    Raises ``ValueError`` for anything else; an empty list means no limit.
    """
    if text.strip().lower() == OFF:
        return []
    try:
        return parse_many(text)
    except ValueError:
        raise ValueError(
            f"rate limit {text!r} is not valid: use e.g. '1200/minute', "
            f"'20/second;1200/minute' or '{OFF}'"
        ) from None


def _describe(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    per = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
    return f"{item.amount} requests per {per}"


class SourceRateLimiter:
    """Moving-window limits per source: a default, and overrides for named sources."""

    def __init__(
        self,
        *,
        default: str,
        overrides: Mapping[str, str] | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._default = parse_limit(default)
        self._overrides = {name: parse_limit(text) for name, text in (overrides or {}).items()}
        self._metrics = metrics
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # Sync dependencies run in a thread pool: test-then-hit must not interleave.
        self._lock = threading.Lock()

    def limits_for(self, source: str) -> list[RateLimitItem]:
        """The limits that apply to ``source`` (empty when it is not limited)."""
        return self._overrides.get(source, self._default)

    def retry_after(self, source: str) -> int | None:
        """Count one request of ``source``: ``None`` if it may go on, else the seconds to wait.

        A refused request does not count against the window.
        """
        items = self.limits_for(source)
        if not items:
            return None
        with self._lock:
            full = [item for item in items if not self._limiter.test(item, source)]
            if not full:
                for item in items:
                    self._limiter.hit(item, source)
                return None
            now = time.time()
            waits = [self._limiter.get_window_stats(i, source).reset_time - now for i in full]
        return max(1, math.ceil(max(waits)))

    def enforce(self, source: str) -> None:
        """Count one request of ``source``; raise a 429 problem when it is over its limit."""
        wait = self.retry_after(source)
        if wait is None:
            return
        limits_text = " and ".join(_describe(item) for item in self.limits_for(source))
        if self._metrics is not None:
            self._metrics.rate_limited.labels(source=source).inc()
        logger.info("source %s over its rate limit; retry after %d s", source, wait)
        raise ProblemError(
            status=429,
            slug="rate-limited",
            detail=(
                f"source {source!r} is over its rate limit of {limits_text}; retry after {wait} s"
            ),
            headers={"Retry-After": str(wait)},
        )


def document_rate_limits(schema: dict[str, Any], *, scheme: str) -> None:
    """Add the 429 response to every operation of an OpenAPI ``schema`` secured by ``scheme``."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            secured = any(scheme in requirement for requirement in operation.get("security", []))
            if secured:
                operation.setdefault("responses", {}).setdefault("429", RATE_LIMITED_RESPONSE[429])
