"""Patient ids in log lines, pseudonymised with a keyed hash.

Logs travel to places patient data should not (log shippers, tickets, screenshots), yet an
operator must be able to tell that two lines are about the same patient. :func:`pseudonym`
gives ``pt-`` and 12 hex digits of HMAC-SHA256 keyed with ``PGHD_LOG_PSEUDONYM_KEY``: the
same id gives the same pseudonym in every service that shares the key, and nobody without
the key can go back. Whoever holds the key (the operator investigating) finds a patient's
lines with ``pghd dev pseudonym P``. Without a key set, each process draws a random one:
pseudonyms then hold within one process only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

__all__ = ["pseudonym"]

KEY_ENV = "PGHD_LOG_PSEUDONYM_KEY"


_PROCESS_KEY = secrets.token_bytes(32)


def _key() -> bytes:
    configured = os.environ.get(KEY_ENV, "")
    return configured.encode("utf-8") if configured else _PROCESS_KEY


def pseudonym(patient_id: str, *, key: bytes | None = None) -> str:
    """The log pseudonym of ``patient_id`` (with ``key``, else the process's key)."""
    digest = hmac.new(key or _key(), patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"pt-{digest[:12]}"
