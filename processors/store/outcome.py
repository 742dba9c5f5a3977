"""Which InfluxDB write failures are worth retrying, and which are the points' own fault.

- **transient**: no answer (connection refused or reset, timeout), ``429`` and ``5xx``: the
  same write will succeed later; retry it with capped exponential backoff.
- **refused**: ``400``, ``413``, ``422``: InfluxDB looked at the points and will not take
  (all of) them — a point beyond the bucket's retention, a field whose type conflicts with
  what the series holds, a malformed line, a body too large. Retrying the same request can
  only fail again; :mod:`processors.store.isolate` splits it to find the refused points.
- **configuration**: ``401``, ``403``, ``404`` (wrong token, missing database or bucket):
  not the points' fault, and every other write would fail the same way; retried like a
  transient failure (and logged as an error) until an operator mends it.

InfluxDB 1.8 answers ``400 partial write: points beyond retention policy dropped=1`` and
``400 partial write: field type conflict``; 2.x answers ``422`` for the first and ``400``
for the second. Both write the other points of a partially refused request.
"""

from __future__ import annotations

import json
from enum import StrEnum

__all__ = ["Outcome", "classify", "describe"]

REFUSED_STATUSES = frozenset({400, 413, 422})
CONFIG_STATUSES = frozenset({401, 403, 404})


class Outcome(StrEnum):
    TRANSIENT = "transient"
    REFUSED = "refused"
    CONFIGURATION = "configuration"


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failed write, or ``None`` when there was no answer."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and status > 0 else None


def classify(exc: BaseException) -> Outcome:
    """What a failed write means; see the module docstring."""
    status = status_of(exc)
    if status in REFUSED_STATUSES:
        return Outcome.REFUSED
    if status in CONFIG_STATUSES:
        return Outcome.CONFIGURATION
    return Outcome.TRANSIENT


def describe(exc: BaseException) -> str:
    """A one-line account of a failed write (``HTTP 400: partial write: ...``); the JSON
    body InfluxDB answers with (``{"error": ...}`` from 1.8, ``{"message": ...}`` from 2.x)
    is reduced to its text."""
    status = status_of(exc)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    message = _json_text(str(message))
    message = " ".join(message.split())[:500]
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


def _json_text(message: str) -> str:
    try:
        body = json.loads(message)
    except ValueError:
        return message
    if isinstance(body, dict):
        text = body.get("error") or body.get("message")
        if isinstance(text, str):
            return text
    return message
